"""Directories written by `gpt2 train` and `gpt2 convert` are complete Hugging Face models: config,
weights, tokenizer files and generation_config.json, so that `transformers.pipeline("text-generation",
model=DIR)` and `AutoTokenizer` work on them offline, and generate what `gpt2 generate` does."""

import json

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from gpt2.cli import main  # noqa: E402
from gpt2.config import Config  # noqa: E402
from gpt2.engines.torch.model import GPT2  # noqa: E402
from gpt2.params import init_params  # noqa: E402
from gpt2.tokenizer import Tokenizer  # noqa: E402
from gpt2.weights import load_model, save_model, write_safetensors  # noqa: E402

CONFIG = Config(n_layer=2, n_embd=32, n_head=2, n_ctx=64)
TOK = Tokenizer.gpt2()
HF_FILES = {"config.json", "model.safetensors", "vocab.json", "merges.txt", "tokenizer_config.json"}
TEXTS = ["Hello world", " The quick brown fox.\n\nIt's 3.14 — naïve café 🙂 日本語", "<|endoftext|>a"]


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))


def bare_model(directory):
    """config.json + model.safetensors with HF names, and nothing else (as from an older tool)."""
    torch.manual_seed(2)
    model = GPT2(CONFIG)
    with torch.no_grad():
        model.wte.weight.mul_(40.0)  # sharper logits, so that greedy tokens differ clearly
    directory.mkdir()
    params = model.to_params()
    write_safetensors(directory / "model.safetensors", {f"transformer.{k}": v for k, v in params.items()})
    (directory / "config.json").write_text(json.dumps(CONFIG.to_hf_dict()))
    return directory


def assert_complete(directory):
    names = {p.name for p in directory.iterdir()}
    assert HF_FILES | {"generation_config.json"} <= names
    generation = json.loads((directory / "generation_config.json").read_text())
    assert generation["eos_token_id"] == generation["bos_token_id"] == 50256


def pipeline_text(directory, prompt, n):
    generator = transformers.pipeline("text-generation", model=str(directory), device="cpu")
    out = generator(prompt, max_new_tokens=n, do_sample=False, return_full_text=False)
    return out[0]["generated_text"]


def our_text(capsys, directory, prompt, n):
    code = main(["generate", prompt, "-m", str(directory), "-n", str(n), "-t", "0", "-e", "torch", "--json"])
    out = capsys.readouterr().out
    assert code == 0
    return json.loads(out)["samples"][0]["text"]


def test_save_model_writes_a_tokenizer_that_autotokenizer_reads_as_ours(tmp_path):
    save_model(tmp_path / "m", CONFIG, init_params(CONFIG, seed=0))
    assert_complete(tmp_path / "m")
    hf = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "m"))
    assert len(hf) == 50257 and hf.eos_token_id == 50256
    for text in TEXTS:
        ids = TOK.encode(text, allowed_special="all")
        assert hf(text)["input_ids"] == ids
        assert hf.decode(ids) == text
    assert Tokenizer.for_model(tmp_path / "m").encode(TEXTS[1]) == TOK.encode(TEXTS[1])


def test_a_model_with_a_smaller_vocabulary_gets_no_gpt2_tokenizer(tmp_path):
    small = Config(n_layer=1, n_embd=8, n_head=2, vocab_size=97, n_ctx=16)
    save_model(tmp_path / "m", small, init_params(small, seed=0))
    names = {p.name for p in (tmp_path / "m").iterdir()}
    assert names == {"config.json", "model.safetensors", "generation_config.json"}
    assert load_model(tmp_path / "m")[0] == small


def test_pipeline_on_a_converted_directory(tmp_path, capsys):
    src = bare_model(tmp_path / "bare")
    assert main(["convert", str(src), str(tmp_path / "hf")]) == 0
    assert_complete(tmp_path / "hf")
    text = pipeline_text(tmp_path / "hf", "Hello world", 8)
    assert text and text == our_text(capsys, tmp_path / "hf", "Hello world", 8)


@pytest.mark.slow
def test_pipeline_on_a_trained_directory(tmp_path, capsys, verdict, small_shape):
    config = tmp_path / "small.json"
    config.write_text(json.dumps(small_shape))
    flags = ["--batch-size", "2", "--context-length", "32", "--eval-interval", "2", "--device", "cpu"]
    code = main(["train", "--data", str(verdict), "--out", str(tmp_path / "run"), "--config", str(config),
                 "--max-steps", "2", "--sample-interval", "0", "--quiet", *flags])  # fmt: skip
    assert code == 0
    assert_complete(tmp_path / "run")
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "run"))
    assert tokenizer("I had always thought")["input_ids"] == TOK.encode("I had always thought")
    text = pipeline_text(tmp_path / "run", "I had always thought", 6)
    assert text and text == our_text(capsys, tmp_path / "run", "I had always thought", 6)
