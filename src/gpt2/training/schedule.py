"""The learning-rate schedule: linear warm-up, then cosine decay to a floor.

The rate is a pure function of the step, so the "scheduler state" a checkpoint
needs is just the step number.

>>> [round(learning_rate(s, max_lr=1.0, min_lr=0.1, warmup=2, total=10), 3) for s in (0, 1, 2, 6, 10, 12)]
[0.5, 1.0, 1.0, 0.55, 0.1, 0.1]
"""

from __future__ import annotations

import math


def learning_rate(step: int, *, max_lr: float, min_lr: float, warmup: int, total: int) -> float:
    """The rate for optimizer step `step` (0-based) of `total`."""
    if step < warmup:
        return max_lr * (step + 1) / warmup  # never 0: the first step already learns
    if step >= total:
        return min_lr
    progress = (step - warmup) / max(1, total - warmup)  # 0 -> 1 over the decay
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (max_lr - min_lr)
