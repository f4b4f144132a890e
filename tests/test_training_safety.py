"""Nothing lost, nothing guessed: one run per directory (a lock that a killed run does not
leave behind), a save cut between its two writes repaired from the state, and errors
that say truthfully what is on disk."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytest.importorskip("torch")

from gpt2 import Config  # noqa: E402
from gpt2.cli import main  # noqa: E402
from gpt2.tokenizer import Tokenizer  # noqa: E402
from gpt2.training import CheckpointError, Notice, checkpoint, train  # noqa: E402
from gpt2.training.lock import LOCK_FILE, RunLock  # noqa: E402

FAST = ["--batch-size", "2", "--context-length", "32", "--eval-batches", "1", "--sample-tokens", "4"]


pytestmark = pytest.mark.usefixtures("private_cache")  # see conftest.py


def wait_for(condition, what: str, seconds: float = 600.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_two_trainings_into_one_directory_the_second_fails_at_once(tmp_path, small_config, capsys, verdict):
    out = tmp_path / "run"
    first_cmd = [sys.executable, "-m", "gpt2", "train", "--data", str(verdict), "--out", str(out)]
    first_cmd += ["--config", small_config, *FAST, "--max-steps", "100000", "--checkpoint-interval", "100000"]
    first = subprocess.Popen(first_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        lock_file = out / LOCK_FILE
        wait_for(lambda: lock_file.is_file() and f"pid {first.pid} " in lock_file.read_text(), "the first lock")
        wait_for(lambda: (out / "metrics.jsonl").is_file() or first.poll() is not None, "the first run's steps")
        assert first.poll() is None, first.stderr.read() if first.stderr else ""
        before = sorted(os.listdir(out))

        second = main(["train", "--data", str(verdict), "--out", str(out), "--config", small_config, *FAST])
        err = capsys.readouterr().err.strip().splitlines()
        assert second == 2 and len(err) == 1, err
        assert err[0].startswith("gpt2 train: error: ")
        assert f"in use by another training run (pid {first.pid} " in err[0]
        assert first.poll() is None  # the first run goes on, its files untouched
        assert set(before) <= set(os.listdir(out))
    finally:
        first.kill()  # SIGKILL: the kernel drops its lock, its file stays behind
        first.communicate(timeout=60)
    assert f"pid {first.pid} " in (out / LOCK_FILE).read_text()

    notices: list[str] = []
    result = train(
        verdict,
        out,
        tokenizer=Tokenizer.gpt2(),
        config=Config.from_spec(small_config),
        options={"max_steps": 2, "batch_size": 2, "context_length": 32, "eval_batches": 1, "sample_tokens": 4},
        cache_dir=tmp_path / "cache",
        on_event=lambda e: notices.append(e.message) if isinstance(e, Notice) else None,
    )
    assert result.step == 2
    assert any(f"pid {first.pid} " in n and "did not exit cleanly" in n for n in notices), notices
    assert not (out / LOCK_FILE).exists()  # a clean exit leaves no lock file


HOLD_LOCK = """
import sys
from gpt2.training.lock import RunLock
lock = RunLock(sys.argv[1]).acquire()
print("locked", flush=True)
sys.stdin.read()
lock.release()
"""


def test_the_lock_is_held_by_a_live_process_and_released_when_it_dies(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(tmp_path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        with pytest.raises(CheckpointError, match=f"in use by another training run \\(pid {holder.pid} on "):
            RunLock(tmp_path).acquire()
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=60)
    finally:
        holder.kill()
    lock = RunLock(tmp_path).acquire()  # the kernel released it; the file says who left it
    assert lock.stale_owner is not None and lock.stale_owner.startswith(f"pid {holder.pid} on ")
    lock.release()
    with RunLock(tmp_path) as again:  # a clean release leaves nothing stale
        assert again.stale_owner is None


KILL_BETWEEN_WRITES = """
import os, signal
from gpt2 import Config
from gpt2.tokenizer import Tokenizer
from gpt2.training import train, checkpoint
real_export = checkpoint.export_model
def die_before_the_second_export(directory, config, params, step, previous_step=None, **kwargs):
    if step == 8 and not kwargs.get("metadata"):  # step 8's state is on disk, its model not (best/ has metadata)
        os.kill(os.getpid(), signal.SIGKILL)
    return real_export(directory, config, params, step, previous_step, **kwargs)
checkpoint.export_model = die_before_the_second_export
train({verdict!r}, {out!r}, tokenizer=Tokenizer.gpt2(), config=Config(**{small!r}),
      options={{**{fast!r}, "max_steps": 12}}, cache_dir={cache!r})
"""


def test_a_kill_between_the_two_writes_of_a_save_is_repaired_on_resume(tmp_path, small_shape, quick_training, verdict):
    import torch

    from gpt2.engines.torch.model import GPT2
    from gpt2.weights import load_model

    out = tmp_path / "run"
    script = KILL_BETWEEN_WRITES.format(
        verdict=str(verdict), small=small_shape, fast=quick_training, out=str(out), cache=str(tmp_path / "cache")
    )
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert checkpoint.load_state(out)["step"] == 8 and checkpoint.exported_step(out) == 4  # one behind

    notices: list[str] = []
    steps: list[int] = []

    def on_event(e):
        if isinstance(e, Notice):
            notices.append(e.message)
        if type(e).__name__ == "TrainStarted":  # the repair is done before the first step
            steps.append(checkpoint.exported_step(out))
            config, params = load_model(out)
            state = checkpoint.load_state(out)
            model = GPT2.from_params(config, params)
            for name, value in model.state_dict().items():
                assert torch.equal(value, state["model"][name]), name

    result = train(
        verdict,
        out,
        tokenizer=Tokenizer.gpt2(),
        config=Config(**small_shape),
        resume=True,
        options={**quick_training, "max_steps": 12},
        cache_dir=tmp_path / "cache",
        on_event=on_event,
    )
    assert steps == [8] and result.step == 12 and checkpoint.exported_step(out) == 12
    assert any("the exported model was from step 4 but the training state is from step 8" in n for n in notices)


def test_a_failed_first_save_does_not_claim_a_previous_checkpoint(tmp_path, small_config, capsys, monkeypatch, verdict):
    real_fsync = os.fsync

    def full_disk(fd):
        real_fsync(fd)
        raise OSError(errno.ENOSPC, "No space left on device")

    import gpt2.training.loop as loop

    real_save = checkpoint.save_state

    def save_on_a_full_disk(*args, **kwargs):
        monkeypatch.setattr(os, "fsync", full_disk)
        try:
            return real_save(*args, **kwargs)
        finally:
            monkeypatch.setattr(os, "fsync", real_fsync)

    monkeypatch.setattr(loop.checkpoint, "save_state", save_on_a_full_disk)
    out = tmp_path / "run"
    args = ["train", "--data", str(verdict), "--out", str(out), "--config", small_config, *FAST, "--max-steps", "2"]
    assert main(args) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(err) == 1 and "no space left on device" in err[0], err
    assert "no checkpoint of this run was saved before" in err[0] and "intact" not in err[0]
    assert not (out / checkpoint.STATE_FILE).exists() and not (out / LOCK_FILE).exists()


def test_an_export_that_fails_after_the_state_says_the_state_is_saved(tmp_path, small_run_factory):
    run, out = small_run_factory
    real_export = checkpoint.export_model

    def export_on_a_full_disk(directory, config, params, step, previous_step=None, **kwargs):
        if step == 8 and Path(directory) == out:  # the checkpoint's export, not the best model's
            raise checkpoint._saving_error("no space left on device", Path(directory) / "model.safetensors", None)
        return real_export(directory, config, params, step, previous_step, **kwargs)

    import gpt2.training.loop as loop

    loop.checkpoint.export_model = export_on_a_full_disk
    try:
        with pytest.raises(CheckpointError, match="the training state of step 8 is saved in .*--resume"):
            run(max_steps=8)
    finally:
        loop.checkpoint.export_model = real_export
    assert checkpoint.load_state(out)["step"] == 8 and checkpoint.exported_step(out) == 4
    assert run(resume=True, max_steps=8).step == 8 and checkpoint.exported_step(out) == 8


@pytest.fixture
def small_run_factory(tmp_path, verdict, small_shape, quick_training):
    out = tmp_path / "run"

    def run(resume=False, **options):
        return train(
            verdict,
            out,
            tokenizer=Tokenizer.gpt2(),
            config=Config(**small_shape),
            resume=resume,
            options={**quick_training, **options},
            cache_dir=tmp_path / "cache",
        )

    return run, out
