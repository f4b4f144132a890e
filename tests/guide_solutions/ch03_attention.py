"""Chapter 3, attention by hand."""

from __future__ import annotations

import math
from collections.abc import Sequence

from gpt2.engines.pure.ops import matmul, softmax, transpose

Matrix = Sequence[Sequence[float]]


def last_row_weights() -> list[float]:
    """Exercise 1: position 2 of the three-token example. Its query [1, 1] scores the keys
    [1, 0], [1, 1], [0, 1] as 1, 2, 1, times 1/sqrt(2); with u = e^(1/sqrt(2)) the
    exponentials are u, u^2, u, so the weights are [1, u, 1] / (2 + u)."""
    u = math.exp(1 / math.sqrt(2))
    return [1 / (2 + u), u / (2 + u), 1 / (2 + u)]


def attention_unmasked(q: Matrix, k: Matrix, v: Matrix) -> list[list[float]]:
    """Exercise 3: attention without the causal mask: every position sees every position."""
    scale = 1 / math.sqrt(len(q[0]))
    weights = [softmax([s * scale for s in row]) for row in matmul(q, transpose(k))]
    return matmul(weights, v)


def permute(rows: Matrix, order: Sequence[int]) -> list[list[float]]:
    return [list(rows[i]) for i in order]
