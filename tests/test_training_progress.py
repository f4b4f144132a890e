"""Feedback on long work: bars with rate, elapsed time and ETA on a terminal, a line every
5% in a log; `gpt2 eval` says what it will score (and drop) before it starts; the
training bar's timing and checkpoint lines; verify's stages; the stdin hint."""

from __future__ import annotations

import io
import json

import pytest

from gpt2.commands import progress
from gpt2.commands.progress import Bar, DownloadBar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_bar_shows_rate_elapsed_and_time_left():
    bar = Bar("model.safetensors", 1000, io.StringIO(), width=10)
    bar.started = 100.0
    assert bar.text(500, 102.0) == "model.safetensors [#####.....] 500 B / 1.0 KB  250 B/s  0:02  ETA 0:02"
    assert bar.text(1000, 104.0).endswith("1.0 KB / 1.0 KB  250 B/s  0:04")  # done: no ETA
    unknown = Bar("x.bin", None, io.StringIO())
    unknown.started = 0.0
    assert unknown.text(3000, 3.0) == "x.bin 3.0 KB  1.0 KB/s  0:03"  # no length: no bar, no ETA


def test_a_terminal_gets_a_redrawn_bar_and_a_log_gets_a_line_every_5_percent(monkeypatch):
    monkeypatch.setattr(progress, "LOG_AFTER_S", 0.0)
    log = io.StringIO()
    bar = DownloadBar(log, log_after_s=0.0)
    for done in range(0, 1001, 10):
        bar("f.bin", done, 1000)
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and len(lines) == 20  # 5%, 10%, ..., 100%
    assert lines[0].startswith("f.bin [#") and " 50 B / 1.0 KB" in lines[0] and "1.0 KB / 1.0 KB" in lines[-1]

    tty = Terminal()
    bar = DownloadBar(tty, min_interval_s=0.0)
    for done in range(0, 1001, 10):
        bar("f.bin", done, 1000)
    out = tty.getvalue()
    assert out.count("\r\033[K") == 101 and out.endswith("1.0 KB / 1.0 KB  0:00\n") and out.count("\n") == 1


def test_a_short_job_leaves_one_line_in_a_log():
    log = io.StringIO()
    bar = DownloadBar(log, log_after_s=3600.0)
    for done in range(0, 1001, 10):
        bar("f.bin", done, 1000)
    assert log.getvalue().startswith("f.bin [####") and log.getvalue().count("\n") == 1


def test_a_half_drawn_bar_is_ended_before_anything_else_is_written():
    tty = Terminal()
    bar = DownloadBar(tty)
    bar("f.bin", 10, 1000)
    bar.close()
    assert tty.getvalue().endswith("\n")


# --- gpt2 eval --------------------------------------------------------------------------------

pytest.importorskip("torch")

from gpt2.cli import main  # noqa: E402

pytestmark = pytest.mark.usefixtures("private_cache")  # see conftest.py


@pytest.fixture(scope="module")
def trained(tmp_path_factory, small_shape, verdict):
    """A run directory of the small shape after two steps (its model is all eval needs)."""
    directory = tmp_path_factory.mktemp("trained")
    config = directory / "small.json"
    config.write_text(json.dumps(small_shape))
    out = directory / "run"
    flags = ["--batch-size", "2", "--context-length", "32", "--eval-batches", "1", "--sample-tokens", "4"]
    args = ["train", "--data", str(verdict), "--out", str(out), "--config", str(config), "--max-steps", "2"]
    assert main([*args, *flags, "--device", "cpu", "--quiet", "--cache-dir", str(directory / "tokens")]) == 0
    return out


def verdict_tokens(verdict) -> list[int]:
    from gpt2.tokenizer import Tokenizer

    tok = Tokenizer.gpt2()
    return tok.encode_ordinary(verdict.read_text(encoding="utf-8")) + [tok.eot_token]


def test_eval_says_what_it_scores_and_drops_then_shows_progress_in_a_log(trained, verdict, capsys, monkeypatch):
    monkeypatch.setattr(progress, "LOG_AFTER_S", 0.0)
    n = len(verdict_tokens(verdict))
    windows = -(-(n - 32) // 32)  # one every 32 tokens while a whole window of 33 fits
    dropped = n - 1 - 32 * windows
    args = ["eval", "--model", str(trained), "--data", str(verdict), "--context-length", "32", "--device", "cpu"]
    assert main(args) == 0
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert lines[0] == (
        f"scoring {32 * windows:,} tokens of a {n:,}-token text: {windows:,} windows of 32; "
        f"the last {dropped:,} tokens (less than a window) are not scored"
    )
    assert all(line.startswith("scoring windows [") for line in lines[1:]) and len(lines) > 5
    assert f"{windows:,} / {windows:,}" in lines[-1]
    assert "\r" not in err  # a log gets lines, never a redrawn bar
    assert f"; {dropped:,} tail tokens not scored)" in out


def test_eval_of_the_validation_tail_and_a_few_batches(trained, verdict, capsys):
    n = len(verdict_tokens(verdict))
    n_val = round(n * 0.2)  # the tail `gpt2 train --val-fraction 0.2` holds out
    args = ["eval", "--model", str(trained), "--data", str(verdict), "--context-length", "32", "--device", "cpu"]
    assert main([*args, "--split", "val", "--val-fraction", "0.2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    windows = -(-(n_val - 32) // 32)
    assert result["split"] == "val" and result["sequences"] == windows
    assert result["dropped_tokens"] == n_val - 1 - 32 * windows

    assert main([*args, "--max-batches", "2", "--batch-size", "3", "--json", "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["sequences"] == 6 and err == ""


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--max-batches", "0"], "max-batches must be a positive"),
        (["--split", "val", "--val-fraction", "1"], "val-fraction"),
    ],
)
def test_eval_mistakes_are_one_line(trained, verdict, capsys, flags, message):
    assert main(["eval", "--model", str(trained), "--data", str(verdict), "--device", "cpu", *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("gpt2 eval: error: ") and message in err[0], err


# --- gpt2 train ------------------------------------------------------------------------------


def test_the_training_log_shows_timing_and_every_checkpoint(tmp_path, small_shape, verdict, capsys):
    config = tmp_path / "small.json"
    config.write_text(json.dumps(small_shape))
    args = ["train", "--data", str(verdict), "--out", str(tmp_path / "run"), "--config", str(config)]
    flags = ["--batch-size", "2", "--context-length", "32", "--eval-batches", "1", "--sample-tokens", "4"]
    assert main([*args, *flags, "--max-steps", "4", "--checkpoint-interval", "2", "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    steps = [line for line in err.splitlines() if line.startswith("step 2/4")]
    assert len(steps) == 1 and " ms/step  elapsed " in steps[0] and " ETA " in steps[0], err
    assert f"step 2: checkpoint saved in {tmp_path / 'run'}" in err
    assert f"step 4: checkpoint saved in {tmp_path / 'run'}" in err


def test_the_training_bar_on_a_terminal_shows_ms_per_step_and_time_left():
    from gpt2.commands.train import Progress
    from gpt2.training import CheckpointSaved, StepDone, TrainStarted

    tty = Terminal()
    bar = Progress(tty)
    bar(TrainStarted(0, 10, 1000, 100, 10, 64, "cpu", 1, False))
    bar(StepDone(1, 10, 5.0, 1e-3, 640.0, 0.1))
    bar(CheckpointSaved(1, "runs/a"))
    bar.finish()
    out = tty.getvalue()
    assert "\r\033[K[##" in out and "100 ms/step" in out and "ETA " in out and "elapsed 0:00" in out
    assert "\r\033[Kstep 1: checkpoint saved in runs/a\n" in out  # the line replaces the bar, above it


# --- gpt2 verify, gpt2 generate --------------------------------------------------------------


def test_verify_reports_its_stages(capsys, monkeypatch):
    pytest.importorskip("numpy")
    monkeypatch.setattr(progress, "LOG_AFTER_S", 0.0)
    assert main(["verify", "--reference", "numpy"]) == 0
    err = capsys.readouterr().err
    for stage in ("random weights [", "components [", "engines ["):
        assert stage in err, err
    assert "19 / 19" in err


def test_reading_stdin_on_a_terminal_says_so(monkeypatch, capsys):
    from gpt2.commands.common import words_or_stdin

    class TerminalStdin(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr("sys.stdin", TerminalStdin("Hello"))
    assert words_or_stdin([]) == "Hello"
    assert "reading the text from stdin (Ctrl-D" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO("piped"))
    assert words_or_stdin(["-"]) == "piped" and capsys.readouterr().err == ""  # a pipe: nothing to say
