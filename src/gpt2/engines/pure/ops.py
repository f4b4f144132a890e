"""The math of GPT-2 on plain Python lists, one concept per function.

A vector is a `list[float]`; a matrix is a list of rows. Everything here is
float64 (Python's float) and readable first; `gpt2.engines.pure.layout` holds the fast
inner product the engine uses for the big matrices.

>>> matmul([[1.0, 2.0]], [[3.0], [4.0]])
[[11.0]]
>>> [round(p, 4) for p in softmax([1.0, 2.0, 3.0])]
[0.09, 0.2447, 0.6652]
>>> round(gelu(1.0), 6)
0.841192
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence

Vector = Sequence[float]
Matrix = Sequence[Sequence[float]]


def dot_python(a: Vector, b: Vector) -> float:
    """Inner product: sum_i a[i] * b[i]."""
    return sum(map(operator.mul, a, b))


# The inner product the engine uses: Python >= 3.12 has the same sum in C, with extended precision.
dot: Callable[[Vector, Vector], float] = getattr(math, "sumprod", dot_python)


def transpose(m: Matrix) -> list[list[float]]:
    """[n][k] -> [k][n]."""
    return [list(col) for col in zip(*m)]


def matmul(a: Matrix, b: Matrix) -> list[list[float]]:
    """[n][k] @ [k][m] -> [n][m]: each output is a row of `a` dotted with a column of `b`."""
    columns = transpose(b)  # [m][k]
    return [[dot(row, col) for col in columns] for row in a]


def add(a: Vector, b: Vector) -> list[float]:
    """Elementwise a + b."""
    return list(map(operator.add, a, b))


def add_matrices(a: Matrix, b: Matrix) -> list[list[float]]:
    return [add(x, y) for x, y in zip(a, b)]


def scale(v: Vector, s: float) -> list[float]:
    return [x * s for x in v]


def softmax(x: Vector) -> list[float]:
    """exp(x) / sum(exp(x)), with the max subtracted first so exp never overflows."""
    top = max(x)
    exps = [math.exp(v - top) for v in x]
    total = math.fsum(exps)
    return [e / total for e in exps]


def causal_softmax(scores: Matrix) -> list[list[float]]:
    """Row-wise softmax where row t sees only columns 0..t (the causal mask).

    Masked entries are exactly 0: they are left out of the sum rather than set to -inf.
    """
    n = len(scores[0])
    return [softmax(row[: t + 1]) + [0.0] * (n - t - 1) for t, row in enumerate(scores)]


def mean(x: Vector) -> float:
    return math.fsum(x) / len(x)


def layer_norm(x: Vector, gain: Vector, bias: Vector, eps: float = 1e-5) -> list[float]:
    """(x - mean) / sqrt(variance + eps) * gain + bias, over one vector (biased variance)."""
    mu = mean(x)
    centred = [v - mu for v in x]
    inv_std = 1.0 / math.sqrt(mean([c * c for c in centred]) + eps)
    return [c * inv_std * g + b for c, g, b in zip(centred, gain, bias)]


_GELU_C = math.sqrt(2.0 / math.pi)


def gelu(x: float) -> float:
    """GPT-2's GELU, the tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    return 0.5 * x * (1.0 + math.tanh(_GELU_C * (x + 0.044715 * x * x * x)))


def gelu_vector(v: Vector) -> list[float]:
    return [gelu(x) for x in v]


def linear(x: Matrix, weight: Matrix, bias: Vector) -> list[list[float]]:
    """x @ weight + bias for a batch of rows: [n][in] @ [in][out] + [out] -> [n][out].

    `weight` is in GPT-2's Conv1D layout, (in, out), as the checkpoints store it.
    """
    return [add(row, bias) for row in matmul(x, weight)]
