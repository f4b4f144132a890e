"""Int8 weights, the value type: one byte a weight and one float32 scale per output row.

GPT-2 decoding at batch 1 reads every weight once per token, so a weight stored in
one byte instead of four is read four times faster. The scheme is the simplest
one that keeps GPT-2's quality (the tests measure it on a trained model):
symmetric, per output row, round to nearest:

    scale[r] = max |W[r, :]| / 127          one float32 per output row r
    q[r, k]  = round(W[r, k] / scale[r])     an integer in [-127, 127] (an int8)
    W'[r, k] = q[r, k] * scale[r]            what the engines compute with

so every weight comes back within half a step (scale[r] / 2) of its original value,
and the largest weight of each row exactly. "Output row" means the row of the
matrix product's result: for a projection stored (in, out) as GPT-2's checkpoints
store it, output j is column j, so the scales run along axis 1; for the embedding
table `wte` [vocab, n_embd], which is also the tied output projection (logits =
wte @ x), the output rows are its rows, so the scales run along axis 0 (and an
embedding lookup dequantizes one row with one scale).

Which tensors: the four projections of every block and `wte` -- 99% of the bytes.
The position table, biases and layer norms stay as they are (float32).

The file layout (I8 values with `<name>_scale` beside them) is :mod:`gpt2.weights.quantized`'s;
this module is the value and its arithmetic, which the engines use without the I/O package.

>>> w = Tensor.from_floats([0.5, -1.0, 0.1, 0.2, 2.0, -0.3], (2, 3))   # (in, out)
>>> q = quantize_int8(w, axis=1)                               # one scale per output column
>>> list(q.values()), [round(s, 6) for s in q.scale.to_array()]
([127, -64, 42, 51, 127, -127], [0.003937, 0.015748, 0.002362])
>>> [round(x, 4) for x in q.to_array()]                        # the rounding error, visible
[0.5, -1.0079, 0.0992, 0.2008, 2.0, -0.3]
"""

from __future__ import annotations

import array
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .block import PROJECTIONS
from .tensor import Tensor, TensorError

QMAX = 127  # symmetric: -128 is never used, so q and -q are both representable


@dataclass(frozen=True)
class QuantizedTensor(Tensor):
    """An I8 tensor and its float32 scales (shaped to broadcast against it). It is a `Tensor`,
    so it travels in a parameter tree like any other; `to_array()`, `as_floats()` and `to_f32()`
    give the dequantized values, `values()` the integers."""

    scale: Tensor

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.dtype != "I8":
            raise TensorError(f"a quantized tensor holds I8 values, not {self.dtype}")
        if len(self.shape) != 2 or self.scale.shape not in ((1, self.shape[1]), (self.shape[0], 1)):
            raise TensorError(
                f"scales {list(self.scale.shape)} do not run along one axis of I8{list(self.shape)}: "
                f"expected [1, {self.shape[1] if self.shape else '?'}] or [{self.shape[0] if self.shape else '?'}, 1]"
            )
        if self.scale.dtype != "F32":
            raise TensorError(f"scales must be F32, not {self.scale.dtype}")

    @property
    def axis(self) -> int:
        """The axis the scales run along: the output axis (1 for an (in, out) projection, 0 for wte)."""
        return 0 if self.scale.shape == (self.shape[0], 1) else 1

    def values(self) -> array.array:
        """The int8 values, `array('b')`, C order."""
        out = array.array("b")
        out.frombytes(memoryview(self.data).cast("B"))
        return out

    def to_array(self) -> array.array:
        """The dequantized values q * scale, `array('f')`: each product of an int8 and a float32
        is exact in a Python float, so storing it rounds once, as a float32 multiply does."""
        q, scales = self.values(), self.scale.to_array()
        rows, cols = self.shape
        out = array.array("f", bytes(4 * rows * cols))
        for r in range(rows):
            row = q[r * cols : (r + 1) * cols]
            if self.axis == 0:
                s = scales[r]
                out[r * cols : (r + 1) * cols] = array.array("f", [v * s for v in row])
            else:
                out[r * cols : (r + 1) * cols] = array.array("f", map(float.__mul__, map(float, row), scales))
        return out

    def as_floats(self) -> array.array:
        return self.to_array()

    def to_f32(self) -> Tensor:
        return dequantize(self)


def dequantize(t: Tensor) -> Tensor:
    """An F32 tensor of the values `t` stands for (a float tensor is returned unchanged)."""
    if not isinstance(t, QuantizedTensor):
        return t
    np = _numpy()
    if np is None:
        return Tensor.from_array(t.to_array(), t.shape)
    q = np.frombuffer(memoryview(t.data).cast("B"), dtype=np.int8).reshape(t.shape)
    scale = np.frombuffer(memoryview(t.scale.data).cast("B"), dtype="<f4").reshape(t.scale.shape)
    return Tensor(t.shape, "F32", memoryview(np.multiply(q, scale, dtype=np.float32)).cast("B"))


def quantize_int8(t: Tensor, axis: int) -> QuantizedTensor:
    """Quantize a 2-D float tensor with one scale per index of `axis` (its output axis)."""
    if len(t.shape) != 2 or axis not in (0, 1):
        raise TensorError(f"int8 quantization takes a matrix and axis 0 or 1, got {list(t.shape)} and {axis!r}")
    rows, cols = t.shape
    np = _numpy()
    if np is not None:
        w = _as_numpy(np, t)  # [rows, cols] float32
        amax = np.abs(w).max(axis=1 - axis, keepdims=True) if w.size else np.zeros((rows, 1), np.float32)
        scale = (amax.astype(np.float64) / QMAX).astype(np.float32)  # rounded to float32 once, as stored
        if not np.isfinite(scale).all():
            raise TensorError("cannot quantize a tensor holding inf or NaN")
        divisor = np.where(scale > 0, scale, 1).astype(np.float64)  # an all-zero row: q = 0 whatever the scale
        x = w.astype(np.float64)
        x /= divisor
        q = np.clip(np.rint(x, out=x), -QMAX, QMAX, out=x).astype(np.int8)
        return QuantizedTensor(t.shape, "I8", q.tobytes(), Tensor(scale.shape, "F32", scale.tobytes()))
    values = t.to_f32().as_floats()
    if axis == 0:
        amax = [max(map(abs, values[r * cols : (r + 1) * cols]), default=0.0) for r in range(rows)]
    else:
        amax = [0.0] * cols
        for r in range(rows):
            amax = list(map(max, amax, map(abs, values[r * cols : (r + 1) * cols])))
    if not all(math.isfinite(a) for a in amax):
        raise TensorError("cannot quantize a tensor holding inf or NaN")
    scales = array.array("f", [a / QMAX for a in amax])  # float32, as stored
    divisors = [s if s > 0 else 1.0 for s in scales]
    q = array.array("b", bytes(rows * cols))
    for r in range(rows):
        row = values[r * cols : (r + 1) * cols]
        if axis == 0:
            d = divisors[r]
            q[r * cols : (r + 1) * cols] = array.array("b", [_clip(round(v / d)) for v in row])
        else:
            q[r * cols : (r + 1) * cols] = array.array("b", [_clip(round(v / d)) for v, d in zip(row, divisors)])
    shape = (rows, 1) if axis == 0 else (1, cols)
    return QuantizedTensor(t.shape, "I8", q.tobytes(), Tensor.from_array(scales, shape))


def _clip(v: int) -> int:
    return -QMAX if v < -QMAX else QMAX if v > QMAX else v


# --- which tensors, in a parameter tree --------------------------------------------------------


def quantized_names(params: Mapping[str, Tensor]) -> dict[str, int]:
    """The tensors int8 quantizes, each with its output axis: every block projection (axis 1)
    and the embedding table, which is also the output projection (axis 0)."""
    names = {"wte.weight": 0}
    projections = tuple(f".{name}.weight" for name, _, _ in PROJECTIONS)
    names.update((name, 1) for name in params if name.startswith("h.") and name.endswith(projections))
    return {name: axis for name, axis in names.items() if name in params}


def quantize_params(params: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The tree with its projections and embedding table quantized to int8 (see the module
    docstring); tensors already quantized are kept as they are."""
    out = dict(params)
    for name, axis in quantized_names(params).items():
        if not isinstance(params[name], QuantizedTensor):
            out[name] = quantize_int8(params[name], axis)
    return out


def dequantize_params(params: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The tree with every quantized tensor replaced by its float32 values."""
    return {name: dequantize(t) for name, t in params.items()}


def is_quantized(params: Mapping[str, Tensor]) -> bool:
    return any(isinstance(t, QuantizedTensor) for t in params.values())


# --- NumPy, when it is installed (the same numbers, a hundred times faster) -----------------------


def _numpy() -> Any:
    try:
        import numpy
    except ImportError:
        return None
    return numpy


def _as_numpy(np: Any, t: Tensor) -> Any:
    """A float tensor as a float32 [rows, cols] array (a view of F32 bytes)."""
    if t.dtype == "F32":
        return np.frombuffer(memoryview(t.data).cast("B"), dtype="<f4").reshape(t.shape)
    return np.frombuffer(memoryview(t.to_f32().data).cast("B"), dtype="<f4").reshape(t.shape)
