"""`gpt2 generate` and `gpt2 score` end to end, on a tiny random model written to disk."""

import dataclasses
import io
import json
import math

import pytest

torch = pytest.importorskip("torch")

from gpt2 import engines as engines_module  # noqa: E402
from gpt2.cli import main  # noqa: E402
from gpt2.config import Config  # noqa: E402
from gpt2.engines.torch.model import GPT2  # noqa: E402
from gpt2.weights import save_model  # noqa: E402

CONFIG = Config(n_layer=2, n_embd=32, n_head=2, n_ctx=64)  # the real vocabulary, tiny everything else


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("model")
    save_model(directory, CONFIG, GPT2(CONFIG).to_params())
    return str(directory)


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys, *argv):
    """The JSON record of a run (always a list of samples)."""
    code, out, err = run(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


def run_one(capsys, *argv):
    """The one sample of a single run."""
    got = run_json(capsys, *argv)
    assert len(got["samples"]) == 1
    return got["samples"][0]


@pytest.mark.parametrize("engine", ["numpy", "torch", "pure"])
def test_json_output_has_the_ids_and_text(capsys, model_dir, engine):
    record = run_json(
        capsys,
        "generate",
        "Hello world",
        "--model",
        model_dir,
        "--engine",
        engine,
        "--max-new-tokens",
        "6",
        "--temperature",
        "0",
        "--ignore-eot",
    )
    got = record["samples"][0]
    assert got["prompt_ids"] == [15496, 995]
    assert len(got["ids"]) == 6 and all(isinstance(i, int) for i in got["ids"])
    assert isinstance(got["text"], str) and record["engine"] == engine


def test_every_engine_samples_the_same_tokens_for_a_seed(capsys, model_dir):
    runs = [
        run_one(
            capsys,
            "generate",
            "Once upon a time",
            "-m",
            model_dir,
            "-e",
            engine,
            "-n",
            "8",
            "--seed",
            "5",
            "--top-p",
            "0.9",
            "--ignore-eot",
        )["ids"]
        for engine in ("numpy", "torch", "pure")
    ]
    assert runs[0] == runs[1] == runs[2]


def test_streaming_prints_the_text_and_a_summary(capsys, model_dir):
    code, out, err = run(
        capsys, "generate", "Hi there", "-m", model_dir, "-e", "numpy", "-n", "5", "--temperature", "0", "--ignore-eot"
    )
    assert code == 0
    data = run_one(
        capsys, "generate", "Hi there", "-m", model_dir, "-e", "numpy", "-n", "5", "--temperature", "0", "--ignore-eot"
    )
    assert out == "Hi there" + data["text"] + "\n"
    assert "5 tokens" in err and "tokens/s" in err and "prefill" in err


def test_the_prompt_can_come_from_stdin(capsys, model_dir, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("Hello world"))
    got = run_one(capsys, "generate", "-m", model_dir, "-e", "numpy", "-n", "2", "--temperature", "0")
    assert got["prompt_ids"] == [15496, 995]


def test_batches_and_beams(capsys, model_dir):
    got = run_json(
        capsys,
        "generate",
        "Hello",
        "-p",
        "Good morning",
        "--num-samples",
        "2",
        "-m",
        model_dir,
        "-e",
        "numpy",
        "-n",
        "4",
        "--seed",
        "1",
        "--ignore-eot",
    )
    assert len(got["samples"]) == 4
    assert [s["prompt_ids"] for s in got["samples"]][1:3] == [[15496], [10248, 3329]]
    alone = run_one(
        capsys, "generate", "Good morning", "-m", model_dir, "-e", "numpy", "-n", "4", "--seed", "3", "--ignore-eot"
    )
    assert got["samples"][2]["ids"] == alone["ids"]  # row i of a batch samples with seed + i
    beam = run_one(
        capsys, "generate", "Hello", "--num-beams", "3", "-m", model_dir, "-e", "torch", "-n", "4", "--ignore-eot"
    )
    assert len(beam["ids"]) == 4 and beam["logprob"] <= 0


def test_score_json_perplexity(capsys, model_dir, tmp_path):
    text = "The quick brown fox jumps over the lazy dog."
    got = run_json(capsys, "score", text, "-m", model_dir, "-e", "numpy")
    assert len(got["logprobs"]) == len(got["ids"]) - 1
    assert got["perplexity"] == pytest.approx(math.exp(-sum(got["logprobs"]) / len(got["logprobs"])))
    path = tmp_path / "text.txt"
    path.write_text(text, encoding="utf-8")
    from_file = run_json(capsys, "score", "--file", str(path), "-m", model_dir, "-e", "torch")
    assert from_file["perplexity"] == pytest.approx(got["perplexity"], rel=1e-4)
    code, out, err = run(capsys, "score", text, "-m", model_dir, "-e", "pure")
    assert code == 0 and "perplexity" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--temperature", "-1"], "temperature"),
        (["--top-p", "1.5"], "top_p"),
        (["--top-p", "0"], "top_p"),
        (["--top-k", "-2"], "top_k"),
        (["--engine", "jax"], "unknown engine"),
        (["--model", "/nonexistent/model"], "nonexistent"),
        (["--engine", "numpy", "--dtype", "float16"], "float16"),
        (["--engine", "numpy", "--device", "cuda"], "--device"),
        (["--num-beams", "0"], "num-beams"),
        (["--max-new-tokens", "-3"], "max-new-tokens"),
    ],
)
def test_bad_options_exit_2_with_one_line(capsys, model_dir, argv, message):
    model = [] if "--model" in argv else ["--model", model_dir]
    code, out, err = run(capsys, "generate", "Hi", *model, *argv)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and message in err


def test_a_missing_library_is_one_line(capsys, model_dir, monkeypatch):
    for name in ("numpy", "torch"):  # as if neither NumPy nor PyTorch were installed
        missing = dataclasses.replace(engines_module.ENGINES[name], needs="a_package_that_is_not_installed")
        monkeypatch.setitem(engines_module.ENGINES, name, missing)
    code, out, err = run(capsys, "generate", "Hi", "--model", model_dir, "--engine", "torch")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "pip install" in err
    code, out, err = run(capsys, "score", "Hi there", "--model", model_dir, "--engine", "numpy")
    assert code == 2 and "numpy" in err
