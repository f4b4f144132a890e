"""The small model that ships in the package: found by name with no network, within its size
budget, float16, and trained (it predicts Shakespeare far better than chance)."""

from __future__ import annotations

import json

import pytest

from gpt2.packaged import MODELS_DIR, packaged_model, packaged_models

NAME = "gpt2-shakespeare"
BUDGET = 16_000_000  # bytes in the repository, for the whole model directory


def test_the_packaged_model_is_small_float16_and_complete():
    from gpt2.weights.safetensors import read_header

    directory = packaged_model(NAME)
    assert directory == MODELS_DIR / NAME and NAME in packaged_models()
    assert sum(p.stat().st_size for p in directory.iterdir()) <= BUDGET
    header = read_header(directory / "model.safetensors")
    assert {e.dtype for e in header.entries} == {"F16"}
    config = json.loads((directory / "config.json").read_text())
    assert config["vocab_size"] == 50257 and config["model_type"] == "gpt2"


def test_names_are_never_paths():
    assert packaged_model("../models/" + NAME) is None and packaged_model("/" + NAME) is None
    assert packaged_model("gpt2") is None


def test_it_loads_by_name_offline(monkeypatch, tmp_path):
    from gpt2.config import Config
    from gpt2.weights import load_model

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # an empty cache: the hub is never asked
    monkeypatch.chdir(tmp_path)
    config, params = load_model(NAME)
    assert config == Config.from_json_file(MODELS_DIR / NAME / "config.json")
    assert params["wte.weight"].shape == (50257, config.n_embd) and params["wte.weight"].dtype == "F16"


def test_the_offline_error_names_it(monkeypatch, tmp_path, capsys):
    from gpt2.cli import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    assert main(["generate", "--model", "gpt2", "Hello", "--max-new-tokens", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{NAME} ships with the package (--model {NAME})" in err[0], err
    assert main(["generate", "--model", "no-such-model", "Hi"]) == 2
    assert NAME in capsys.readouterr().err


def test_it_learned_shakespeare(shakespeare):
    """Its loss on Shakespeare is far below chance (ln 50257 = 10.8) and far below its loss
    on the same tokens shuffled: it learned which tokens follow which, not just their counts."""
    np = pytest.importorskip("numpy")
    from gpt2.engines import load_engine
    from gpt2.tokenizer import Tokenizer
    from gpt2.weights import load_model

    config, params = load_model(NAME)
    engine = load_engine("numpy", config, params)
    ids = Tokenizer.gpt2().encode(shakespeare.read_text(encoding="utf-8")[:3000])[: config.n_ctx]
    shuffled = list(ids)
    np.random.default_rng(0).shuffle(shuffled)

    def loss(ids: list[int]) -> float:
        logits = np.asarray(engine.forward(ids[:-1], engine.new_cache(), all_logits=True), dtype=np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        return float(-logp[np.arange(len(ids) - 1), ids[1:]].mean())

    ordered, mixed = loss(ids), loss(shuffled)
    assert ordered < 5.5 and ordered < mixed - 2.0, (ordered, mixed)  # measured: 4.67 and 8.50


def test_generate_with_it_on_the_command_line(capsys):
    from gpt2.cli import main

    args = ["generate", "--model", NAME, "ROMEO:", "--max-new-tokens", "8", "--seed", "1", "--engine", "pure"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.startswith("ROMEO:") and len(out) > len("ROMEO:") + 8
