"""Will a batch fit? The memory a batch of rows needs, checked before it is allocated.

A batched engine preallocates each row's keys and values for the whole context
window (see `gpt2.engines.base.BatchKVCache`), so `--num-samples 5000` or
`--num-beams 2000` asks for gigabytes at once: far better to say so, with the
numbers, than to be killed by the kernel half-way or swap the machine to a halt.

    cache per row = 2 (keys, values) x n_layer x n_ctx x n_embd x bytes per value
    logits per row = vocab_size x 4 (float32) x 3 (the engine's, the sampler's copy, log-softmax)

>>> from gpt2.config import Config
>>> human(row_bytes(Config.preset("gpt2"), 4))      # GPT-2 124M in float32
'76.1 MB'
"""

from __future__ import annotations

import os
from typing import Any

from ..config import Config
from ..errors import GenerationError

__all__ = ["row_bytes", "available_bytes", "check_batch_fits", "engine_row_bytes", "human"]

# Leave this share of what is available to everything else (the weights' pages, Python, the OS).
HEADROOM = 0.8


def row_bytes(config: Config, itemsize: int) -> int:
    """Bytes one row of a batch holds: its KV cache for the whole window and its logits."""
    cache = 2 * config.n_layer * config.n_ctx * config.n_embd * itemsize
    logits = config.vocab_size * 4 * 3
    return cache + logits


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def available_bytes(engine: Any) -> int | None:
    """Memory the engine's batch can still take: free device memory for a GPU engine (the
    contract's `free_memory`), else the host's available memory (Linux MemAvailable, else
    physical pages); None if unknown."""
    free = engine.free_memory()
    if free is not None:
        return int(free)
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def engine_row_bytes(engine: Any) -> int:
    """Bytes one row of the engine's batch holds: its KV cache for the whole window (the
    contract's `kv_bytes_per_position`) and its logits."""
    c = engine.config
    return engine.kv_bytes_per_position * c.n_ctx + row_bytes(c, 0)


def check_batch_fits(engine: Any, rows: int, available: int | None = None) -> None:
    """Raise GenerationError, before anything is allocated, when `rows` rows cannot fit.
    `available` overrides what the machine reports (for tests)."""
    per_row = engine_row_bytes(engine)
    need = rows * per_row
    have = available_bytes(engine) if available is None else available
    if have is None or need <= HEADROOM * have:
        return
    fit = int(HEADROOM * have // per_row)
    c = engine.config
    raise GenerationError(
        f"{rows} rows need {human(need)} ({human(per_row)} a row: the KV cache for {c.n_ctx} positions "
        f"x {c.n_layer} layers, and the logits) but only {human(have)} is available; "
        f"at most {fit} rows fit here"
    )
