"""`Tensor`: the one framework-free container every weight passes through.

Readers (safetensors, PyTorch `.bin`, TensorFlow checkpoints) produce it,
writers consume it, and each engine turns it into its own layout once, at load
time: the pure engine into rows of Python floats, NumPy with `np.frombuffer`
(no copy), PyTorch with `torch.frombuffer`. Data is little-endian, C order,
exactly as safetensors stores it.

>>> t = Tensor.from_floats([1.0, 2.0, 3.0, 4.0], (2, 2))
>>> t.shape, t.dtype, t.numel
((2, 2), 'F32', 4)
>>> list(t.to_array())
[1.0, 2.0, 3.0, 4.0]
"""

from __future__ import annotations

import array
import math
import sys
from collections.abc import Iterable
from dataclasses import dataclass

from .errors import Gpt2Error

Buffer = bytes | bytearray | memoryview

# safetensors dtype name -> bytes per element. I8 holds int8 weights, which mean nothing without
# their scales: `gpt2.quantized_tensor.QuantizedTensor` pairs the two (see docs/precision.md).
DTYPE_SIZES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I8": 1}
FLOAT_DTYPES = ("F64", "F32", "F16", "BF16")

_LITTLE = sys.byteorder == "little"


class TensorError(Gpt2Error, ValueError):
    """A tensor's bytes do not match its dtype and shape."""


def numel_of(shape: tuple[int, ...]) -> int:
    return math.prod(shape)


@dataclass(frozen=True)
class Tensor:
    shape: tuple[int, ...]
    dtype: str  # one of DTYPE_SIZES
    data: Buffer  # little-endian, C order

    def __post_init__(self) -> None:
        if self.dtype not in DTYPE_SIZES:
            raise TensorError(f"unsupported dtype {self.dtype!r}")
        expected = self.numel * DTYPE_SIZES[self.dtype]
        if memoryview(self.data).nbytes != expected:
            raise TensorError(
                f"{self.dtype}{list(self.shape)} needs {expected} bytes, got {memoryview(self.data).nbytes}"
            )

    @property
    def numel(self) -> int:
        return numel_of(self.shape)

    @property
    def nbytes(self) -> int:
        return self.numel * DTYPE_SIZES[self.dtype]

    # --- conversion ----------------------------------------------------------------

    def to_array(self) -> array.array:
        """The values as `array('f')` (F32/F16/BF16) or `array('d')` (F64), native order."""
        if self.dtype not in FLOAT_DTYPES:
            raise TensorError(
                f"{self.dtype}{list(self.shape)} holds integers without their scales; "
                "gpt2.quantized_tensor.QuantizedTensor pairs them and dequantizes"
            )
        raw = memoryview(self.data).cast("B")
        if self.dtype in ("F32", "F64"):
            out = array.array("f" if self.dtype == "F32" else "d")
            out.frombytes(raw)
            if not _LITTLE:
                out.byteswap()
            return out
        if self.dtype == "F16":
            halves = array.array("H")
            halves.frombytes(raw)
            if not _LITTLE:
                halves.byteswap()
            # struct's 'e' format is IEEE half precision; unpack in one call.
            import struct

            return array.array("f", struct.unpack(f"<{len(halves)}e", halves.tobytes()))
        # BF16 is the top half of a float32: shift each 16-bit word into place.
        halves = array.array("H")
        halves.frombytes(raw)
        if not _LITTLE:
            halves.byteswap()
        words = array.array("I", [h << 16 for h in halves])
        out = array.array("f")
        out.frombytes(words.tobytes())
        return out

    def as_floats(self) -> memoryview[float] | array.array[float]:
        """The values as a flat sequence of floats, without copying where the bytes allow
        (F32/F64 on a little-endian machine: a memoryview cast over `data`); otherwise the
        converted copy from `to_array`."""
        if _LITTLE and self.dtype in ("F32", "F64"):
            return memoryview(self.data).cast("B").cast("f" if self.dtype == "F32" else "d")
        return self.to_array()

    def to_f32(self) -> Tensor:
        """This tensor as F32 (a no-op when it already is)."""
        if self.dtype == "F32":
            return self
        return Tensor.from_array(array.array("f", self.to_array()), self.shape)

    # --- construction --------------------------------------------------------------

    @classmethod
    def from_array(cls, values: array.array, shape: Iterable[int]) -> Tensor:
        """Wrap an `array('f')` or `array('d')` (copied to little-endian if needed)."""
        shape = tuple(int(s) for s in shape)
        if values.typecode not in ("f", "d"):
            raise TensorError(f"array typecode must be 'f' or 'd', got {values.typecode!r}")
        if not _LITTLE:
            values = array.array(values.typecode, values)
            values.byteswap()
        dtype = "F32" if values.typecode == "f" else "F64"
        return cls(shape, dtype, memoryview(values).cast("B"))

    @classmethod
    def from_floats(cls, values: Iterable[float], shape: Iterable[int], dtype: str = "F32") -> Tensor:
        if dtype not in ("F32", "F64"):
            raise TensorError(f"from_floats makes F32 or F64, not {dtype}")
        return cls.from_array(array.array("f" if dtype == "F32" else "d", values), shape)
