"""float32, bf16 and int8 weights packed for the C kernels (products.c, attention.c), and the calls.

A `PackedInt8`, `PackedBf16` or `PackedF32` holds one projection's weight [M, K] packed the way the kernel
streams it (see products.c: tiles of 8 rows interleaved 64 bytes at a time, K padded to a
multiple of 64), and multiplies rows of float32 activations by it:

    weight.product(x, out, bias)     # out [N, M] = x [N, K] @ W.T + bias, in place

and, fused into the same call (x is read once, by C): `norm=(gain, shift, eps)` layer-normalises
each row of x first, and `accumulate=True` adds the result into out (a residual connection)
instead of overwriting it.

The packed layout is also an embedding table: `rows(ids)` reads rows back as float32 (a
weight that is both the embedding and the output projection, GPT-2's tied `wte`, is stored
once).

>>> import numpy as np
>>> kernels = Kernels.load()                                      # compiled on first use
>>> w = np.array([[0.5, -1.0], [0.25, 2.0], [1.0, 0.0]], np.float32)  # [M=3, K=2]
>>> packed = PackedBf16(w, kernels)                               # these values are exact in bf16
>>> out = np.empty((1, 3), np.float32)
>>> packed.product(np.array([[2.0, 1.0]], np.float32), out, bias=None)
>>> out.tolist(), packed.rows(np.array([1])).tolist()
([[0.0, 2.5, 2.0]], [[0.25, 2.0]])
"""

from __future__ import annotations

import ctypes
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from ...quantized_tensor import QuantizedTensor
from .build import NativeUnavailable, load

__all__ = ["Kernels", "NativeUnavailable", "PackedBf16", "PackedF32", "PackedInt8", "default_threads", "int8_rows"]

TILE = 8  # rows a tile (R in products.c)
ALIGN = 64  # bytes: the kernels' aligned loads; also K's padding

_P, _I, _INT, _F = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_float
_INT8_ARGS: list[Any] = [_P, _I, _I, _I, _I, _P, _P, _P, _I, _I, _P, _I, _I, _P, _P, _F, _INT, _INT, _INT, _P]
_ATTENTION_ARGS: list[Any] = [_P, _I, _I, _I, _I, _P, _P, _I, _I, _P, _I, _I, _I, _P, _INT, _P]
_F32_ARGS: list[Any] = [_P, _I, _I, _I, _I, _P, _P, _I, _I, _P, _I, _I, _P, _P, _F, _INT, _INT, _P]
_BF16_ARGS: list[Any] = [_P, _I, _I, _I, _I, _P, _P, _I, _I, _P, _I, _I, _P, _P, _F, _INT, _INT, _P]

Norm = tuple[np.ndarray, np.ndarray, float]  # a layer norm applied to x first: gain [K], bias [K], eps
_NO_NORM = (None, None, 0.0)
_F32, _I64 = np.dtype(np.float32), np.dtype(np.int64)


def default_threads() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class Kernels:
    """The compiled products, a thread count, and scratch memory that grows as needed.

    One `Kernels` may be shared by several engines and called from several threads at once
    (ctypes lets go of the GIL during a product): each thread has its own scratch buffer, so one
    thread's input is never overwritten by another's before the pool has read it, and the pool
    (pool.c) runs one product at a time."""

    def __init__(self, library: ctypes.CDLL, threads: int | None = None) -> None:
        self.library = library
        library.gpt2_int8_linear.argtypes = _INT8_ARGS
        library.gpt2_int8_linear.restype = None
        library.gpt2_bf16_linear.argtypes = _BF16_ARGS
        library.gpt2_bf16_linear.restype = None
        library.gpt2_f32_linear.argtypes = _F32_ARGS
        library.gpt2_f32_linear.restype = None
        library.gpt2_attention.argtypes = _ATTENTION_ARGS
        library.gpt2_attention.restype = None
        features = library.gpt2_native_features()
        self.int8_simd, self.bf16_simd, self.f32_simd = bool(features & 1), bool(features & 2), bool(features & 4)
        self.threads = threads or default_threads()
        self._local = threading.local()  # each thread's scratch: (buffer, aligned address)
        self.int8_linear, self.bf16_linear = library.gpt2_int8_linear, library.gpt2_bf16_linear
        self.f32_linear = library.gpt2_f32_linear
        self.attention_kernel = library.gpt2_attention
        # id -> (the vector, kept alive so that its id stays its own; its address)
        self._vectors: dict[int, tuple[np.ndarray, int]] = {}

    @classmethod
    def load(cls, threads: int | None = None, cache_dir: Path | None = None, compiler: str | None = None) -> Kernels:
        """Build (once per machine, cached) and load the kernels; NativeUnavailable if they cannot be."""
        return cls(load(cache_dir, compiler), threads)

    def describe(self) -> str:
        """What the products use here, in words."""
        int8 = "AVX512-VNNI" if self.int8_simd else "plain C"
        bf16 = "AVX512-BF16" if self.bf16_simd else "plain C"
        f32 = "AVX512" if self.f32_simd else "plain C"
        return f"C products: int8 {int8}, bf16 {bf16}, float32 {f32}; {self.threads} thread(s)"

    def vector(self, a: np.ndarray | None, n: int) -> int | None:
        """A float32 vector's address (None: absent). Biases and norms are the same few hundred
        vectors call after call, so their checked addresses are remembered (a microsecond a
        lookup otherwise, four a product)."""
        if a is None:
            return None
        known = self._vectors.get(id(a))
        if known is not None and known[0] is a:
            return known[1]
        if a.dtype != np.float32 or a.shape != (n,) or not a.flags.c_contiguous:
            raise ValueError(f"expected a contiguous float32 vector of {n}, got {a.dtype} {a.shape}")
        if len(self._vectors) >= 4096:  # bounded, whatever a caller passes
            self._vectors.clear()
        address = _address(a)
        self._vectors[id(a)] = (a, address)  # (another thread may clear the dict: return our own)
        return address

    def attention(
        self, qkv: np.ndarray, keys: np.ndarray, values: np.ndarray, past: np.ndarray, out: np.ndarray
    ) -> None:
        """Causal attention of T new positions in each of B rows (gpt2.engines.numpy_engine's
        attention(), in one call): writes their keys and values into one layer's cache, keys
        and values [B, H, n_ctx, hd] float32 (views of the engine's cache), after each row's
        past [B] (int64) positions, and out [B * T, H * hd] (contiguous) = the heads' outputs.
        qkv: [B * T, 3 * H * hd] float32, any strides."""
        B, H, n_ctx, hd = keys.shape
        n = qkv.shape[0]
        T = n // B
        longest = int(past[0]) if B == 1 else int(past.max())
        if (  # everything the kernel relies on (memory outside the cache would be written otherwise)
            qkv.shape[1] != 3 * H * hd
            or n != B * T
            or out.shape != (n, H * hd)
            or longest + T > n_ctx
            or values.shape != keys.shape
            or keys.strides != values.strides
            or keys.strides[2:] != (4 * hd, 4)
            or past.shape != (B,)
            or past.dtype != _I64
            or not out.flags.c_contiguous
            or not qkv.dtype == keys.dtype == values.dtype == out.dtype == _F32
        ):
            raise ValueError("attention operands of the wrong shapes, strides or dtypes, or past the window")
        (sq_n, sq_m), (s_b, s_h) = qkv.strides, keys.strides[:2]
        self.attention_kernel(
            _address(qkv), B, T, sq_n >> 2, sq_m >> 2, _address(keys), _address(values), s_b >> 2, s_h >> 2,
            _address(past), H, hd, n_ctx, _address(out), self.threads,
            self.scratch(4 * B * H * (n_ctx + hd)),
        )  # fmt: skip

    def scratch(self, nbytes: int) -> int:
        """The address of at least nbytes of this thread's scratch memory, 64-byte aligned. (The
        buffer stays alive until this thread asks for a larger one, after its product returned.)"""
        local = self._local
        buffer = getattr(local, "buffer", None)
        if buffer is None or buffer.nbytes < nbytes + ALIGN:
            local.buffer = buffer = np.empty(nbytes + ALIGN, np.uint8)
            local.at = _address(buffer) + (-_address(buffer)) % ALIGN
        return int(local.at)


class _Packed:
    """What every packed weight shares: shape, padding, the aligned tiles and the call's operands."""

    def __init__(self, values: np.ndarray, fill: int, kernels: Kernels) -> None:
        """values [M, K] in the stored dtype (an integer view of it); fill: a zero weight's value."""
        self.shape: tuple[int, int] = values.shape
        self.padded_k = -(-self.shape[1] // ALIGN) * ALIGN
        self.kernels = kernels
        self.data = self._pack(values, fill)  # the packed tiles
        self._data = _address(self.data)

    @staticmethod
    def _pack(values: np.ndarray, fill: int) -> np.ndarray:
        """values [M, K] (int dtype) -> tiles [M/8, Kp/c, 8, c] (c values make 64 bytes), aligned."""
        m, k = values.shape
        per = ALIGN // values.dtype.itemsize  # values a row contributes to each 64-byte chunk
        mp, kp = -(-m // TILE) * TILE, -(-k // ALIGN) * ALIGN
        padded = np.full((mp, kp), fill, values.dtype)
        padded[:m, :k] = values
        tiles = padded.reshape(mp // TILE, TILE, kp // per, per).transpose(0, 2, 1, 3)
        out = _aligned_empty(padded.nbytes).view(values.dtype).reshape(tiles.shape)
        out[...] = tiles
        return out

    def _rows_raw(self, ids: np.ndarray) -> np.ndarray:
        """The packed values of rows ids [...] -> [..., K] (still in the stored dtype)."""
        ids = np.asarray(ids)
        rows = self.data[ids // TILE, :, ids % TILE, :]  # [..., Kp/c, c]
        return rows.reshape(*ids.shape, self.padded_k)[..., : self.shape[1]]

    def _operands(self, x: np.ndarray, out: np.ndarray) -> tuple[int, int, int, int, int, int, int]:
        """n, and x's and out's addresses and strides (in floats), checked. (This runs 49 times a
        token: a microsecond here is 2% of a step.)"""
        n, k = x.shape
        if k != self.shape[1] or out.shape != (n, self.shape[0]) or x.dtype != _F32 or out.dtype != _F32:
            raise ValueError(
                f"product of float32 x {x.shape} and a [{self.shape[0]}, {self.shape[1]}] weight into float32 "
                f"{out.shape} (got {x.dtype} and {out.dtype})"
            )
        (xn, xk), (on, om) = x.strides, out.strides
        return n, _address(x), xn >> 2, xk >> 2, _address(out), on >> 2, om >> 2


def int8_rows(t: QuantizedTensor) -> tuple[np.ndarray, np.ndarray]:
    """An int8 tensor (gpt2.weights.quantized) as q [out, in] int8 and its scales [out] float32:
    views of its bytes (a projection stored (in, out), scales along axis 1, comes back transposed)."""
    q = np.frombuffer(memoryview(t.data).cast("B"), dtype=np.int8).reshape(t.shape)
    scale = np.frombuffer(memoryview(t.scale.data).cast("B"), dtype="<f4")
    return (q.T if t.axis == 1 else q), scale


class PackedInt8(_Packed):
    """An int8 weight q [M, K] with float32 scales [M] (w = q * scale, |q| <= 127), W8A8 products."""

    def __init__(self, q: np.ndarray, scale: np.ndarray, kernels: Kernels, precise: bool = False) -> None:
        # Stored offset (u = q + 128: the unsigned side of vpdpbusd); padding is a zero weight.
        super().__init__(q.astype(np.int8, copy=False).view(np.uint8) ^ np.uint8(0x80), 0x80, kernels)
        self.precise = precise
        self.scale = np.ascontiguousarray(scale, np.float32).reshape(self.shape[0])
        self._scale = _address(self.scale)

    @classmethod
    def of(cls, t: QuantizedTensor, kernels: Kernels, precise: bool = False) -> PackedInt8:
        """An int8 tensor of the parameter tree, packed."""
        return cls(*int8_rows(t), kernels, precise=precise)

    def product(
        self,
        x: np.ndarray,
        out: np.ndarray,
        bias: np.ndarray | None,
        *,
        norm: Norm | None = None,
        accumulate: bool = False,
    ) -> None:
        n, xa, xn, xk, oa, on, om = self._operands(x, out)
        (m, k), kp, kernels = self.shape, self.padded_k, self.kernels
        gain, shift, eps = norm if norm is not None else _NO_NORM
        vector = kernels.vector
        kernels.int8_linear(
            xa, n, k, xn, xk, self._data, self._scale, vector(bias, m), m, kp, oa, on, om,
            vector(gain, k), vector(shift, k), eps, accumulate, self.precise, kernels.threads,
            kernels.scratch(n * (3 * kp + 4) + 4 * k),
        )  # fmt: skip

    def rows(self, ids: np.ndarray) -> np.ndarray:
        """Rows ids [...] of q * scale as float32 [..., K] (an embedding lookup)."""
        q = (self._rows_raw(ids) ^ np.uint8(0x80)).view(np.int8)
        return q * self.scale[np.asarray(ids)][..., None]


class _PackedFloat(_Packed):
    """A float weight (bf16 or float32): the two C products take the same arguments."""

    _linear: Any  # the kernel: Kernels.bf16_linear or Kernels.f32_linear

    def product(
        self,
        x: np.ndarray,
        out: np.ndarray,
        bias: np.ndarray | None,
        *,
        norm: Norm | None = None,
        accumulate: bool = False,
    ) -> None:
        n, xa, xn, xk, oa, on, om = self._operands(x, out)
        (m, k), kp, kernels = self.shape, self.padded_k, self.kernels
        gain, shift, eps = norm if norm is not None else _NO_NORM
        vector = kernels.vector
        self._linear(
            xa, n, k, xn, xk, self._data, vector(bias, m), m, kp, oa, on, om,
            vector(gain, k), vector(shift, k), eps, accumulate, kernels.threads,
            kernels.scratch(n * kp * 4 + 4 * k),
        )  # fmt: skip


class PackedBf16(_PackedFloat):
    """A weight [M, K] rounded to bf16 (the top half of each float32), bf16 products."""

    def __init__(self, w: np.ndarray, kernels: Kernels) -> None:
        super().__init__(to_bf16_bits(np.asarray(w, np.float32)), 0, kernels)
        self._linear = kernels.bf16_linear

    def rows(self, ids: np.ndarray) -> np.ndarray:
        """Rows ids [...] as float32 [..., K]."""
        return (self._rows_raw(ids).astype(np.uint32) << 16).view(np.float32)


class PackedF32(_PackedFloat):
    """A float32 weight [M, K]: the C product keeps 8 x 3 sums in registers, so a prompt's rows
    share each weight they load (twice OpenBLAS's sgemm with its AVX2 kernels, measured)."""

    def __init__(self, w: np.ndarray, kernels: Kernels) -> None:
        super().__init__(np.ascontiguousarray(w, np.float32).view(np.uint32), 0, kernels)
        self.data = self.data.view(np.float32)
        self._linear = kernels.f32_linear

    def rows(self, ids: np.ndarray) -> np.ndarray:
        """Rows ids [...] as float32 [..., K]."""
        return np.array(self._rows_raw(ids))


def to_bf16_bits(w: np.ndarray) -> np.ndarray:
    """float32 -> the bits of the nearest bf16 (ties to even), as uint16. NaN stays NaN."""
    u = np.ascontiguousarray(w, np.float32).view(np.uint32)
    rounded = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    return np.where(np.isnan(w), np.uint16(0x7FC0), rounded)


def _aligned_empty(nbytes: int) -> np.ndarray:
    raw = np.empty(nbytes + ALIGN, np.uint8)
    start = (-_address(raw)) % ALIGN
    return raw[start : start + nbytes]


def _address(a: np.ndarray) -> int:
    """The address of an array's first element (cheaper than a.ctypes.data, which builds an object)."""
    return int(a.__array_interface__["data"][0])
