"""`gpt2 generate`'s controls where the user meets them: stop strings, penalties and bias, --show-probs,
--prompt-file, the recorded seed, one JSON shape for every mode, warnings for options that change
nothing, and batches bounded by memory before they are allocated."""

import json
import math

import pytest

torch = pytest.importorskip("torch")

from gpt2.cli import main  # noqa: E402
from gpt2.config import Config  # noqa: E402
from gpt2.engines.torch.model import GPT2  # noqa: E402
from gpt2.tokenizer import Tokenizer  # noqa: E402
from gpt2.weights import save_model  # noqa: E402

CONFIG = Config(n_layer=2, n_embd=32, n_head=2, n_ctx=64)  # the real vocabulary, tiny everything else
TOK = Tokenizer.gpt2()
SAMPLE_KEYS = {"prompt", "prompt_ids", "ids", "text", "finish_reason", "seed", "logprob", "score", "probs"}
RUN_KEYS = {"model", "engine", "mode", "seed", "tokens", "seconds", "prefill_ms", "tokens_per_s", "samples"}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(1)
    model = GPT2(CONFIG)
    with torch.no_grad():  # GPT-2's init gives near-uniform logits; sharpen them so tokens differ
        model.wte.weight.mul_(40.0)
    directory = tmp_path_factory.mktemp("model")
    save_model(directory, CONFIG, model.to_params())
    return str(directory)


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def generate_json(capsys, model_dir, *argv):
    code, out, err = run(capsys, "generate", "-m", model_dir, "--json", *argv)
    assert code == 0, err
    return json.loads(out)


def greedy(capsys, model_dir, prompt, n, *argv):
    got = generate_json(capsys, model_dir, prompt, "-n", str(n), "-t", "0", "--ignore-eot", *argv)
    return got["samples"][0]


# --- one JSON shape, the seed always recorded -------------------------------------------------------


def test_single_batched_and_beam_runs_print_the_same_keys(capsys, model_dir):
    single = generate_json(capsys, model_dir, "Hello", "-n", "3")
    batch = generate_json(capsys, model_dir, "Hello", "-p", "Bye", "--num-samples", "2", "-n", "3")
    beams = generate_json(capsys, model_dir, "Hello", "--num-beams", "2", "-n", "3", "-e", "numpy")
    for record in (single, batch, beams):
        assert set(record) == RUN_KEYS
        assert all(set(s) == SAMPLE_KEYS for s in record["samples"])
    assert len(single["samples"]) == 1 and len(batch["samples"]) == 4
    assert [s["prompt"] for s in batch["samples"]] == ["Hello", "Hello", "Bye", "Bye"]
    assert beams["mode"] == "beam" and beams["samples"][0]["score"] is not None


def test_an_unseeded_run_records_a_seed_that_repeats_it(capsys, model_dir):
    code, out, err = run(capsys, "generate", "Once upon a time", "-m", model_dir, "-n", "6", "--ignore-eot")
    assert code == 0
    seed = int(err.split("seed ")[1].split()[0])  # the summary line: "... seed 123456 [numpy, ...]"
    first = generate_json(capsys, model_dir, "Once upon a time", "-n", "6", "--ignore-eot")
    again = generate_json(capsys, model_dir, "Once upon a time", "-n", "6", "--ignore-eot", "--seed", str(seed))
    assert out == "Once upon a time" + again["samples"][0]["text"] + "\n"
    drawn = first["seed"]
    assert first["samples"][0]["seed"] == drawn
    repeat = generate_json(capsys, model_dir, "Once upon a time", "-n", "6", "--ignore-eot", "--seed", str(drawn))
    assert repeat["samples"][0]["ids"] == first["samples"][0]["ids"]


def test_an_unseeded_batch_records_each_rows_seed(capsys, model_dir):
    batch = generate_json(capsys, model_dir, "Hello", "--num-samples", "3", "-n", "5", "--ignore-eot")
    seeds = [s["seed"] for s in batch["samples"]]
    assert seeds == [batch["seed"], batch["seed"] + 1, batch["seed"] + 2]
    alone = generate_json(capsys, model_dir, "Hello", "-n", "5", "--ignore-eot", "--seed", str(seeds[2]))
    assert alone["samples"][0]["ids"] == batch["samples"][2]["ids"]
    code, out, err = run(capsys, "generate", "Hello", "--num-samples", "2", "-m", model_dir, "-n", "2")
    assert code == 0 and "seeds " in err


# --- stop strings ---------------------------------------------------------------------------------


NO_REPEATS = ("--frequency-penalty", "1000")  # greedy text of a random model repeats itself otherwise


def test_a_stop_string_spanning_tokens_is_cut_from_the_output(capsys, model_dir):
    free = greedy(capsys, model_dir, "The", 12, *NO_REPEATS)
    pieces = [TOK.decode([t]) for t in free["ids"]]
    # a stop string from the last character of token 3 to the first two of token 4
    assert len(pieces[3]) >= 1 and len(pieces[4]) >= 2, pieces
    stop = pieces[3][-1] + pieces[4][:2]
    before = "".join(pieces[:3]) + pieces[3][:-1]
    assert stop not in before  # so the first match is the one across the boundary
    stopped = greedy(capsys, model_dir, "The", 12, *NO_REPEATS, "--stop", stop)
    assert stopped["text"] == before and stopped["finish_reason"] == "stop"
    assert stopped["ids"] == free["ids"][:5]  # the token completing the stop string was drawn
    code, out, err = run(
        capsys, "generate", "The", "-m", model_dir, "-n", "12", "-t", "0", "--ignore-eot", *NO_REPEATS, "--stop", stop
    )
    assert out == "The" + before + "\n"  # streamed: the held-back start of the stop never shows


def test_stop_strings_understand_newline_escapes(capsys, model_dir):
    from gpt2.commands.sampling import unescape

    assert unescape(r"a\nb\tc\\n") == "a\nb\tc\\n"
    newline = f"{TOK.encode(chr(10))[0]}=100"
    assert greedy(capsys, model_dir, "The", 3, "--logit-bias", newline)["text"] == "\n\n\n"
    cut = greedy(capsys, model_dir, "The", 3, "--logit-bias", newline, "--stop", r"\n")
    assert cut["text"] == "" and cut["finish_reason"] == "stop"
    literal = greedy(capsys, model_dir, "The", 3, "--logit-bias", newline, "--stop", r"\\n")  # a backslash, n
    assert literal["text"] == "\n\n\n" and literal["finish_reason"] == "length"


# --- penalties and bias ---------------------------------------------------------------------------


def test_logit_bias_as_pairs_and_as_json(capsys, model_dir):
    world = TOK.encode(" world")[0]
    forced = greedy(capsys, model_dir, "Hello", 4, "--logit-bias", f"{world}=100")
    assert forced["ids"] == [world] * 4
    banned = greedy(capsys, model_dir, "Hello", 4)["ids"][0]
    as_json = greedy(capsys, model_dir, "Hello", 4, "--logit-bias", json.dumps({str(banned): -100}))
    assert banned not in as_json["ids"]


@pytest.mark.parametrize("penalty", ["1.3", "2.0"])
def test_repetition_penalty_decodes_as_transformers_does(capsys, model_dir, penalty):
    transformers = pytest.importorskip("transformers")
    ours = greedy(capsys, model_dir, "Hello world", 10, "--repetition-penalty", penalty, "-e", "torch")
    hf = transformers.GPT2LMHeadModel.from_pretrained(model_dir).eval()
    prompt = torch.tensor([TOK.encode("Hello world")])
    with torch.no_grad():
        out = hf.generate(
            prompt, max_new_tokens=10, do_sample=False, repetition_penalty=float(penalty), eos_token_id=None
        )
    assert ours["ids"] == out[0, prompt.shape[1] :].tolist()
    if penalty == "2.0":
        plain = greedy(capsys, model_dir, "Hello world", 10, "-e", "torch")["ids"]
        assert len(set(plain)) < len(set(ours["ids"]))  # the penalty did something here


def test_presence_and_frequency_penalties_follow_openais_definition(capsys, model_dir):
    # greedy with a frequency penalty larger than any logit gap never repeats a token
    plain = greedy(capsys, model_dir, "Hello", 12)["ids"]
    assert len(set(plain)) < len(plain)
    for option in ("--frequency-penalty", "--presence-penalty"):
        ids = greedy(capsys, model_dir, "Hello", 12, option, "1000")["ids"]
        assert len(set(ids)) == len(ids), option


# --- --show-probs, --prompt-file ---------------------------------------------------------------------


def test_show_probs_are_the_models_own_probabilities(capsys, model_dir):
    got = greedy(capsys, model_dir, "The quick brown", 6, "--show-probs", "3", "--temperature", "0.7")
    steps = got["probs"]
    assert len(steps) == 6 and all(len(s["top"]) == 3 for s in steps)
    for s in steps:
        assert s["prob"] == pytest.approx(math.exp(s["logprob"]))
        assert [a["logprob"] for a in s["top"]] == sorted((a["logprob"] for a in s["top"]), reverse=True)
        assert s["top"][0]["token"] == s["token"]  # greedy: the chosen token is the most probable
    assert got["logprob"] == pytest.approx(sum(s["logprob"] for s in steps))
    # the same numbers `gpt2 score` gives the prompt and the generated text
    code, out, err = run(capsys, "score", "-m", model_dir, "--json", "The quick brown" + got["text"])
    scored = json.loads(out)["logprobs"][-6:]
    assert [s["logprob"] for s in steps] == pytest.approx(scored, abs=1e-4)


def test_show_probs_in_text_is_a_table(capsys, model_dir):
    code, out, err = run(capsys, "generate", "Hi", "-m", model_dir, "-n", "3", "-t", "0", "--show-probs", "2")
    lines = out.splitlines()
    assert code == 0 and lines[1].split() == ["step", "token", "prob", "alternatives"]
    assert len(lines) == 5 and lines[2].lstrip().startswith("1 ") and lines[2].count("%") == 3


def test_prompt_file(capsys, model_dir, tmp_path):
    path = tmp_path / "prompt.txt"
    path.write_text("Once upon a time\nthere was", encoding="utf-8")
    got = generate_json(capsys, model_dir, "--prompt-file", str(path), "-n", "2")
    assert got["samples"][0]["prompt_ids"] == TOK.encode("Once upon a time\nthere was")
    code, out, err = run(capsys, "generate", "--prompt-file", str(tmp_path / "missing.txt"), "-m", model_dir)
    assert code == 2 and "cannot read the prompt file" in err and len(err.splitlines()) == 1


# --- what has no effect, and what cannot fit ----------------------------------------------------------


@pytest.mark.parametrize(
    "argv, warning",
    [
        (["--num-beams", "2", "--temperature", "0.5", "--top-p", "0.9"], "--temperature, --top-p have no effect"),
        (["--num-beams", "2", "--stop", "x"], "--stop has no effect with --num-beams"),
        (["--length-penalty", "2"], "--length-penalty has no effect without --num-beams"),
        (["-t", "0", "--top-k", "5", "--seed", "3"], "--top-k, --seed have no effect with --temperature 0"),
        (["--top-k", "1", "--temperature", "0.8"], "--temperature has no effect with --top-k 1"),
        (["-t", "0", "--num-samples", "2"], "with --temperature 0 the 2 samples of a prompt are identical"),
    ],
)
def test_options_without_effect_are_warned_about(capsys, model_dir, argv, warning):
    code, out, err = run(capsys, "generate", "Hi", "-m", model_dir, "-n", "2", "-e", "numpy", *argv)
    assert code == 0 and f"gpt2 generate: warning: {warning}" in err
    code, out, quiet = run(capsys, "generate", "Hi", "-m", model_dir, "-n", "2", "-e", "numpy", "--quiet", *argv)
    assert code == 0 and quiet == "" and out  # --quiet: the text, nothing on stderr


def test_defaults_given_explicitly_warn_only_where_they_change_nothing(capsys, model_dir):
    code, out, err = run(capsys, "generate", "Hi", "-m", model_dir, "-n", "2", "--temperature", "0.9", "--seed", "1")
    assert code == 0 and "warning" not in err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--num-beams", "2", "--length-penalty", "nan"], "--length-penalty must be a finite number"),
        (["--logit-bias", "abc"], "--logit-bias takes ID=BIAS"),
        (["--logit-bias", "5=inf"], "must be finite"),
        (["--logit-bias", "60000=1"], "outside the vocabulary"),
        (["--repetition-penalty", "0"], "repetition_penalty must be > 0"),
        (["--show-probs", "21"], "logprobs must be an integer in [0, 20]"),
        (["--num-samples", "10000000000"], "at most"),
        (["--num-beams", "100000000", "-e", "torch"], "at most"),
    ],
)
def test_bad_controls_are_one_line_errors(capsys, model_dir, argv, message):
    code, out, err = run(capsys, "generate", "Hi", "-m", model_dir, "-n", "2", *argv)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_a_batch_too_big_for_memory_is_refused_before_it_is_allocated():
    from gpt2.engines import load_engine
    from gpt2.errors import GenerationError
    from gpt2.generation.memory import check_batch_fits, row_bytes
    from gpt2.params import init_params

    config = Config(n_layer=1, n_embd=8, n_head=2, vocab_size=11, n_ctx=16)
    engine = load_engine("numpy", config, init_params(config, seed=0))
    per_row = row_bytes(config, 4)
    check_batch_fits(engine, 10, available=100 * per_row)
    with pytest.raises(GenerationError, match=r"1000 rows need .* at most 80 rows fit"):
        check_batch_fits(engine, 1000, available=100 * per_row)
