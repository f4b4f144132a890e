"""The same training gives the same bytes: every time, in a fresh process, when other code
changes PyTorch's thread count during the run, and when a run is resumed by a process whose
thread count differs (issue 20: about 6 runs in 102 ended on a second result).

On the CPU the result depends on the number of threads (layer norm's gradients are summed
per thread; gpt2/training/threads.py), so a run fixes its count once and keeps it."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from gpt2 import Config  # noqa: E402
from gpt2.tokenizer import Tokenizer  # noqa: E402
from gpt2.training import Notice, StepDone, checkpoint, train  # noqa: E402

pytestmark = pytest.mark.usefixtures("private_cache")  # see conftest.py

STEPS = 8
THREADS = 2  # what the runs ask for; the tests make the process's own count differ from it


@pytest.fixture
def run(tmp_path, verdict, small_shape, quick_training):
    def run(out, on_event=None, resume=False, **options):
        return train(
            verdict,
            tmp_path / out,
            tokenizer=Tokenizer.gpt2(),
            config=Config(**small_shape),
            resume=resume,
            options={**quick_training, "max_steps": STEPS, "dropout": 0.1, **options},
            cache_dir=tmp_path / "cache",
            on_event=on_event,
        )

    return run


@pytest.fixture
def one_thread():
    """The process runs with one PyTorch thread (as after OMP_NUM_THREADS=1, or an engine
    built with threads=1), and gets its own count back afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def weights(directory: Path) -> str:
    """The sha256 of the exported model and of the weights in the training state."""
    h = hashlib.sha256((directory / checkpoint.MODEL_FILE).read_bytes())
    state = torch.load(directory / checkpoint.STATE_FILE, weights_only=True)["model"]
    for name in sorted(state):
        h.update(state[name].numpy().tobytes())
    return h.hexdigest()


def test_the_same_training_gives_the_same_bytes_every_time(tmp_path, run, one_thread, verdict, small_config):
    run("first", threads=THREADS)
    threads_seen: list[int] = []

    def meddle(event):  # other code in the process sets PyTorch's count during the run
        if isinstance(event, StepDone):
            threads_seen.append(torch.get_num_threads())
            torch.set_num_threads(1)

    run("second", on_event=meddle, threads=THREADS)
    assert threads_seen == [THREADS] * STEPS  # every step ran with the run's count
    assert torch.get_num_threads() == 1  # and the process got its own count back

    # a fresh process, another hash seed and another default count: the same command line
    quick = {
        "--batch-size": 4,
        "--context-length": 32,
        "--eval-interval": 4,
        "--eval-batches": 2,
        "--sample-tokens": 4,
        "--checkpoint-interval": 4,
        "--warmup-steps": 2,
        "--lr": 1e-3,
        "--dropout": 0.1,
        "--max-steps": STEPS,
        "--threads": THREADS,
    }
    flags = [str(x) for pair in quick.items() for x in pair]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "12345"}
    out = tmp_path / "third"
    command = ["train", "--data", str(verdict), "--out", str(out), "--config", small_config, "--quiet", *flags]
    proc = subprocess.run(
        [sys.executable, "-m", "gpt2", *command], capture_output=True, text=True, env=env, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-2000:]

    assert weights(tmp_path / "first") == weights(tmp_path / "second") == weights(out)


def test_a_resumed_run_takes_back_the_thread_count_it_started_with(tmp_path, run, one_thread):
    run("straight", threads=THREADS)

    class Killed(Exception):
        pass

    def kill_after_step_5(event):
        if isinstance(event, StepDone) and event.step == 5:
            raise Killed  # the checkpoint of step 4 survives

    with pytest.raises(Killed):
        run("interrupted", on_event=kill_after_step_5, threads=THREADS)
    notices: list[str] = []
    result = run("interrupted", on_event=lambda e: isinstance(e, Notice) and notices.append(e.message), resume=True)
    assert result.step == STEPS and not [n for n in notices if "thread" in n]
    assert weights(tmp_path / "straight") == weights(tmp_path / "interrupted")

    # asked for another count on resume: it trains with it, and says the result will differ
    run("straight", on_event=lambda e: isinstance(e, Notice) and notices.append(e.message), resume=True,
        max_steps=STEPS + 2, threads=1)  # fmt: skip
    assert any(f"trained with {THREADS} thread(s), this run uses 1" in n and "not bit for bit" in n for n in notices)


def test_threads_must_be_a_positive_integer(run):
    from gpt2.training import TrainConfigError

    with pytest.raises(TrainConfigError, match="threads must be a positive integer"):
        run("bad", threads=0)


def test_the_first_line_of_a_run_says_its_thread_count():
    import io

    from gpt2.commands.train import Progress
    from gpt2.training import TrainStarted

    out = io.StringIO()
    progress = Progress(out)
    progress(TrainStarted(0, 10, 7_000_000, 1000, 100, 256, "cpu", 1, False, {"threads": 2}))
    progress(TrainStarted(4, 10, 7_000_000, 1000, 100, 256, "cpu", 1, True, {"threads": 1}))
    first, second = out.getvalue().splitlines()
    assert "7.00M parameters on cpu (2 threads), 1,000 training" in first
    assert second.startswith("resuming at step 4 of 10") and "on cpu (1 thread)," in second
