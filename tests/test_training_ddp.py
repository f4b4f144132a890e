"""Data-parallel training: 2 CPU processes on gloo give the same losses as 1 process
with the same global batch (DDP averages the gradients of the two halves)."""

from __future__ import annotations

import json
import socket

import pytest

torch = pytest.importorskip("torch")

from gpt2 import Config  # noqa: E402
from gpt2.tokenizer import Tokenizer  # noqa: E402
from gpt2.training import Evaluated, StepDone, train  # noqa: E402

# Beyond conftest's quick_training: 4 steps, one evaluation at the end, no samples, on the CPU.
RUN = {"max_steps": 4, "eval_interval": 4, "device": "cpu", "sample_interval": 0}


def run_and_record(job, out, cache, batch_size, env=None):
    """Train as `job` says (data, shape, options: plain values, so spawned workers get them too)."""
    record = {"loss": [], "val": []}

    def on_event(event):
        if isinstance(event, StepDone):
            record["loss"].append(event.loss)
        elif isinstance(event, Evaluated):
            record["val"].append(event.val_loss)

    train(
        job["data"],
        out,
        tokenizer=Tokenizer.gpt2(),
        config=Config(**job["shape"]),
        options={**job["options"], "batch_size": batch_size},
        cache_dir=cache,
        env=env,
        on_event=on_event,
    )
    return record


def _worker(rank, job, world, port, out, cache, result_file):
    torch.set_num_threads(1)  # two processes share the machine's cores
    env = {
        "RANK": str(rank),
        "LOCAL_RANK": str(rank),
        "WORLD_SIZE": str(world),
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
    }
    record = run_and_record(job, out, cache, batch_size=2, env=env)
    if rank == 0:  # only the main process reports (its losses are averaged over both)
        with open(result_file, "w") as f:
            json.dump(record, f)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_processes_match_one_process(tmp_path, verdict, small_shape, quick_training):
    import torch.distributed as dist
    import torch.multiprocessing as mp

    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    job = {"data": str(verdict), "shape": small_shape, "options": {**quick_training, **RUN}}
    cache = tmp_path / "cache"
    single = run_and_record(job, tmp_path / "one", cache, batch_size=4)

    result_file = tmp_path / "ddp.json"
    worker_args = (job, 2, free_port(), str(tmp_path / "two"), str(cache), str(result_file))
    mp.spawn(_worker, args=worker_args, nprocs=2, join=True)
    double = json.loads(result_file.read_text())

    assert len(double["loss"]) == len(single["loss"]) == 4
    assert double["loss"] == pytest.approx(single["loss"], abs=1e-5)
    assert double["val"] == pytest.approx(single["val"], abs=1e-5)
    from gpt2.training.checkpoint import load_state

    a, b = load_state(tmp_path / "one")["model"], load_state(tmp_path / "two")["model"]
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
