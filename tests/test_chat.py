"""`gpt2 chat` (and `gpt2 generate -i`): one running text extended in turns, its KV cache kept between
turns; /reset, /seed, /temp; a summary after each reply. Input comes from a bounded StringIO."""

import io

import pytest

from gpt2.cli import main
from gpt2.config import Config
from gpt2.engines import load_engine
from gpt2.generation import GenerationConfig, Sampler, SamplingConfig, Session, generate
from gpt2.params import init_params
from gpt2.tokenizer import Tokenizer

TOK = Tokenizer.gpt2()
CONFIG = Config(n_layer=2, n_embd=16, n_head=2, n_ctx=48)
GREEDY = GenerationConfig(max_new_tokens=5, temperature=0, stop_ids=(), frequency_penalty=0.0)


class Counting:
    """An engine that records how many positions each forward pass runs."""

    def __init__(self, engine):
        self.engine, self.name, self.config = engine, engine.name, engine.config
        self.runs = []

    def new_cache(self):
        return self.engine.new_cache()

    def forward(self, ids, cache, *, all_logits=False):
        self.runs.append(len(ids))
        return self.engine.forward(ids, cache, all_logits=all_logits)

    def close(self):
        self.engine.close()


@pytest.fixture(scope="module")
def engine():
    return load_engine("pure", CONFIG, init_params(CONFIG, seed=1))


def fresh_greedy(engine, ids, n):
    return list(generate(engine, ids, n, Sampler(SamplingConfig(temperature=0)), stop_ids=()))


def test_a_turn_runs_only_the_positions_it_adds(engine):
    counting = Counting(engine)
    session = Session(counting, GREEDY, TOK)
    list(session.turn("Once upon a time"))
    first = list(counting.runs)
    assert first == [4, 1, 1, 1, 1]  # the prompt, then one position per new token
    counting.runs.clear()
    list(session.turn(" there was"))
    # the last reply token (never run yet) and the two new tokens, in one pass; then one per token
    assert counting.runs == [3, 1, 1, 1, 1]
    assert len(session.ids) == 4 + 5 + 2 + 5


def test_a_turn_continues_as_a_fresh_run_over_the_whole_text(engine):
    session = Session(engine, GREEDY, TOK)
    list(session.turn("Once upon a time"))
    before = list(session.ids)
    list(session.turn(" there was"))
    new = TOK.encode(" there was")
    assert session.ids[: len(before) + len(new)] == before + new
    assert session.reply_ids == fresh_greedy(engine, before + new, 5)
    assert session.text == TOK.decode(session.ids)


def test_an_empty_line_lets_the_model_go_on(engine):
    session = Session(engine, GREEDY, TOK)
    list(session.turn("Hello"))
    list(session.turn(""))
    assert session.ids == TOK.encode("Hello") + fresh_greedy(engine, TOK.encode("Hello"), 10)


def test_the_window_slides_when_the_text_outgrows_it(engine):
    session = Session(engine, GREEDY.replace(max_new_tokens=20), TOK)
    lengths = []
    for _ in range(4):
        before = session.ids + TOK.encode(" and then")
        steps = list(session.turn(" and then"))
        assert steps[-1].finish_reason == "length" and len(session.ids) <= CONFIG.n_ctx
        if len(before) < CONFIG.n_ctx:  # then a fresh run over the same text slides the same way
            assert session.reply_ids == fresh_greedy(engine, before, 20)
        lengths.append(len(session.ids))
    assert lengths != sorted(lengths)  # it did slide


def test_a_reply_that_ends_on_a_stop_id_can_be_continued(engine):
    free = fresh_greedy(engine, TOK.encode("Hi"), 5)
    session = Session(engine, GREEDY.replace(stop_ids=(free[2],)), TOK)
    list(session.turn("Hi"))
    assert session.reply_ids == free[:2]
    # the stop id is not in the text, and its step's logits are gone: going on runs the text again
    steps = list(session.turn(""))
    assert [s.finish_reason for s in steps] == ["stop"] and session.reply_ids == []  # greedy: the same stop


def test_reset_seed_and_temperature(engine):
    sampled = GenerationConfig(max_new_tokens=6, top_k=20, stop_ids=(), seed=4)
    a = Session(engine, sampled, TOK)
    first = [s.token for s in a.turn("Hello")]
    a.reset()
    assert a.ids == []
    a.set_seed(4)
    assert [s.token for s in a.turn("Hello")] == first  # /reset + /seed 4 repeats the session
    a.set(temperature=0)
    assert a.sampler.config.temperature == 0 and a.seed == 4
    greedy_reply = [s.token for s in a.turn("")]
    assert greedy_reply == fresh_greedy(engine, a.ids[: -len(greedy_reply)], 6)


# --- the command ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from gpt2.weights import save_model

    directory = tmp_path_factory.mktemp("chat-model")
    save_model(directory, CONFIG, init_params(CONFIG, seed=1))
    return str(directory)


def chat(capsys, monkeypatch, model_dir, lines, *argv, command=("chat",)):
    monkeypatch.setattr("sys.stdin", io.StringIO("".join(line + "\n" for line in lines)))
    code = main([*command, "-m", model_dir, "-e", "pure", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_chat_streams_replies_and_a_summary_after_each(capsys, monkeypatch, model_dir, engine):
    code, out, err = chat(
        capsys, monkeypatch, model_dir, ["Hello", " world"], "--raw", "-n", "3", "-t", "0", "--seed", "9"
    )
    assert code == 0
    summaries = [line for line in err.splitlines() if line.startswith("[")]
    assert len(summaries) == 2 and all("3 tokens" in s and "seed 9" in s and "/48" in s for s in summaries)
    hello = TOK.encode("Hello")
    first = fresh_greedy(engine, hello, 3)
    second = fresh_greedy(engine, hello + first + TOK.encode(" world"), 3)
    assert out == "Hello" + TOK.decode(first) + "\n" + " world" + TOK.decode(second) + "\n"


def test_chat_commands(capsys, monkeypatch, model_dir):
    lines = [
        "Hello",
        "/seed 3",
        "/temp 0.5",
        "/n 2",
        "/text",
        "/reset",
        "/text",
        "/temp x",
        "/nope",
        "Hi",
        "/quit",
        "unread",
    ]
    code, out, err = chat(capsys, monkeypatch, model_dir, lines, "--raw", "-n", "3", "--seed", "1")
    assert code == 0
    assert "seed 3" in err and "temperature 0.5" in err and "2 tokens per reply" in err
    assert "the text is empty again" in err and "/temp: expected a number" in err and "unknown command /nope" in err
    summaries = [line for line in err.splitlines() if line.startswith("[")]
    assert len(summaries) == 2 and "3 tokens" in summaries[0] and "2 tokens" in summaries[1]
    assert "seed 3" in summaries[1] and "unread" not in out


def test_a_backslash_continues_a_turn_on_the_next_line(capsys, monkeypatch, model_dir):
    code, out, err = chat(capsys, monkeypatch, model_dir, ["Q: Hi?\\", "A:", "/text"], "--raw", "-n", "1", "-t", "0")
    assert code == 0 and "Q: Hi?\nA:" in out


def test_generate_i_is_chat(capsys, monkeypatch, model_dir):
    args = ("-n", "2", "-t", "0")
    a = chat(capsys, monkeypatch, model_dir, ["Hello"], *args)
    b = chat(capsys, monkeypatch, model_dir, ["Hello"], *args, command=("generate", "-i"))
    assert a[0] == b[0] == 0 and a[1] == b[1]
    with pytest.raises(SystemExit) as exit_:  # refused while parsing: chat never sees generate's options
        chat(capsys, monkeypatch, model_dir, ["Hello"], *args, "--num-samples", "2", command=("generate", "-i"))
    assert exit_.value.code == 2 and "--num-samples cannot be used" in capsys.readouterr().err
    code, out, err = chat(capsys, monkeypatch, model_dir, ["Hello"], *args, "--show-probs", "2")
    assert code == 0 and "warning: --show-probs has no effect in an interactive session" in err


def test_chat_help_names_the_template_and_the_raw_session(capsys):
    with pytest.raises(SystemExit):
        main(["chat", "--help"])
    out = capsys.readouterr().out
    assert "--chat-template" in out and "--raw" in out and "never trained to chat" in out
