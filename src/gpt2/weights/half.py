"""Half-precision storage: float32 weights rounded to bfloat16 or float16 (two bytes a weight).

    bfloat16  float32's 8-bit exponent, 7 bits of mantissa: every float32 range, ~3 digits
    float16   IEEE half: 5-bit exponent (largest 65504), 10 bits of mantissa: ~3.3 digits

Both round to nearest, ties to even, as hardware does. A bfloat16 is the top half of a
float32's bits, so rounding is integer arithmetic on those bits; float16 goes through
`struct`'s IEEE half ('e'). A float16 weight beyond 65504 is an error here (GPT-2's
are all far smaller), never a silent infinity.

>>> t = Tensor.from_floats([1.0, 0.1, -3.14159], (3,))
>>> [round(x, 6) for x in cast_tensor(t, "bfloat16").to_array()]
[1.0, 0.100098, -3.140625]
>>> [round(x, 6) for x in cast_tensor(t, "float16").to_array()]
[1.0, 0.099976, -3.140625]
"""

from __future__ import annotations

import array
import struct
import sys
from collections.abc import Mapping
from typing import Any

from ..params import Params
from ..tensor import Tensor
from .errors import WeightsError

# The names the command line and the engines use -> safetensors dtypes.
DTYPES = {"float32": "F32", "bfloat16": "BF16", "float16": "F16"}
F16_MAX = 65504.0


def cast_tensor(t: Tensor, dtype: str) -> Tensor:
    """`t` stored as `dtype` ("float32", "bfloat16" or "float16"), rounded to nearest even."""
    target = _target(dtype)
    if t.dtype == target:
        return t
    if t.dtype not in ("F32", "F64", "F16", "BF16"):
        raise WeightsError(f"cannot cast a {t.dtype} tensor to {dtype}; dequantize it first")
    src = t.to_f32()
    if target == "F32":
        return src
    np = _numpy()
    if np is not None:
        return Tensor(t.shape, target, _cast_numpy(np, src, target))
    values = src.as_floats()
    if target == "F16":
        big = max(map(abs, values), default=0.0)
        if big > F16_MAX:
            raise WeightsError(f"a weight of magnitude {big:g} does not fit in float16 (largest {F16_MAX:g})")
        return Tensor(t.shape, "F16", struct.pack(f"<{len(values)}e", *values))
    words = array.array("I")
    words.frombytes(memoryview(src.data).cast("B"))
    if sys.byteorder != "little":
        words.byteswap()
    halves = array.array("H", map(_bf16_bits, words))
    if sys.byteorder != "little":
        halves.byteswap()
    return Tensor(t.shape, "BF16", halves.tobytes())


def cast_params(params: Mapping[str, Tensor], dtype: str) -> Params:
    """Every float tensor of the tree stored as `dtype` (see `cast_tensor`); int8 ones
    (gpt2.weights.quantized) keep their values and float32 scales."""
    _target(dtype)
    return {name: t if t.dtype == "I8" else cast_tensor(t, dtype) for name, t in params.items()}


def _target(dtype: str) -> str:
    try:
        return DTYPES[dtype]
    except (KeyError, TypeError):
        raise WeightsError(f"unknown storage dtype {dtype!r}; choose one of {', '.join(DTYPES)}") from None


def _bf16_bits(bits: int) -> int:
    """The bfloat16 nearest a float32 (given as its 32 bits), ties to even; NaN stays NaN."""
    if bits & 0x7FFFFFFF > 0x7F800000:  # NaN: keep it quiet and a NaN after truncation
        return (bits >> 16) | 0x0040
    return (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16


def _numpy() -> Any:
    try:
        import numpy
    except ImportError:
        return None
    return numpy


def _cast_numpy(np: Any, src: Tensor, target: str) -> bytes:
    """The same rounding as the standard-library path, vectorised."""
    w = np.frombuffer(memoryview(src.data).cast("B"), dtype="<f4")
    if target == "F16":
        big = float(np.abs(w).max()) if w.size else 0.0
        if big > F16_MAX:
            raise WeightsError(f"a weight of magnitude {big:g} does not fit in float16 (largest {F16_MAX:g})")
        return w.astype("<f2").tobytes()
    bits = w.view("<u4")
    # uint32 arithmetic: only NaNs' bit patterns could carry out of it, and they are set below.
    rounded = ((bits + np.uint32(0x7FFF) + ((bits >> 16) & np.uint32(1))) >> 16).astype("<u2")
    nan = np.isnan(w)
    if nan.any():
        rounded[nan] = ((bits[nan] >> 16) | 0x0040).astype("<u2")
    return rounded.tobytes()
