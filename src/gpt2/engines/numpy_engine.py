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
- everything stays in the engine's dtype (float32): no float64 upcasts.

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
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..config import Config
from ..errors import GenerationError, Gpt2Error
from ..generation import check_window
from ..params import validate_params
from ..sampling import check_logits
from ..tensor import Tensor
from . import BatchKVCache

DTYPES = {"float32": np.float32, "float64": np.float64}
GELU_C = math.sqrt(2.0 / math.pi)


def tensor_to_numpy(t: Tensor) -> np.ndarray:
    """A `Tensor` as a NumPy array of its own precision (a view of its bytes where possible)."""
    raw = memoryview(t.data).cast("B")
    if t.dtype == "BF16":  # the top half of a float32
        return (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32).reshape(t.shape)
    return np.frombuffer(raw, dtype={"F32": "<f4", "F16": "<f2", "F64": "<f8"}[t.dtype]).reshape(t.shape)


# --- the cache -------------------------------------------------------------------------------


class KVCache(BatchKVCache):
    """Keys and values of every position seen so far, preallocated for the whole window.

    keys, values: [batch, n_layer, n_head, n_ctx, head_dim]; lengths: [batch], the
    positions each row holds. `len(cache)` is the longest row's length (for the
    one-row cache of `new_cache()`, simply the positions held). Memory is touched
    only as positions fill (np.zeros maps fresh pages lazily).
    """

    @classmethod
    def empty(cls, config: Config, batch: int, dtype: Any) -> KVCache:
        shape = (batch, config.n_layer, config.n_head, config.n_ctx, config.head_dim)
        return cls(np.zeros(shape, dtype), np.zeros(shape, dtype), np.zeros(batch, np.int64))

    def reorder(self, rows: Sequence[int]) -> None:
        """Row i becomes a copy of old row rows[i] (beam search keeps its survivors)."""
        index = np.asarray(rows, dtype=np.int64)
        if np.array_equal(index, np.arange(self.batch_size)):
            return
        held = len(self)  # copy only the filled part of the window
        self.keys[:, :, :, :held] = self.keys[index, :, :, :held]
        self.values[:, :, :, :held] = self.values[index, :, :, :held]
        self.lengths[:] = self.lengths[index]


# --- the math, one concept per function ------------------------------------------------------


def layer_norm(x: np.ndarray, gain: np.ndarray, bias: np.ndarray, eps: float, out: np.ndarray) -> np.ndarray:
    """Normalise each row of x [N, d] to mean 0, variance 1, then scale and shift; into out."""
    np.subtract(x, x.mean(axis=-1, keepdims=True), out=out)
    variance = np.einsum("nd,nd->n", out, out)[:, None] / x.shape[-1]  # [N, 1]
    out *= 1.0 / np.sqrt(variance + eps)
    out *= gain
    out += bias
    return out


def linear(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, out: np.ndarray) -> np.ndarray:
    """out [N, out_dim] = x [N, in_dim] @ weight.T + bias, weight stored (out, in) contiguous.

    `out` is the transpose of a C-contiguous [out_dim, N] buffer, so both cases
    below are a single BLAS call that writes in place: one row is a gemv, many rows
    a gemm with the weight streamed once.
    """
    if x.shape[0] == 1:
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


def attend(q: np.ndarray, keys: np.ndarray, values: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Scaled dot-product attention. q [B, H, T, hd] (already scaled by 1/sqrt(hd)),
    keys/values [B, H, S, hd] (views of the cache), mask [B, 1, T, S] additive (0 or
    -inf) or None when every query may see every key -> [B, H, T, hd]."""
    scores = q @ keys.swapaxes(-1, -2)  # [B, H, T, S]
    if mask is not None:
        scores += mask  # -inf on the future: exp(-inf - max) = 0, never NaN (max is finite)
    return softmax_(scores) @ values  # [B, H, T, hd]


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


@dataclass
class Block:
    ln_1_gain: np.ndarray
    ln_1_bias: np.ndarray
    attn_weight: np.ndarray  # [3d, d]
    attn_bias: np.ndarray  # [3d]
    attn_proj_weight: np.ndarray  # [d, d]
    attn_proj_bias: np.ndarray
    ln_2_gain: np.ndarray
    ln_2_bias: np.ndarray
    fc_weight: np.ndarray  # [4d, d]
    fc_bias: np.ndarray
    mlp_proj_weight: np.ndarray  # [d, 4d]
    mlp_proj_bias: np.ndarray


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
        self, config: Config, params: Mapping[str, Tensor], dtype: str = "float32", threads: int | None = None
    ) -> None:
        """`threads`: set the BLAS thread count (process-wide, through threadpoolctl) -- only
        when asked. One thread is steadier on a machine whose cores are shared."""
        if dtype not in DTYPES:
            raise Gpt2Error(f"the numpy engine runs in {' or '.join(DTYPES)}, not {dtype!r}")
        if threads is not None:
            set_blas_threads(threads)
        validate_params(params, config)
        self.config = config
        self.dtype = np.dtype(DTYPES[dtype])

        # Copies the engine owns (not views of a memory-mapped file): laid out once, here.
        def array(name: str) -> np.ndarray:
            return np.array(tensor_to_numpy(params[name]), dtype=self.dtype, order="C")

        def out_by_in(name: str) -> np.ndarray:  # checkpoint (in, out) -> contiguous (out, in)
            return np.ascontiguousarray(tensor_to_numpy(params[name]).T, dtype=self.dtype)

        self.wte = array("wte.weight")  # [V, d]: embedding rows, and the tied output projection
        self.wpe = array("wpe.weight")  # [n_ctx, d]
        self.blocks = []
        for i in range(config.n_layer):
            p = f"h.{i}."
            self.blocks.append(
                Block(
                    array(p + "ln_1.weight"),
                    array(p + "ln_1.bias"),
                    out_by_in(p + "attn.c_attn.weight"),
                    array(p + "attn.c_attn.bias"),
                    out_by_in(p + "attn.c_proj.weight"),
                    array(p + "attn.c_proj.bias"),
                    array(p + "ln_2.weight"),
                    array(p + "ln_2.bias"),
                    out_by_in(p + "mlp.c_fc.weight"),
                    array(p + "mlp.c_fc.bias"),
                    out_by_in(p + "mlp.c_proj.weight"),
                    array(p + "mlp.c_proj.bias"),
                )
            )
        self.ln_f_gain, self.ln_f_bias = array("ln_f.weight"), array("ln_f.bias")
        self._buffers: Buffers | None = None

    # --- the Engine protocol ---------------------------------------------------------------

    def new_cache(self) -> KVCache:
        return KVCache.empty(self.config, 1, self.dtype)

    def forward(self, ids: Sequence[int], cache: KVCache, *, all_logits: bool = False) -> np.ndarray:
        """Logits [V] of the last new position (or [T, V] of every new one), float32."""
        if cache.batch_size != 1:
            raise Gpt2Error("forward takes a one-row cache; use forward_batch for a batch")
        logits = self.forward_batch([ids], cache, all_logits=all_logits)
        return logits[0]

    def sample(self, logits: Any, sampler: Any) -> int:
        return sample(logits, sampler)

    # --- batches ---------------------------------------------------------------------------

    def new_batch_cache(self, batch_size: int) -> KVCache:
        return KVCache.empty(self.config, batch_size, self.dtype)

    def forward_batch(self, rows: Sequence[Sequence[int]], cache: KVCache, *, all_logits: bool = False) -> np.ndarray:
        """Run T new tokens in each of B rows (rows may hold different numbers of past
        positions). Returns float32 logits [B, V] of each row's last new position, or
        [B, T, V] when all_logits."""
        tokens = self._check(rows, cache)
        x = self._hidden_states(tokens, cache)  # [B, T, d]
        if not all_logits:
            x = x[:, -1:]  # only the last position is projected onto the vocabulary
        B, T, d = x.shape
        h = layer_norm(
            x.reshape(B * T, d),
            self.ln_f_gain,
            self.ln_f_bias,
            self.config.layer_norm_epsilon,
            out=np.empty((B * T, d), self.dtype),
        )
        logits = linear(h, self.wte, None, out=np.empty((self.config.vocab_size, B * T), self.dtype).T)
        logits = logits.reshape(B, T, -1).astype(np.float32, copy=False)
        return logits if all_logits else logits[:, 0]

    def _check(self, rows: Sequence[Sequence[int]], cache: KVCache) -> np.ndarray:
        try:
            tokens = np.asarray(rows, dtype=np.int64)
        except (TypeError, ValueError):  # ragged rows, or not integers
            tokens = np.zeros((0,), np.int64)
        if tokens.ndim != 2 or tokens.shape[1] == 0:
            raise GenerationError("forward needs at least one token id in every row, all rows the same length")
        if tokens.shape[0] != cache.batch_size:
            raise GenerationError(f"{tokens.shape[0]} rows for a cache of {cache.batch_size}")
        if tokens.min() < 0 or tokens.max() >= self.config.vocab_size:
            raise GenerationError(f"token ids must be in [0, {self.config.vocab_size})")
        check_window(len(cache), tokens.shape[1], self.config)
        return tokens

    def _buffers_for(self, n: int) -> Buffers:
        if self._buffers is None or self._buffers.h.shape[0] != n:
            self._buffers = Buffers(n, self.config.n_embd, self.dtype)
        return self._buffers

    def _hidden_states(self, tokens: np.ndarray, cache: KVCache) -> np.ndarray:
        """The residual stream [B, T, d] after every block; appends to the cache."""
        B, T = tokens.shape
        past = cache.lengths.copy()  # [B]
        positions = past[:, None] + np.arange(T)  # [B, T]
        x = (self.wte[tokens] + self.wpe[positions]).reshape(B * T, -1)  # [N, d]
        mask = causal_mask(past, T, self.dtype)
        buf = self._buffers_for(B * T)
        eps = self.config.layer_norm_epsilon
        for layer, block in enumerate(self.blocks):
            h = layer_norm(x, block.ln_1_gain, block.ln_1_bias, eps, out=buf.h)
            qkv = linear(h, block.attn_weight, block.attn_bias, out=buf.qkv)  # [N, 3d]
            a = self._attention(qkv, cache, layer, past, B, T, mask)  # [N, d]
            x += linear(a, block.attn_proj_weight, block.attn_proj_bias, out=buf.proj)
            h = layer_norm(x, block.ln_2_gain, block.ln_2_bias, eps, out=buf.h)
            f = gelu(linear(h, block.fc_weight, block.fc_bias, out=buf.fc), buf.scratch)  # [N, 4d]
            x += linear(f, block.mlp_proj_weight, block.mlp_proj_bias, out=buf.proj)
        cache.lengths += T
        return x.reshape(B, T, -1)

    def _attention(
        self, qkv: np.ndarray, cache: KVCache, layer: int, past: np.ndarray, B: int, T: int, mask: np.ndarray | None
    ) -> np.ndarray:
        H, hd = self.config.n_head, self.config.head_dim
        # [N, 3d] -> 3 x [B, H, T, hd]
        q, k, v = qkv.reshape(B, T, 3, H, hd).transpose(2, 0, 3, 1, 4)
        keys, values = cache.keys[:, layer], cache.values[:, layer]  # [B, H, n_ctx, hd]
        for b in range(B):  # append this step's keys and values after each row's past
            keys[b, :, past[b] : past[b] + T] = k[b]
            values[b, :, past[b] : past[b] + T] = v[b]
        seen = int(past.max()) + T
        q = q * self.dtype.type(1.0 / math.sqrt(hd))
        y = attend(q, keys[:, :, :seen], values[:, :, :seen], mask)  # [B, H, T, hd]
        return y.transpose(0, 2, 1, 3).reshape(B * T, H * hd)  # [N, d]


def set_blas_threads(threads: int) -> None:
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        raise Gpt2Error("setting the numpy engine's threads needs threadpoolctl: pip install threadpoolctl") from None
    if not isinstance(threads, int) or threads < 1:
        raise Gpt2Error(f"threads must be an integer >= 1, got {threads!r}")
    threadpool_limits(limits=threads, user_api="blas")


# --- sampling, vectorised ---------------------------------------------------------------------


def sample(logits: Any, sampler: Any) -> int:
    """`gpt2.sampling.Sampler.sample`, the same algorithm step for step, vectorised.

    Picks exactly the token `sampler.sample(logits)` picks (same order of
    candidates, same float64 arithmetic, the same single `sampler.rng.random()`
    draw) in a few milliseconds instead of ~60 ms of Python sorting per token:
    the ordering by (-logit, id) is a stable NumPy sort; `math.exp` and
    `math.fsum` are kept where NumPy's would round differently.
    """
    values = np.asarray(logits, dtype=np.float64).reshape(-1)  # float32 -> float64 is exact
    if np.isnan(values).any() or values.max() == -np.inf:
        check_logits(values.tolist())  # raises the same error as `Sampler.sample`
    s = sampler.settings
    if s.greedy:
        return int(np.argmax(values))  # the first (lowest) id on a tie
    ids = _ranked_candidates(values, s.top_k)
    inv_t = 1.0 / s.temperature
    scaled = values[ids] * inv_t
    top = scaled[0]
    weights = [math.exp(v) for v in (scaled - top).tolist()]
    total = math.fsum(weights)
    probs = np.asarray(weights) / total
    if s.top_p < 1.0:
        mass = np.cumsum(probs)  # sequential, as the reference walk adds
        keep = int(np.argmax(mass >= s.top_p)) + 1 if (mass >= s.top_p).any() else len(probs)
        ids, probs = ids[:keep], probs[:keep]
    threshold = sampler.rng.random() * math.fsum(probs.tolist())
    above = np.cumsum(probs) > threshold
    return int(ids[int(np.argmax(above))]) if above.any() else int(ids[-1])


def _ranked_candidates(values: np.ndarray, top_k: int) -> np.ndarray:
    """Ids ordered by (-value, id); only the top_k first when 0 < top_k < len(values)."""
    n = len(values)
    if 0 < top_k < n:
        kth = np.partition(values, n - top_k)[n - top_k]  # the k-th largest value
        above = np.flatnonzero(values > kth)
        tied = np.flatnonzero(values == kth)[: top_k - len(above)]  # lowest ids win the ties
        ids = np.concatenate([above, tied])
        return ids[np.lexsort((ids, -values[ids]))]
    return np.argsort(-values, kind="stable")
