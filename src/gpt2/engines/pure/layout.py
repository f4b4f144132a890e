"""Weights laid out for fast matrix-vector products in pure Python.

Decoding spends nearly all its time in y = x @ W + b. Written as one inner
product per output, y[j] = dot(W[:, j], x) + b[j], the question is only how to
compute an inner product quickly with the standard library. Measured on
CPython 3.11 (768-long rows; `benchmarks/pure_dot.py`):

    sum(map(operator.mul, row, x))               ~23 ns per multiply-add
    math.dist identity, rows as tuples           ~7 ns
    math.dist identity, rows as array('f')       ~21 ns  (4 bytes a weight instead of 32)
    math.sumprod (Python >= 3.12)                C loop, no identity needed

The identity: |w - x|^2 = |w|^2 + |x|^2 - 2 w.x, so
w.x = (|w|^2 + |x|^2 - dist(w, x)^2) / 2, where `math.dist` runs in C and |w|^2
is computed once at load time. It loses a few bits to cancellation: the error
is about 1e-16 * (|w|^2 + |x|^2), far below float32 resolution and inside the
1e-9 that `gpt2 verify` demands of the pure engine against float64 NumPy.

Storage: "fast" keeps each row as a tuple of Python floats (32 bytes a weight:
~4 GB for the 124M model); "compact" keeps rows as array('f') (4 bytes a weight,
~3x slower), which is how the 1558M model fits in memory; "fp16" rounds every
weight to half precision, so there are at most 65536 distinct values, and makes
each row a tuple of references to one shared float per value: 8 bytes a weight
at the speed of "fast", at the price of float16 weights (about 3 decimal digits).
"""

from __future__ import annotations

import array
import math
import operator
import struct
import sys
from collections.abc import Callable, Sequence
from itertools import repeat
from typing import Any

STORAGES = ("fast", "compact", "fp16")
METHODS = ("sumprod", "dist", "map")

BEST_METHOD = "sumprod" if hasattr(math, "sumprod") else "dist"
# math.sumprod (Python >= 3.12), or None
_SUMPROD: Callable[[Sequence[float], Sequence[float]], float] | None = getattr(math, "sumprod", None)


def compact_row(values: memoryview | array.array) -> array.array:
    """A row as its own array of the source's width ('f' or 'd'), copied in C."""
    if isinstance(values, array.array):
        return values  # slicing an array already copied it
    row = array.array(values.format)
    row.frombytes(values.tobytes())  # tobytes gathers a strided view in logical order
    return row


class HalfFloats:
    """Rounds float rows to float16 and returns them as tuples of shared float objects."""

    def __init__(self) -> None:
        every_half = array.array("H", range(65536)).tobytes()
        if sys.byteorder != "little":
            swapped = array.array("H", range(65536))
            swapped.byteswap()
            every_half = swapped.tobytes()
        self.table = struct.unpack("<65536e", every_half)  # bit pattern -> its float

    def __call__(self, values: Sequence[float]) -> tuple:
        n = len(values)
        try:
            bits = array.array("H", struct.pack(f"<{n}e", *values))
        except OverflowError:
            raise ValueError("a weight is too large for float16 (|w| > 65504); use storage='compact'") from None
        if sys.byteorder != "little":
            bits.byteswap()
        return tuple(map(self.table.__getitem__, bits))


class RowMatrix:
    """Rows [lo, hi) of a matrix stored output-major: `matvec(x)[j] = dot(rows[j], x) + bias[j]`."""

    def __init__(
        self,
        flat: memoryview[float] | array.array[float],
        n_in: int,
        n_out: int,
        lo: int,
        hi: int,
        *,
        transposed: bool,
        bias: Sequence[float] | None,
        storage: str = "fast",
        method: str = BEST_METHOD,
    ) -> None:
        """`flat` holds the weight's values (a float memoryview or array) in checkpoint order:
        (n_in, n_out) Conv1D layout when `transposed` (row j is the strided column flat[j::n_out]), else (n_out, n_in)
        rows (the tied output projection `wte`)."""
        if storage not in STORAGES:
            raise ValueError(f"storage must be one of {STORAGES}, got {storage!r}")
        if method not in METHODS or (method == "sumprod" and _SUMPROD is None):
            raise ValueError(f"method {method!r} is not available here")
        makers: dict[str, Callable[[Any], Sequence[float]]] = {
            "fast": tuple,
            "compact": compact_row,
            "fp16": HalfFloats(),
        }
        make = makers[storage]
        if transposed:
            self.rows = [make(flat[j::n_out]) for j in range(lo, hi)]
        else:
            self.rows = [make(flat[j * n_in : (j + 1) * n_in]) for j in range(lo, hi)]
        self.bias = list(bias[lo:hi]) if bias is not None else [0.0] * (hi - lo)
        self.method = method
        # |w|^2 once per row; hypot is correctly rounded to within an ulp, in C.
        self.sq_norms = [math.hypot(*row) ** 2 for row in self.rows] if method == "dist" else []

    def matvec(self, x: Sequence[float]) -> list[float]:
        """[n_in] -> [hi - lo]."""
        if self.method == "sumprod" and _SUMPROD is not None:  # (its presence was checked in __init__)
            return list(map(operator.add, map(_SUMPROD, self.rows, repeat(x)), self.bias))
        if self.method == "map":
            mul = operator.mul
            return [sum(map(mul, row, x)) + b for row, b in zip(self.rows, self.bias)]
        x = tuple(x)  # math.dist converts anything but a tuple on every call
        nx = math.fsum(v * v for v in x)
        dists = map(math.dist, self.rows, repeat(x))
        return [(nw + nx - d * d) * 0.5 + b for nw, d, b in zip(self.sq_norms, dists, self.bias)]
