"""Instruction tuning (`gpt2 train --data x.jsonl`): the records, the masked loss on the assistant's
tokens only, padding, the template in the exported directory (read the same by transformers), and
a short run of the command."""

import json
import os
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("jinja2")

from gpt2.chat_template import builtin_template, model_template  # noqa: E402
from gpt2.config import Config  # noqa: E402
from gpt2.engines.torch.model import GPT2  # noqa: E402
from gpt2.tokenizer import Tokenizer  # noqa: E402
from gpt2.training.errors import DataError  # noqa: E402
from gpt2.training.instructions import (  # noqa: E402
    IGNORE,
    Example,
    Examples,
    encode_conversation,
    is_instruction_data,
    load_examples,
    masked_targets,
    read_conversations,
    split_examples,
)

TOK = Tokenizer.gpt2()
CONFIG = Config(n_layer=1, n_embd=32, n_head=2, n_ctx=128)
PLAIN = builtin_template("plain")
CONVERSATION = [
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": "Reverse: stone"},
    {"role": "assistant", "content": "enots"},
    {"role": "user", "content": "Uppercase: cloud"},
    {"role": "assistant", "content": "CLOUD"},
]


def learnt_text(example):
    """The learnt tokens, decoded, each run of them on its own."""
    runs, current = [], []
    for token, learnt in zip(example.ids, example.learnt):
        if learnt:
            current.append(token)
        elif current:
            runs.append(TOK.decode(current))
            current = []
    if current:
        runs.append(TOK.decode(current))
    return runs


def write_jsonl(path, records):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


# --- what is learnt ------------------------------------------------------------------------------


def test_plain_learns_each_reply_and_the_stop_that_ends_its_turn():
    example = encode_conversation(CONVERSATION, PLAIN, TOK)
    assert TOK.decode(list(example.ids)) == PLAIN.render(CONVERSATION, add_generation_prompt=False) + "User:"
    assert learnt_text(example) == [" enots\nUser:", " CLOUD\nUser:"]


def test_chatml_learns_each_reply_up_to_its_end_of_turn_marker():
    example = encode_conversation(CONVERSATION, builtin_template("chatml"), TOK)
    assert learnt_text(example) == ["enots<|im_end|>", "CLOUD<|im_end|>"]


def test_a_template_without_a_stop_learns_the_end_of_text_token(tmp_path):
    from gpt2.chat_template import load_template

    path = tmp_path / "t.jinja"
    path.write_text(
        "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}assistant: {% endif %}"
    )
    example = encode_conversation(CONVERSATION[1:3], load_template(str(path)), TOK)
    assert example.ids[-1] == TOK.eot_token and example.learnt[-1]
    assert learnt_text(example) == ["enots\n<|endoftext|>"]


def test_the_prompt_ids_are_the_ids_the_server_encodes_for_the_same_conversation():
    example = encode_conversation(CONVERSATION[:3], PLAIN, TOK)
    prompt = TOK.encode(PLAIN.render(CONVERSATION[:2], add_generation_prompt=True), allowed_special="all")
    assert list(example.ids[: len(prompt)]) == prompt
    assert not any(example.learnt[: len(prompt)]) and all(example.learnt[len(prompt) :])


# --- the masked loss ------------------------------------------------------------------------------


def gradients(x, y):
    torch.manual_seed(0)
    model = GPT2(CONFIG)
    _, loss = model(x, y)
    loss.backward()
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


def test_the_loss_ignores_the_prompt_tokens_labels_and_learns_the_assistants():
    example = encode_conversation(CONVERSATION, PLAIN, TOK)
    ids = torch.tensor(example.ids)
    x = ids[:-1].unsqueeze(0)  # [1, T]
    learnt = torch.tensor(example.learnt[1:])  # [T]: is target j learnt?
    prompt_positions = (~learnt).nonzero().flatten()
    reply_positions = learnt.nonzero().flatten()
    other = ids.clone()
    other[prompt_positions + 1] = 1234  # every prompt token's label changed, the inputs x kept
    base = gradients(x, masked_targets(example.ids, example.learnt).unsqueeze(0))
    changed_prompt = masked_targets(tuple(other.tolist()), example.learnt).unsqueeze(0)
    assert torch.equal(gradients(x, changed_prompt), base)
    # a label of the assistant's does change it, and so would the prompt's without the mask
    reply = ids.clone()
    reply[reply_positions[0] + 1] = 1234
    assert not torch.equal(gradients(x, masked_targets(tuple(reply.tolist()), example.learnt).unsqueeze(0)), base)
    unmasked = gradients(x, ids[1:].unsqueeze(0))
    assert not torch.equal(gradients(x, other[1:].unsqueeze(0)), unmasked)


def test_prompt_and_padding_targets_are_ignore_index():
    example = encode_conversation(CONVERSATION[1:3], PLAIN, TOK)
    x, y = Examples([example], pad_id=TOK.eot_token).batch([0], pad_to=40)
    n = len(example.ids) - 1
    assert x.shape == y.shape == (1, 40)
    assert (y[0, n:] == IGNORE).all() and (x[0, n:] == TOK.eot_token).all()
    kept = [int(t) for t in y[0, :n] if t != IGNORE]
    assert TOK.decode(kept) == " enots\nUser:"


def test_padding_does_not_change_an_examples_loss():
    short = encode_conversation(CONVERSATION[1:3], PLAIN, TOK)
    long = encode_conversation(CONVERSATION, PLAIN, TOK)
    data = Examples([short, long], pad_id=TOK.eot_token)
    torch.manual_seed(0)
    model = GPT2(CONFIG).eval()
    with torch.no_grad():
        _, alone = model(*data.batch([0]))
        x, y = data.batch([0, 1])  # the short one padded to the long one's length
        assert x.shape[1] == len(long.ids) - 1 > len(short.ids) - 1
        _, padded_row = model(x[:1], y[:1])
        _, padded_more = model(*data.batch([0], pad_to=60))
        # the batch's loss is the mean over every learnt token of both rows
        logits, both = model(x, y)
        per_token = torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none")
    assert torch.allclose(padded_row, alone, atol=1e-6) and torch.allclose(padded_more, alone, atol=1e-6)
    n_short = int((y[0] != IGNORE).sum())
    assert torch.allclose(per_token[: x.shape[1]].sum() / n_short, alone, atol=1e-6)
    assert torch.allclose(per_token.sum() / int((y != IGNORE).sum()), both, atol=1e-6)


# --- the file ------------------------------------------------------------------------------------


def test_both_formats_parse(tmp_path):
    path = write_jsonl(
        tmp_path / "tasks.jsonl",
        [
            {"instruction": "Reverse the word.", "input": "stone", "output": "enots"},
            "",
            {"instruction": "Say hi.", "output": "hi"},
            {"instruction": "Say hi.", "input": None, "output": "hi"},
            {"messages": CONVERSATION},
        ],
    )
    assert is_instruction_data(path)
    read = read_conversations(path)
    assert [n for n, _ in read] == [1, 3, 4, 5]
    assert read[0][1] == [
        {"role": "user", "content": "Reverse the word.\n\nstone"},
        {"role": "assistant", "content": "enots"},
    ]
    assert read[1][1] == read[2][1] == [{"role": "user", "content": "Say hi."}, {"role": "assistant", "content": "hi"}]
    assert read[3][1] == CONVERSATION
    examples, key = load_examples(path, PLAIN, TOK, context=64)
    assert [e.line for e in examples] == [1, 3, 4, 5] and len(key) == 32
    _, chatml_key = load_examples(path, builtin_template("chatml"), TOK, context=128)
    assert chatml_key != key  # a checkpoint tells a different template from the same file


def test_only_a_jsonl_of_conversations_or_instructions_is_instruction_data(tmp_path):
    assert not is_instruction_data(write_jsonl(tmp_path / "a.txt", [{"messages": CONVERSATION}]))
    assert not is_instruction_data(write_jsonl(tmp_path / "b.jsonl", [{"text": "hello"}]))
    assert not is_instruction_data(write_jsonl(tmp_path / "c.jsonl", ["not json"]))
    assert not is_instruction_data(tmp_path)
    assert is_instruction_data(write_jsonl(tmp_path / "d.JSONL", ["", {"instruction": "a", "output": "b"}]))


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("{not json", "not a JSON object"),
        ("[1, 2]", "a record must be a JSON object"),
        ('{"text": "hi"}', '"messages"'),
        ('{"instruction": "Do it."}', "'output' must be a string"),
        ('{"instruction": "  ", "output": "x"}', "'instruction' is empty"),
        ('{"instruction": "a", "output": "b", "answer": "c"}', "unknown field 'answer'"),
        ('{"instruction": "a", "input": 3, "output": "b"}', "'input' must be a string"),
        ('{"messages": [{"role": "wizard", "content": "hi"}]}', "role 'wizard'"),
        ('{"messages": [{"role": "user", "content": "hi"}]}', "no assistant message"),
        ('{"messages": []}', "non-empty list"),
        ('{"messages": [{"role": "user"}, {"role": "assistant", "content": "x"}]}', "has no content"),
    ],
)
def test_a_bad_record_is_a_one_line_error_naming_its_line(tmp_path, line, says):
    path = tmp_path / "tasks.jsonl"
    path.write_text(json.dumps({"instruction": "Say hi.", "output": "hi"}) + "\n\n" + line + "\n")
    with pytest.raises(DataError) as err:
        read_conversations(path)
    message = str(err.value)
    assert message.startswith(f"{path}:3: ") and says in message and "\n" not in message


def test_an_example_longer_than_the_context_is_refused_with_its_line(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", [{"instruction": "Say hi.", "output": "hi"}, {"messages": CONVERSATION}])
    with pytest.raises(DataError, match=r"t\.jsonl:2: the example is \d+ tokens, longer than the context length 16"):
        load_examples(path, PLAIN, TOK, context=16)


def test_validation_holds_out_the_last_examples():
    examples = [Example((1, 2), (False, True), n) for n in range(1, 11)]
    train, val = split_examples(examples, 0.2)
    assert [e.line for e in val] == [9, 10] and len(train) == 8
    assert split_examples(examples, 0.0)[1] == []
    assert len(split_examples(examples, 0.01)[1]) == 1  # at least one, as the text path holds a window
    with pytest.raises(DataError, match="1 example"):
        split_examples(examples[:1], 0.1)


# --- the exported directory ---------------------------------------------------------------------


def test_the_exported_directory_carries_the_template_and_transformers_renders_the_same(tmp_path, monkeypatch):
    transformers = pytest.importorskip("transformers")
    from gpt2.params import init_params
    from gpt2.weights import save_model

    for variable in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.setenv(variable, "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    for name in ("plain", "chatml"):
        template = builtin_template(name)
        directory = save_model(tmp_path / name, CONFIG, init_params(CONFIG, seed=0), chat_template=template.source)
        config = json.loads((directory / "tokenizer_config.json").read_text())
        assert config["chat_template"] == template.source
        ours = model_template(directory)
        assert ours is not None and ours.stop == template.stop  # the built-in's stop strings come back
        hf = transformers.AutoTokenizer.from_pretrained(str(directory))
        for messages in (CONVERSATION, CONVERSATION[:2], CONVERSATION[1:4]):
            for generation_prompt in (True, False):
                theirs = hf.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
                assert theirs == ours.render(messages, add_generation_prompt=generation_prompt)


def test_gpt2_train_on_a_jsonl_tunes_and_exports_the_template(tmp_path):
    data = write_jsonl(
        tmp_path / "tasks.jsonl",
        [{"instruction": "Reverse the word.", "input": w, "output": w[::-1]} for w in ("stone", "cloud", "river")]
        + [{"messages": CONVERSATION}],
    )
    config = tmp_path / "small.json"
    config.write_text(json.dumps(CONFIG.to_hf_dict()))
    out = tmp_path / "run"
    flags = ["--max-steps", "2", "--batch-size", "2", "--eval-interval", "2", "--eval-batches", "1"]
    flags += ["--sample-interval", "0", "--val-fraction", "0.25", "--chat-template", "chatml", "--quiet"]
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "gpt2", "train", "--data", str(data), "--out", str(out), "--config", str(config)]
    proc = subprocess.run([*command, *flags], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "trained to step 2" in proc.stderr
    for directory in (out, out / "best"):
        template = model_template(directory)
        assert template is not None and template.source == builtin_template("chatml").source
        assert template.stop == ("<|im_end|>",)
    # a bad record stops it before training, in one line naming the line
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"instruction": "a", "output": "b"}, {"messages": [{"role": "x"}]}])
    proc = subprocess.run(
        [sys.executable, "-m", "gpt2", "train", "--data", str(bad), "--out", str(tmp_path / "r2"), "--quiet"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 2 and proc.stderr.startswith(f"gpt2 train: error: {bad}:2: ")
    assert proc.stderr.count("\n") == 1 and not (tmp_path / "r2").exists()
