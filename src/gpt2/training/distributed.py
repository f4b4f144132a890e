"""Data-parallel training through `torchrun`.

torchrun starts one process per device and tells each its place through the
environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT). Each
process holds a full model replica; DistributedDataParallel averages gradients
across processes in `backward()`, so the replicas stay identical. Without GPUs
the processes talk over `gloo` on the CPU, which is how this is tested.

    torchrun --nproc_per_node 2 -m gpt2 train --data input.txt --out run/
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    master_addr: str = "127.0.0.1"
    master_port: str = "29500"

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def from_environment(env: Mapping[str, str]) -> Distributed:
    """The process's place as torchrun describes it (a single process when absent)."""
    world = int(env.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed()
    return Distributed(
        rank=int(env["RANK"]),
        local_rank=int(env.get("LOCAL_RANK", env["RANK"])),
        world_size=world,
        master_addr=env.get("MASTER_ADDR", "127.0.0.1"),
        master_port=env.get("MASTER_PORT", "29500"),
    )


def start(d: Distributed, device: torch.device) -> None:
    """Join the process group: NCCL between GPUs, gloo on CPUs."""
    if not d.enabled or dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(
        backend=backend,
        init_method=f"tcp://{d.master_addr}:{d.master_port}",
        rank=d.rank,
        world_size=d.world_size,
    )


def stop(d: Distributed) -> None:
    if d.enabled and dist.is_initialized():
        dist.destroy_process_group()


def mean_across(d: Distributed, value: torch.Tensor) -> torch.Tensor:
    """The average of a tensor over all processes (itself when alone)."""
    return sum_across(d, value) / d.world_size if d.enabled else value


def sum_across(d: Distributed, value: torch.Tensor) -> torch.Tensor:
    if not d.enabled:
        return value
    value = value.clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value


def gather_objects(d: Distributed, obj: Any) -> list[Any]:
    """Every process's `obj`, in rank order, on every process."""
    if not d.enabled:
        return [obj]
    out: list[Any] = [None] * d.world_size
    dist.all_gather_object(out, obj)
    return out


def any_across(d: Distributed, flag: bool) -> bool:
    """True on every process if `flag` is true on any (to fail together, not hang)."""
    if not d.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0])
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def barrier(d: Distributed) -> None:
    if d.enabled:
        dist.barrier()


def wrap(model: torch.nn.Module, d: Distributed, device: torch.device) -> torch.nn.Module:
    if not d.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)
