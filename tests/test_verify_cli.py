"""`gpt2 verify` as a user runs it: the table, --json, and missing references."""

import json
import subprocess
import sys

import pytest

from gpt2.cli import main

CLI = "\nfrom gpt2.cli import main\nsys.exit(main(sys.argv[1:]))\n"


def test_verify_prints_a_passing_table(capsys):
    pytest.importorskip("numpy")
    pytest.importorskip("torch")
    assert main(["verify"]) == 0
    out = capsys.readouterr().out
    assert "forward pass (logits)" in out and "numpy float64" in out and "torch float32" in out
    assert "FAIL" not in out and " 0 failed" in out


def test_verify_json(capsys):
    assert main(["verify", "--json", "--reference", "numpy", "--seed", "5"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True and report["seed"] == 5
    assert {r["reference"] for r in report["rows"]} == {"numpy float64", "pure, uncached", "pure float64"}
    row = next(r for r in report["rows"] if r["component"] == "transformer block")
    assert row["status"] == "pass" and row["max_rel_error"] <= 1e-9 and row["tolerance"] == 1e-9


def test_verify_says_which_references_are_unavailable(blocked_imports):
    without_numpy_and_torch = blocked_imports(("numpy", "torch")) + CLI
    out = subprocess.run([sys.executable, "-c", without_numpy_and_torch, "verify"], capture_output=True, text=True)
    assert "reference numpy unavailable: numpy is not installed" in out.stdout
    assert "reference torch unavailable: torch is not installed" in out.stdout
    assert out.returncode == 1  # only the pure self-check ran: nothing was verified against a reference
    out = subprocess.run(
        [sys.executable, "-c", without_numpy_and_torch, "verify", "--json"], capture_output=True, text=True
    )
    report = json.loads(out.stdout)
    assert set(report["unavailable"]) == {"numpy", "torch"}
    assert all(r["status"] == "unavailable" for r in report["rows"][1:])


def test_verify_bad_config_is_one_line_error(capsys):
    assert main(["verify", "--config", "gpt-99"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown model size" in err


def test_config_option_takes_a_preset_a_json_file_or_a_model_directory(tmp_path):
    # One reading of --config for `gpt2 verify` and `gpt2 train`: Config.from_spec.
    from gpt2.config import Config
    from gpt2.errors import ConfigError

    small = Config(n_layer=1, n_embd=8, n_head=2, vocab_size=11, n_ctx=4)
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text(json.dumps(small.to_hf_dict()))
    assert Config.from_spec("tiny") == Config.preset("tiny")
    assert Config.from_spec(str(tmp_path / "model" / "config.json")) == small
    assert Config.from_spec(str(tmp_path / "model")) == small
    with pytest.raises(ConfigError, match="unknown model size 'gpt3'"):
        Config.from_spec("gpt3")
    with pytest.raises(ConfigError, match="cannot read config .*missing.json"):
        Config.from_spec(str(tmp_path / "missing.json"))
    with pytest.raises(ConfigError, match="Is a directory"):
        Config.from_spec(str(tmp_path))
