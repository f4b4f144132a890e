"""The NumPy engine: GPT-2 on a CPU at the speed of the memory bus.

Decoding one token reads every weight once (124M fp32 is about 0.5 GB), so at
batch 1 the speed is set by how fast the matrix-vector products stream their
matrices from memory. Everything here serves that:

- weights are laid out once, at load time, as contiguous (out, in) matrices,
  so each projection is one BLAS gemv `W @ x` (measured on OpenBLAS: `x @ W`
  with the checkpoint's (in, out) layout runs 5-8x slower for a 1-D x). The
  tied output projection is `wte @ x` on the embedding table itself: no copy;
- the KV cache is preallocated for the whole context window
  ([batch, n_layer, n_head, n_ctx, head_dim]); a step writes its keys and
  values in place and attends over a view, so past positions are never
  recomputed and the cache is never copied;
- the one-row decode step writes its projections into buffers reused from
  step to step (`out=`), and the residual stream is updated in place;
- everything stays in the engine's dtype (float32): no float64 upcasts;
- half-precision weights are widened to float32 when the engine is built;
  int8 weights (gpt2.weights.quantized) too, by default (`dequantize="load"`),
  or kept int8 and widened a slice at a time, just before each product, into
  a small reused buffer (`dequantize="layer"`: a quarter of the memory, and
  slower: NumPy has no int8 matrix product). docs/precision.md has the figures.

Several sequences run together (`new_batch_cache`, `forward_batch`): the rows
share each read of the weights, and may hold different numbers of positions.

>>> from gpt2.params import init_params
>>> cfg = Config(n_layer=1, n_embd=8, n_head=2, vocab_size=11, n_ctx=16)
>>> engine = NumpyEngine(cfg, init_params(cfg, seed=0))
>>> cache = engine.new_cache()
>>> engine.forward([1, 2, 3], cache).shape, len(cache)
((11,), 3)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..config import Config
from ..errors import Gpt2Error
from ..params import BLOCK_TENSORS, PROJECTIONS, validate_params
from ..tensor import Tensor
from ..weights.quantized import QuantizedTensor, dequantize
from .base import BatchKVCache, check_rows

DTYPES = {"float32": np.float32, "float64": np.float64}
GELU_C = math.sqrt(2.0 / math.pi)


def tensor_to_numpy(t: Tensor) -> np.ndarray:
    """A `Tensor` as a NumPy array of its own precision (a view of its bytes where possible);
    an int8 one (gpt2.weights.quantized) as its dequantized float32 values."""
    if isinstance(t, QuantizedTensor):
        t = dequantize(t)
    raw = memoryview(t.data).cast("B")
    if t.dtype == "BF16":  # the top half of a float32
        return (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32).reshape(t.shape)
    return np.frombuffer(raw, dtype={"F32": "<f4", "F16": "<f2", "F64": "<f8"}[t.dtype]).reshape(t.shape)


# --- the cache -------------------------------------------------------------------------------


class KVCache(BatchKVCache):
    """The batched cache (see `gpt2.engines.base.BatchKVCache`) in NumPy arrays: keys and
    values [batch, n_layer, n_head, n_ctx, head_dim] in the engine's dtype, lengths int64.
    Memory is touched only as positions fill (np.zeros maps fresh pages lazily)."""

    @classmethod
    def empty(cls, config: Config, batch: int, dtype: Any) -> KVCache:
        shape = (batch, config.n_layer, config.n_head, config.n_ctx, config.head_dim)
        return cls(np.zeros(shape, dtype), np.zeros(shape, dtype), np.zeros(batch, np.int64))


# --- the math, one concept per function ------------------------------------------------------


def layer_norm(x: np.ndarray, gain: np.ndarray, bias: np.ndarray, eps: float, out: np.ndarray) -> np.ndarray:
    """Normalise each row of x [N, d] to mean 0, variance 1, then scale and shift; into out."""
    np.subtract(x, x.mean(axis=-1, keepdims=True), out=out)
    variance = np.einsum("nd,nd->n", out, out)[:, None] / x.shape[-1]  # [N, 1]
    out *= 1.0 / np.sqrt(variance + eps)
    out *= gain
    out += bias
    return out


def linear(x: np.ndarray, weight: Matrix, bias: np.ndarray | None, out: np.ndarray) -> np.ndarray:
    """out [N, out_dim] = x [N, in_dim] @ weight.T + bias, weight stored (out, in) contiguous.

    `out` is the transpose of a C-contiguous [out_dim, N] buffer, so both cases
    below are a single BLAS call that writes in place: one row is a gemv, many rows
    a gemm with the weight streamed once.
    """
    if isinstance(weight, Int8Matrix):
        weight.product(x, out)
    elif x.shape[0] == 1:
        np.matmul(weight, x[0], out=out[0])  # gemv: [out, in] @ [in]
    else:
        np.matmul(weight, x.T, out=out.T)  # gemm: [out, in] @ [in, N]
    if bias is not None:
        out += bias
    return out


def gelu(x: np.ndarray, scratch: np.ndarray) -> np.ndarray:
    """GPT-2's tanh approximation of GELU, in place: 0.5 x (1 + tanh(c (x + 0.044715 x^3)))."""
    np.multiply(x, x, out=scratch)
    scratch *= x
    scratch *= 0.044715
    scratch += x
    scratch *= GELU_C
    np.tanh(scratch, out=scratch)
    scratch += 1.0
    x *= scratch
    x *= 0.5
    return x


def softmax_(scores: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, in place (max subtracted, so exp never overflows)."""
    scores -= scores.max(axis=-1, keepdims=True)
    np.exp(scores, out=scores)
    scores /= scores.sum(axis=-1, keepdims=True)
    return scores


def attend(
    q: np.ndarray,
    keys: np.ndarray,
    values: np.ndarray,
    mask: np.ndarray | None,
    weights_out: list[np.ndarray] | None = None,
) -> np.ndarray:
    """Scaled dot-product attention. q [B, H, T, hd] (already scaled by 1/sqrt(hd)),
    keys/values [B, H, S, hd] (views of the cache), mask [B, 1, T, S] additive (0 or
    -inf) or None when every query may see every key -> [B, H, T, hd]. `weights_out`,
    if given, receives the attention probabilities [B, H, T, S]."""
    scores = q @ keys.swapaxes(-1, -2)  # [B, H, T, S]
    if mask is not None:
        scores += mask  # -inf on the future: exp(-inf - max) = 0, never NaN (max is finite)
    probs = softmax_(scores)  # [B, H, T, S]
    if weights_out is not None:
        weights_out.append(probs)
    return probs @ values  # [B, H, T, hd]


def causal_mask(past: np.ndarray, n_new: int, dtype: Any) -> np.ndarray | None:
    """Additive mask [B, 1, T, S]: row b's query i (at position past[b] + i) sees keys
    0..past[b] + i. None when nothing needs hiding (one new token, equal lengths)."""
    if n_new == 1 and (past == past[0]).all():
        return None
    seen = past[:, None] + np.arange(n_new)  # [B, T]: the last position each query sees
    keys = np.arange(int(past.max()) + n_new)  # [S]
    hidden = keys[None, None, :] > seen[:, :, None]  # [B, T, S]
    return np.where(hidden, -np.inf, 0.0).astype(dtype)[:, None]  # [B, 1, T, S]


# --- the weights, laid out for the products ---------------------------------------------------


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
        self.rows = max(1, self.BUFFER_BYTES // (self.shape[1] * np.dtype(dtype).itemsize))  # rows a slice
        self.buffer = buffer  # [BUFFER_BYTES] of dtype, shared

    def product(self, x: np.ndarray, out: np.ndarray) -> None:
        """out [N, out_dim] = x [N, in] @ (q * scale).T, written in place."""
        n_out, n_in = self.shape
        for start in range(0, n_out, self.rows):
            stop = min(start + self.rows, n_out)
            w = self.buffer[: (stop - start) * n_in].reshape(stop - start, n_in)
            np.copyto(w, self.q[start:stop], casting="unsafe")  # int8 -> float, exact
            block = out[:, start:stop]  # [N, rows]
            if x.shape[0] == 1:
                np.matmul(w, x[0], out=block[0])
            else:
                np.matmul(w, x.T, out=block.T)
            block *= self.scale[start:stop]


Matrix = np.ndarray | Int8Matrix
DEQUANTIZE = ("load", "layer")


class Buffers:
    """The activations of a step with N rows, allocated once and reused while N stays the same."""

    def __init__(self, n: int, d: int, dtype: Any) -> None:
        # Projection outputs are transposed views of [out, N] buffers (see `linear`).
        self.h = np.empty((n, d), dtype)  # layer-norm output
        self.qkv = np.empty((3 * d, n), dtype).T  # [N, 3d]
        self.proj = np.empty((d, n), dtype).T  # [N, d]
        self.fc = np.empty((4 * d, n), dtype).T  # [N, 4d]
        self.scratch = np.empty((n, 4 * d), dtype)


# --- the engine -------------------------------------------------------------------------------


class NumpyEngine:
    name = "numpy"

    def __init__(
        self,
        config: Config,
        params: Mapping[str, Tensor],
        dtype: str = "float32",
        threads: int | None = None,
        dequantize: str = "load",
    ) -> None:
        """`threads`: set the BLAS thread count (process-wide, through threadpoolctl) -- only
        when asked. One thread is steadier on a machine whose cores are shared. `dequantize`:
        for int8 weights, "load" (float32 copies made once: fastest) or "layer" (kept int8,
        widened slice by slice before each product: a quarter of the memory, slower)."""
        if dtype not in DTYPES:
            raise Gpt2Error(f"the numpy engine runs in {' or '.join(DTYPES)}, not {dtype!r}")
        if dequantize not in DEQUANTIZE:
            raise Gpt2Error(f"dequantize must be {' or '.join(DEQUANTIZE)}, not {dequantize!r}")
        if threads is not None:
            set_blas_threads(threads)
        validate_params(params, config)
        self.config = config
        self.dtype = np.dtype(DTYPES[dtype])

        # Copies the engine owns (not views of a memory-mapped file): laid out once, here.
        def array(name: str) -> np.ndarray:
            return np.array(tensor_to_numpy(params[name]), dtype=self.dtype, order="C")

        self.quantization = "int8" if any(isinstance(t, QuantizedTensor) for t in params.values()) else None
        self.dequantize = dequantize
        keep_int8 = dequantize == "layer"

        shared = np.empty(Int8Matrix.BUFFER_BYTES // self.dtype.itemsize, self.dtype)  # used if keep_int8

        def int8(t: QuantizedTensor) -> Int8Matrix:  # (out, in) int8 and its scales
            q = np.frombuffer(memoryview(t.data).cast("B"), dtype=np.int8).reshape(t.shape)
            scale = np.frombuffer(memoryview(t.scale.data).cast("B"), dtype="<f4")
            return Int8Matrix(q.T if t.axis == 1 else q, scale, self.dtype, shared)

        def out_by_in(name: str) -> Matrix:  # checkpoint (in, out) -> contiguous (out, in)
            t = params[name]
            if keep_int8 and isinstance(t, QuantizedTensor):
                return int8(t)
            return np.ascontiguousarray(tensor_to_numpy(t).T, dtype=self.dtype)

        wte = params["wte.weight"]
        if keep_int8 and isinstance(wte, QuantizedTensor):  # rows dequantized as they are looked up
            head = int8(wte)
            self.head: Matrix = head
            self.wte, self.wte_scale = head.q, head.scale  # [V, d] int8, [V]
        else:
            self.wte = array("wte.weight")  # [V, d]: embedding rows, and the tied output projection
            self.head = self.wte
        self.wpe = array("wpe.weight")  # [n_ctx, d]
        # Each block under the tree's own names; the projections' weights stored (out, in).
        projections = {name + ".weight" for name, _, _ in PROJECTIONS}
        # Arrays under the tree's names; a projection weight kept int8 is an Int8Matrix.
        self.blocks: list[dict[str, Any]] = [
            {name: (out_by_in if name in projections else array)(f"h.{i}.{name}") for name, _, _ in BLOCK_TENSORS}
            for i in range(config.n_layer)
        ]
        self.ln_f = array("ln_f.weight"), array("ln_f.bias")
        self._buffers: Buffers | None = None

    # --- the Engine contract ---------------------------------------------------------------

    def new_cache(self) -> KVCache:
        return KVCache.empty(self.config, 1, self.dtype)

    def forward(
        self, ids: Sequence[int], cache: KVCache, *, all_logits: bool = False, recorder: Any = None
    ) -> np.ndarray:
        """Logits [V] of the last new position (or [T, V] of every new one), float32.
        `recorder`: see `gpt2.engines.recorder`."""
        if cache.batch_size != 1:
            raise Gpt2Error("forward takes a one-row cache; use forward_batch for a batch")
        logits = self.forward_batch([ids], cache, all_logits=all_logits, recorder=recorder)
        return logits[0]

    def close(self) -> None:
        """Nothing to release: the engine is arrays in this process."""

    def new_batch_cache(self, batch_size: int) -> KVCache:
        return KVCache.empty(self.config, batch_size, self.dtype)

    def forward_batch(
        self, rows: Sequence[Sequence[int]], cache: KVCache, *, all_logits: bool = False, recorder: Any = None
    ) -> np.ndarray:
        """Run T new tokens in each of B rows (rows may hold different numbers of past
        positions). Returns float32 logits [B, V] of each row's last new position, or
        [B, T, V] when all_logits. A `recorder` sees row 0."""
        tokens = np.asarray(check_rows(rows, cache, self.config), dtype=np.int64)  # [B, T]
        x = self.hidden_states(tokens, cache, recorder)  # [B, T, d]
        if not all_logits:
            x = x[:, -1:]  # only the last position is projected onto the vocabulary
        B, T, d = x.shape
        eps = self.config.layer_norm_epsilon
        h = layer_norm(x.reshape(B * T, d), *self.ln_f, eps, out=np.empty((B * T, d), self.dtype))  # [N, d]
        logits = linear(h, self.head, None, out=np.empty((self.config.vocab_size, B * T), self.dtype).T)  # [N, V]
        logits = logits.reshape(B, T, -1).astype(np.float32, copy=False)
        return logits if all_logits else logits[:, 0]

    # --- the forward pass ------------------------------------------------------------------

    def hidden_states(self, tokens: np.ndarray, cache: KVCache, recorder: Any = None) -> np.ndarray:
        """Token ids [B, T] -> the residual stream [B, T, d] after every block; appends the new
        positions' keys and values to the cache. A `recorder` sees row 0."""
        B, T = tokens.shape
        past = cache.past()  # [B] positions each row already holds
        positions = np.asarray(past)[:, None] + np.arange(T)  # [B, T]
        x = (self.embed(tokens) + self.wpe[positions]).reshape(B * T, -1)  # [N, d], N = B * T
        mask = causal_mask(np.asarray(past), T, self.dtype)  # [B, 1, T, S] or None
        buf = self._buffers_for(B * T)
        eps = self.config.layer_norm_epsilon
        if recorder is not None:
            recorder.residual(-1, x[:T])
        for layer, w in enumerate(self.blocks):
            h = layer_norm(x, w["ln_1.weight"], w["ln_1.bias"], eps, out=buf.h)  # [N, d]
            qkv = linear(h, w["attn.c_attn.weight"], w["attn.c_attn.bias"], out=buf.qkv)  # [N, 3d]
            a = self.attention(qkv, cache, layer, past, B, T, mask, recorder)  # [N, d]
            x += linear(a, w["attn.c_proj.weight"], w["attn.c_proj.bias"], out=buf.proj)  # residual
            h = layer_norm(x, w["ln_2.weight"], w["ln_2.bias"], eps, out=buf.h)  # [N, d]
            f = gelu(linear(h, w["mlp.c_fc.weight"], w["mlp.c_fc.bias"], out=buf.fc), buf.scratch)  # [N, 4d]
            x += linear(f, w["mlp.c_proj.weight"], w["mlp.c_proj.bias"], out=buf.proj)  # residual
            if recorder is not None:
                recorder.residual(layer, x[:T])  # row 0's positions
        cache.advance(T)
        return x.reshape(B, T, -1)

    def embed(self, tokens: np.ndarray) -> np.ndarray:
        """wte[tokens] [B, T, d] (int8 rows times their scales, if the table is kept int8)."""
        if self.wte.dtype == np.int8:
            return self.wte[tokens] * self.wte_scale[tokens][..., None]
        return self.wte[tokens]

    def attention(
        self,
        qkv: np.ndarray,
        cache: KVCache,
        layer: int,
        past: list[int],
        B: int,
        T: int,
        mask: np.ndarray | None,
        recorder: Any = None,
    ) -> np.ndarray:
        """Causal multi-head attention of the new positions over everything cached. [N, 3d] -> [N, d]."""
        H, hd = self.config.n_head, self.config.head_dim
        q, k, v = qkv.reshape(B, T, 3, H, hd).transpose(2, 0, 3, 1, 4)  # 3 x [B, H, T, hd]
        keys, values = cache.write(layer, k, v, past)  # [B, H, S, hd], S = max(past) + T
        q = q * self.dtype.type(1.0 / math.sqrt(hd))
        weights: list[np.ndarray] | None = [] if recorder is not None else None
        y = attend(q, keys, values, mask, weights)  # [B, H, T, hd]
        if recorder is not None and weights:
            recorder.attention(layer, weights[0][0])  # row 0: [H, T, S]
        return y.transpose(0, 2, 1, 3).reshape(B * T, H * hd)  # [N, d]

    def _buffers_for(self, n: int) -> Buffers:
        if self._buffers is None or self._buffers.h.shape[0] != n:
            self._buffers = Buffers(n, self.config.n_embd, self.dtype)
        return self._buffers


def set_blas_threads(threads: int) -> None:
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        raise Gpt2Error('setting the numpy engine\'s threads needs threadpoolctl: pip install -e ".[numpy]"') from None
    if not isinstance(threads, int) or threads < 1:
        raise Gpt2Error(f"threads must be an integer >= 1, got {threads!r}")
    threadpool_limits(limits=threads, user_api="blas")
