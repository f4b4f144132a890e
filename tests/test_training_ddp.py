"""Data-parallel training: 2 CPU processes on gloo give the same losses as 1 process
with the same global batch (DDP averages the gradients of the two halves)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from gpt2 import Config  # noqa: E402
from gpt2.tokenizer import Tokenizer  # noqa: E402
from gpt2.training import Evaluated, StepDone, train  # noqa: E402

DATA = Path(__file__).resolve().parent / "data" / "the-verdict.txt"
# The shape and options of conftest's small_shape and quick_training, spelled out: the spawned
# worker processes import this module, not the fixtures.
SMALL = {"n_layer": 2, "n_embd": 32, "n_head": 2, "n_ctx": 64}
OPTIONS = {
    "batch_size": 4,
    "context_length": 32,
    "eval_batches": 2,
    "sample_tokens": 4,
    "checkpoint_interval": 4,
    "warmup_steps": 2,
    "lr": 1e-3,
    "max_steps": 4,
    "eval_interval": 4,
    "device": "cpu",
    "sample_interval": 0,
}


def run_and_record(out, cache, batch_size, env=None):
    record = {"loss": [], "val": []}

    def on_event(event):
        if isinstance(event, StepDone):
            record["loss"].append(event.loss)
        elif isinstance(event, Evaluated):
            record["val"].append(event.val_loss)

    train(
        DATA,
        out,
        tokenizer=Tokenizer.gpt2(),
        config=Config(**SMALL),
        options={**OPTIONS, "batch_size": batch_size},
        cache_dir=cache,
        env=env,
        on_event=on_event,
    )
    return record


def _worker(rank, world, port, out, cache, result_file):
    torch.set_num_threads(1)  # two processes share the machine's cores
    env = {
        "RANK": str(rank),
        "LOCAL_RANK": str(rank),
        "WORLD_SIZE": str(world),
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
    }
    record = run_and_record(out, cache, batch_size=2, env=env)
    if rank == 0:  # only the main process reports (its losses are averaged over both)
        with open(result_file, "w") as f:
            json.dump(record, f)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_processes_match_one_process(tmp_path):
    import torch.distributed as dist
    import torch.multiprocessing as mp

    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    cache = tmp_path / "cache"
    single = run_and_record(tmp_path / "one", cache, batch_size=4)

    result_file = tmp_path / "ddp.json"
    mp.spawn(_worker, args=(2, free_port(), str(tmp_path / "two"), str(cache), str(result_file)), nprocs=2, join=True)
    double = json.loads(result_file.read_text())

    assert len(double["loss"]) == len(single["loss"]) == 4
    assert double["loss"] == pytest.approx(single["loss"], abs=1e-5)
    assert double["val"] == pytest.approx(single["val"], abs=1e-5)
    from gpt2.training.checkpoint import load_state

    a, b = load_state(tmp_path / "one")["model"], load_state(tmp_path / "two")["model"]
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
