"""The NumPy engine's weights, laid out for its products.

Each projection's weight becomes a `Matrix`, stored (out, in) so that a product is `W @ x`:

- with the C kernels (gpt2.engines.native): packed in tiles, as float32 (`PackedF32`), bf16
  (`PackedBf16`, the engine's dtype "bfloat16") or int8 (`PackedInt8`, an int8 tree);
- without them: a contiguous NumPy array for BLAS, an int8 tree widened to float32 once
  (`dequantize="load"`), or kept int8 and widened a slice at a time (`Int8Matrix`, "layer").

>>> from gpt2.tensor import Tensor
>>> w = Layout(np.dtype(np.float32), None, "load", False).matrix(Tensor.from_floats([1, 2, 3, 4, 5, 6], (2, 3)), True)
>>> w.tolist()  # the checkpoint's (in, out) [2, 3] stored (out, in) [3, 2]
[[1.0, 4.0], [2.0, 5.0], [3.0, 6.0]]
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..quantized_tensor import QuantizedTensor, dequantize
from ..tensor import Tensor
from .native.products import Kernels, PackedBf16, PackedF32, PackedInt8, int8_rows
from .plan import DEQUANTIZE

__all__ = ["DEQUANTIZE", "Int8Matrix", "Layout", "Matrix", "tensor_to_numpy"]


def tensor_to_numpy(t: Tensor) -> np.ndarray:
    """A `Tensor` as a NumPy array of its own precision (a view of its bytes where possible);
    an int8 one (gpt2.weights.quantized) as its dequantized float32 values."""
    if isinstance(t, QuantizedTensor):
        t = dequantize(t)
    raw = memoryview(t.data).cast("B")
    if t.dtype == "BF16":  # the top half of a float32
        return (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32).reshape(t.shape)
    return np.frombuffer(raw, dtype={"F32": "<f4", "F16": "<f2", "F64": "<f8"}[t.dtype]).reshape(t.shape)


class Int8Matrix:
    """An int8 matrix q [out, in] with float32 scales [out], multiplied a slice of rows at a time:
    each slice is widened to float32 into one buffer shared by every matrix (small enough to stay
    in the CPU's cache), multiplied by BLAS, and the scales are applied to the slice's outputs
    (y[r] = scale[r] * (q[r] @ x): the same value as dequantizing first, one multiply per row)."""

    BUFFER_BYTES = 512 * 1024  # about half of a core's L2 cache

    def __init__(self, q: np.ndarray, scale: np.ndarray, dtype: Any, buffer: np.ndarray) -> None:
        self.q = np.ascontiguousarray(q)  # [out, in] int8
        self.scale = np.ascontiguousarray(scale, dtype=dtype).reshape(-1)  # [out]
        self.shape = self.q.shape
        self.slice_rows = max(1, self.BUFFER_BYTES // (self.shape[1] * np.dtype(dtype).itemsize))  # rows a slice
        self.buffer = buffer  # [BUFFER_BYTES] of dtype, shared

    def product(self, x: np.ndarray, out: np.ndarray) -> None:
        """out [N, out_dim] = x [N, in] @ (q * scale).T, written in place."""
        n_out, n_in = self.shape
        for start in range(0, n_out, self.slice_rows):
            stop = min(start + self.slice_rows, n_out)
            w = self.buffer[: (stop - start) * n_in].reshape(stop - start, n_in)
            np.copyto(w, self.q[start:stop], casting="unsafe")  # int8 -> float, exact
            block = out[:, start:stop]  # [N, rows]
            if x.shape[0] == 1:
                np.matmul(w, x[0], out=block[0])
            else:
                np.matmul(w, x.T, out=block.T)
            block *= self.scale[start:stop]

    def rows(self, ids: np.ndarray) -> np.ndarray:
        """Rows ids [...] of q * scale [..., in] (an embedding lookup)."""
        return self.q[ids] * self.scale[ids][..., None]


Matrix = np.ndarray | Int8Matrix | PackedInt8 | PackedBf16 | PackedF32


class Layout:
    """How an engine lays its weights out: its dtype, its C kernels (or None), what it does with
    int8 weights without them, and whether its float weights are kept in bf16."""

    def __init__(self, dtype: np.dtype, kernels: Kernels | None, dequantize: str, bf16: bool) -> None:
        self.dtype, self.kernels, self.dequantize, self.bf16 = dtype, kernels, dequantize, bf16
        self._shared: np.ndarray | None = None  # the slices' buffer of dequantize="layer"

    def matrix(self, t: Tensor, transpose: bool, head: bool = False) -> Matrix:
        """The tensor laid out (out, in) for its products (a checkpoint's projection is (in, out):
        transpose). The head's int8 products take x in two parts, about 15 bits (docs/precision.md)."""
        kernels = self.kernels
        if isinstance(t, QuantizedTensor) and (kernels is not None or self.dequantize == "layer"):
            if kernels is not None:
                return PackedInt8.of(t, kernels, precise=head)
            q, scale = int8_rows(t)  # (out, in), [out]
            if self._shared is None:
                self._shared = np.empty(Int8Matrix.BUFFER_BYTES // self.dtype.itemsize, self.dtype)
            return Int8Matrix(q, scale, self.dtype, self._shared)
        values = tensor_to_numpy(t)
        values = np.ascontiguousarray(values.T if transpose else values, dtype=self.dtype)
        if kernels is None:
            return values
        return PackedBf16(values, kernels) if self.bf16 else PackedF32(values, kernels)
