"""Chapter 4, the block."""

from __future__ import annotations

import math

from gpt2.engines.pure.ops import gelu
from gpt2.params import BLOCK_TENSORS


def block_parameter_count(n_embd: int) -> int:
    """Exercise 1: the block's parameters, from its tensor list (shapes in units of C)."""
    return sum(math.prod(k * n_embd for k in dims) for _, dims, _ in BLOCK_TENSORS)


def gelu_minimum(step: float = 0.001) -> tuple[float, float]:
    """Exercise 3: (x, gelu(x)) where the tanh GELU is smallest, on a grid over [-3, 0]."""
    grid = [-3 + i * step for i in range(round(3 / step) + 1)]
    x = min(grid, key=gelu)
    return x, gelu(x)
