"""`gpt2 train` and `gpt2 eval` from the command line: a run end to end, and every user
mistake the issue names as one line on stderr with exit status 2, no checkpoint lost."""

from __future__ import annotations

import errno
import json
import os

import pytest

pytest.importorskip("torch")

from gpt2.cli import main  # noqa: E402

FAST_FLAGS = [
    "--batch-size",
    "2",
    "--context-length",
    "32",
    "--eval-interval",
    "2",
    "--eval-batches",
    "1",
    "--sample-tokens",
    "4",
    "--checkpoint-interval",
    "2",
    "--device",
    "cpu",
]


pytestmark = pytest.mark.usefixtures("private_cache")  # see conftest.py


def train_cli(data, out, *extra):
    return main(["train", "--data", str(data), "--out", str(out), *FAST_FLAGS, *extra])


def one_error_line(capsys, command="train"):
    err = [line for line in capsys.readouterr().err.strip().splitlines() if ": warning: " not in line]
    assert len(err) == 1 and err[0].startswith(f"gpt2 {command}: error: "), err
    return err[0]


def test_train_resume_and_eval_from_the_command_line(tmp_path, small_config, capsys, monkeypatch, verdict):
    import gpt2.training.loop as loop

    def no_matplotlib(*args, **kwargs):
        raise ImportError("No module named 'matplotlib'")

    monkeypatch.setattr(loop, "plot_losses", no_matplotlib)
    out = tmp_path / "run"
    assert (
        train_cli(
            verdict,
            out,
            "--config",
            small_config,
            "--max-steps",
            "4",
            "--no-qkv-bias",
            "--position-embedding",
            "sinusoidal",
        )
        == 0
    )
    err = capsys.readouterr().err
    assert "step 4/4" in err and "trained to step 4" in err
    assert err.count("warning: matplotlib is not installed") == 1
    assert {"config.json", "model.safetensors", "train_state.pt", "metrics.jsonl"} <= set(os.listdir(out))
    config = json.loads((out / "config.json").read_text())
    assert config["qkv_bias"] is False and config["position_embedding"] == "sinusoidal"

    assert train_cli(verdict, out, "--resume", "--max-steps", "6") == 0
    assert "resuming at step 4 of 6" in capsys.readouterr().err

    assert (
        main(
            [
                "eval",
                "--model",
                str(out),
                "--data",
                str(verdict),
                "--context-length",
                "32",
                "--device",
                "cpu",
                "--json",
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert result["context_length"] == 32 and 0 < result["loss"] < 11
    assert result["perplexity"] == pytest.approx(2.718281828 ** result["loss"], rel=1e-6)

    # fine-tune the run's model into a new run: same shape, weights carried over
    assert train_cli(verdict, tmp_path / "ft", "--init", str(out), "--max-steps", "1", "--quiet") == 0
    assert json.loads((tmp_path / "ft" / "config.json").read_text()) == config
    capsys.readouterr()
    assert train_cli(verdict, tmp_path / "ft2", "--init", str(out), "--config", "tiny") == 2
    assert "differs from the requested" in one_error_line(capsys)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "is empty"),
        (b"Just a few words.", "too short for context length 32"),
        (bytes(range(256)) * 8, "binary file"),
    ],
)
def test_bad_data_is_one_line_and_exit_2(tmp_path, small_config, capsys, content, message):
    data = tmp_path / "data.txt"
    data.write_bytes(content)
    assert train_cli(data, tmp_path / "run", "--config", small_config, "--max-steps", "2") == 2
    assert message in one_error_line(capsys)
    assert not (tmp_path / "run" / "train_state.pt").exists()


def test_resume_mistakes_keep_the_checkpoint(tmp_path, small_config, capsys, verdict):
    out = tmp_path / "run"
    assert train_cli(verdict, out, "--config", small_config, "--max-steps", "2") == 0
    capsys.readouterr()
    before = (out / "train_state.pt").read_bytes()

    assert train_cli(verdict, out, "--resume", "--config", "tiny", "--max-steps", "4") == 2
    assert "different model" in one_error_line(capsys)
    assert train_cli(verdict, out, "--config", small_config, "--max-steps", "4") == 2
    assert "--resume" in one_error_line(capsys)
    assert train_cli(verdict, tmp_path / "empty", "--resume") == 2
    assert "no checkpoint to resume from" in one_error_line(capsys)
    assert not (tmp_path / "empty").exists()  # a mistake leaves no empty run directory behind
    assert train_cli(verdict, tmp_path / "x", "--config", "gpt3") == 2
    assert "unknown model size 'gpt3'" in one_error_line(capsys)
    assert (out / "train_state.pt").read_bytes() == before


def test_full_disk_is_one_line_and_the_last_checkpoint_survives(tmp_path, small_config, capsys, monkeypatch, verdict):
    import gpt2.commands.train as command
    from gpt2.training import checkpoint

    real_fsync = os.fsync

    class FillDiskAfterFirstSave(command.Progress):
        def on_CheckpointSaved(self, e):
            def full(fd):
                real_fsync(fd)
                raise OSError(errno.ENOSPC, "No space left on device")

            monkeypatch.setattr(os, "fsync", full)

    monkeypatch.setattr(command, "Progress", FillDiskAfterFirstSave)
    out = tmp_path / "run"
    assert train_cli(verdict, out, "--config", small_config, "--max-steps", "4", "--quiet") == 2
    assert "no space left on device" in one_error_line(capsys)
    monkeypatch.undo()
    assert checkpoint.load_state(out)["step"] == 2


def test_eval_of_a_missing_model_is_one_line(tmp_path, capsys, verdict):
    assert main(["eval", "--model", str(tmp_path / "nothing"), "--data", str(verdict)]) == 2
    one_error_line(capsys, "eval")


def test_ctrl_c_says_which_checkpoint_is_safe(tmp_path, small_config, capsys, monkeypatch, verdict):
    import gpt2.commands.train as command
    from gpt2.training import checkpoint

    class CtrlCAtStep3(command.Progress):
        def on_StepDone(self, e):
            super().on_StepDone(e)
            if e.step == 3:
                raise KeyboardInterrupt

    monkeypatch.setattr(command, "Progress", CtrlCAtStep3)
    out = tmp_path / "run"
    assert train_cli(verdict, out, "--config", small_config, "--max-steps", "6", "--quiet") == 130
    err = capsys.readouterr().err
    assert (
        err
        == f"gpt2 train: interrupted at step 3; the last checkpoint (step 2) is in {out}: continue it with --resume\n"
    )
    assert checkpoint.load_state(out)["step"] == 2

    assert (
        train_cli(
            verdict,
            tmp_path / "new",
            "--config",
            small_config,
            "--max-steps",
            "6",
            "--checkpoint-interval",
            "5",
            "--quiet",
        )
        == 130
    )
    assert "interrupted at step 3, before a checkpoint was complete; nothing was saved" in capsys.readouterr().err


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--lr", "inf"], "lr must be a finite number"),
        (["--weight-decay", "nan"], "weight-decay must be a finite number"),
        (["--grad-clip", "nan"], "grad-clip must be a finite number"),
        (["--seed", "99999999999999999999999"], "seed must be an integer in [0, 2**32)"),
        (["--seed=-1"], "seed must be an integer"),
    ],
)
def test_impossible_hyper_parameters_are_one_line(tmp_path, small_config, capsys, flags, message, verdict):
    assert train_cli(verdict, tmp_path / "run", "--config", small_config, *flags) == 2
    assert message in one_error_line(capsys)


def test_an_unusable_out_directory_is_one_line_before_any_work(tmp_path, small_config, capsys, verdict):
    a_file = tmp_path / "a_file"
    a_file.write_text("not a directory")
    assert train_cli(verdict, a_file, "--config", small_config) == 2
    assert "exists and is not a directory" in one_error_line(capsys)
    assert train_cli(verdict, a_file / "run", "--config", small_config) == 2
    assert "cannot write the run directory" in one_error_line(capsys)


def test_a_bar_counts_windows_as_well_as_bytes():
    import io

    from gpt2.commands.progress import BytesBar

    out = io.StringIO()
    bar = BytesBar("scoring windows", out, amount="{:,}".format)
    bar(4000, 4000)
    assert out.getvalue() == "scoring windows [##############################] 4,000 / 4,000  0:00\n"


def test_evaluate_text_reports_progress(tmp_path, small_config, verdict):
    from gpt2.tokenizer import Tokenizer
    from gpt2.training import evaluate_text

    out = tmp_path / "run"
    assert train_cli(verdict, out, "--config", small_config, "--max-steps", "1", "--quiet") == 0
    calls = []
    result = evaluate_text(
        str(out),
        verdict,
        tokenizer=Tokenizer.gpt2(),
        context_length=32,
        batch_size=64,
        device="cpu",
        progress=lambda done, total: calls.append((done, total)),
    )
    assert calls[-1] == (result.sequences, result.sequences) and len(calls) == -(-result.sequences // 64)


def test_a_model_with_a_small_vocabulary_is_one_line_not_an_index_error(tmp_path, capsys, verdict):
    # The TF fixture has vocab_size 96: GPT-2 token ids do not fit its embedding.
    from pathlib import Path

    fixture = Path(__file__).parent / "fixtures" / "tf_gpt2_small"
    assert main(["eval", "--model", str(fixture), "--data", str(verdict), "--device", "cpu"]) == 2
    assert "vocabulary has only 96 entries" in one_error_line(capsys, "eval")
    assert train_cli(verdict, tmp_path / "run", "--init", str(fixture), "--context-length", "8") == 2
    assert "vocabulary has only 96 entries" in one_error_line(capsys)


def test_tokenising_is_announced_once_then_cached(tmp_path, small_config, capsys, monkeypatch, verdict):
    import gpt2.commands.train as command

    monkeypatch.setattr(command, "SAY_TOKENISING_FROM", 1000)  # the verdict is ~20k characters
    assert train_cli(verdict, tmp_path / "a", "--config", small_config, "--max-steps", "1") == 0
    assert "characters (cached for the next run)" in capsys.readouterr().err
    assert train_cli(verdict, tmp_path / "b", "--config", small_config, "--max-steps", "1") == 0
    assert "(cached for the next run)" not in capsys.readouterr().err  # the token cache made it instant


def test_an_empty_out_never_means_the_current_directory(tmp_path, small_config, capsys, monkeypatch, verdict):
    monkeypatch.chdir(tmp_path)
    assert train_cli(verdict, "", "--config", small_config) == 2
    assert "is empty" in one_error_line(capsys)
    assert os.listdir(tmp_path) == ["small.json"]
