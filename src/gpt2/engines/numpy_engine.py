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
- where a C compiler is found, the products go to small C kernels compiled
  for this CPU (gpt2.engines.native), which read the weights packed in tiles
  and fuse the layer norm before a product and the bias and residual after
  it: float32 (prompts twice as fast as OpenBLAS's sgemm here), bf16 with
  `dtype="bfloat16"` (half the bytes) and int8 weights (W8A8: a quarter of
  the bytes, so up to four times the tokens a second). NumPy has no int8 or
  bf16 product. `native=False` keeps every product in NumPy and BLAS, as the
  code below reads; int8 weights are then widened to float32 at load
  (`dequantize="load"`) or a slice at a time before each product ("layer": a
  quarter of the memory, slower). docs/precision.md has the figures.

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
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..config import Config
from ..errors import Gpt2Error
from ..params import BLOCK_TENSORS, PROJECTIONS, validate_params
from ..quantized_tensor import QuantizedTensor
from ..tensor import Tensor
from .base import BatchKVCache, check_rows
from .native.products import Kernels, NativeUnavailable, PackedBf16, PackedF32, PackedInt8
from .numpy_weights import Int8Matrix, Layout, Matrix, tensor_to_numpy
from .plan import EnginePlan, plan_engine

__all__ = ["NumpyEngine", "KVCache", "tensor_to_numpy", "attend", "causal_mask", "layer_norm", "gelu", "linear"]

# The engine's dtype: what it computes in. "bfloat16" keeps float32 activations and stores the
# projections' weights in bf16, multiplied by the C kernels (gpt2.engines.native).
DTYPES = {"float32": np.float32, "float64": np.float64, "bfloat16": np.float32}
GELU_C = math.sqrt(2.0 / math.pi)


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


def linear(x: np.ndarray, weight: np.ndarray | Int8Matrix, bias: np.ndarray | None, out: np.ndarray) -> np.ndarray:
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


class Buffers:
    """The activations of a step with N rows, allocated once and reused while N stays the same."""

    def __init__(self, n: int, d: int, dtype: Any) -> None:
        # Projection outputs are transposed views of [out, N] buffers (see `linear`).
        self.h = np.empty((n, d), dtype)  # layer-norm output
        self.qkv = np.empty((3 * d, n), dtype).T  # [N, 3d]
        self.proj = np.empty((d, n), dtype).T  # [N, d]
        self.fc = np.empty((4 * d, n), dtype).T  # [N, 4d]
        self.scratch = np.empty((n, 4 * d), dtype)
        self.attended = np.empty((n, d), dtype)  # the C attention's output


# --- the engine -------------------------------------------------------------------------------


class NumpyEngine:
    name = "numpy"

    def __init__(
        self,
        config: Config,
        params: Mapping[str, Tensor],
        plan: EnginePlan | None = None,
        *,
        kernels: Kernels | None = None,
        **options: Any,
    ) -> None:
        """`plan`: from `gpt2.engines.plan_engine("numpy", ...)`, or the options themselves,
        planned here. `dtype`: float32, float64, or bfloat16 (float32 activations, bf16
        projection weights). `threads`: the BLAS and C kernels' thread count (BLAS's is
        process-wide, through threadpoolctl) -- only when asked; one thread is steadier on a
        machine whose cores are shared. `native`: multiply by the C kernels
        (gpt2.engines.native): None (default) where they build, True (an error where they
        cannot), False (NumPy and BLAS only: the engine as the guide reads it). `dequantize`, for
        int8 weights without the C kernels: "load" (float32 copies made once) or "layer" (kept
        int8, widened slice by slice before each product: least memory, slowest). `kernels`: C
        kernels already loaded."""
        plan = plan or plan_engine("numpy", **options)
        dtype, threads, native = plan.dtype, plan.threads, plan.options.get("native")
        dequantize = plan.options.get("dequantize", "load")
        if threads is not None:
            set_blas_threads(threads)
        validate_params(params, config)
        self.config = config
        self.dtype = np.dtype(DTYPES[dtype])
        self.notices: list[str] = list(plan.notices)
        self.quantization = "int8" if any(isinstance(t, QuantizedTensor) for t in params.values()) else None
        if dtype == "float64" or native is False:
            kernels = None
        elif kernels is None:
            kernels = self._kernels(threads, dtype, required=bool(native))
        self.kernels = kernels
        self.dequantize = "native" if self.quantization and kernels is not None else dequantize
        self.weights = self.quantization or ("bfloat16" if dtype == "bfloat16" and kernels else self.dtype.name)

        self._lay_out(params, Layout(self.dtype, kernels, dequantize, self.weights == "bfloat16"))
        # The activations' buffers, one set a thread: two threads may run one engine at once
        # (each with its own cache), as they may share one `Kernels` (each with its own scratch).
        self._local = threading.local()

    def _lay_out(self, params: Mapping[str, Tensor], layout: Layout) -> None:
        """The weights as the products read them: copies the engine owns (not views of a
        memory-mapped file), laid out once, here."""

        def array(name: str) -> np.ndarray:
            return np.array(tensor_to_numpy(params[name]), dtype=self.dtype, order="C")

        def projection(name: str) -> Matrix:  # checkpoint (in, out) -> (out, in)
            return layout.matrix(params[name], transpose=True)

        # [V, d]: the embedding rows, and the tied output projection
        wte = layout.matrix(params["wte.weight"], transpose=False, head=True)
        self.head: Matrix = wte
        self.wte = wte if isinstance(wte, np.ndarray) else None  # else rows come from the packed head
        self.wpe = array("wpe.weight")  # [n_ctx, d]
        # Each block under the tree's own names; the projections' weights stored (out, in).
        projections = {name + ".weight" for name, _, _ in PROJECTIONS}
        self.blocks: list[dict[str, Any]] = [
            {name: (projection if name in projections else array)(f"h.{i}.{name}") for name, _, _ in BLOCK_TENSORS}
            for i in range(self.config.n_layer)
        ]
        self.ln_f = array("ln_f.weight"), array("ln_f.bias")

    def _kernels(self, threads: int | None, dtype: str, required: bool) -> Kernels | None:
        """The C kernels, or None (with a notice where that costs int8's or bf16's speed)."""
        try:
            return Kernels.load(threads)
        except NativeUnavailable as exc:
            if required:
                raise
            if self.quantization or dtype == "bfloat16":
                weights = "int8" if self.quantization else "bf16"
                self.notices.append(f"{exc}; {weights} weights widened to float32 (float32 speed)")
            return None

    # --- the Engine contract ---------------------------------------------------------------

    @property
    def kv_bytes_per_position(self) -> int:
        return 2 * self.config.n_layer * self.config.n_embd * self.dtype.itemsize

    def details(self) -> list[str]:
        """The C kernels this CPU gets, if they are used."""
        return [self.kernels.describe()] if self.kernels is not None else []

    def free_memory(self) -> int | None:
        return None  # the host's

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
        out = np.empty((self.config.vocab_size, B * T), self.dtype).T  # [N, V]
        logits = self.project(x.reshape(B * T, d), self.head, None, out, norm=self.ln_f)  # [N, V] = ln_f(x) @ wte.T
        logits = logits.reshape(B, T, -1)
        return np.ascontiguousarray(logits if all_logits else logits[:, 0], dtype=np.float32)  # the contract

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
        if recorder is not None:
            recorder.residual(-1, x[:T])
        for layer, w in enumerate(self.blocks):
            ln_1, ln_2 = (w["ln_1.weight"], w["ln_1.bias"]), (w["ln_2.weight"], w["ln_2.bias"])
            qkv = self.project(x, w["attn.c_attn.weight"], w["attn.c_attn.bias"], buf.qkv, norm=ln_1)  # [N, 3d]
            a = self.attention(qkv, cache, layer, past, B, T, mask, recorder)  # [N, d]
            self.project(a, w["attn.c_proj.weight"], w["attn.c_proj.bias"], x, add=True)  # x += a @ W + b
            f = self.project(x, w["mlp.c_fc.weight"], w["mlp.c_fc.bias"], buf.fc, norm=ln_2, activation="gelu")
            self.project(f, w["mlp.c_proj.weight"], w["mlp.c_proj.bias"], x, add=True)  # x += f @ W + b
            if recorder is not None:
                recorder.residual(layer, x[:T])  # row 0's positions
        cache.advance(T)
        return x.reshape(B, T, -1)

    def project(
        self,
        x: np.ndarray,
        weight: Matrix,
        bias: np.ndarray | None,
        out: np.ndarray,
        *,
        norm: tuple[np.ndarray, np.ndarray] | None = None,
        activation: str | None = None,
        add: bool = False,
    ) -> np.ndarray:
        """out = act(norm(x) @ weight.T + bias), or out += that when `add` (a residual
        connection). x [N, in], out [N, out]; norm: a layer norm's (gain, bias), applied to x
        first; activation: None or "gelu". The C kernels do the norm, the product, the bias and the
        residual in one call, reading x once; otherwise NumPy does it step by step."""
        eps = self.config.layer_norm_epsilon
        if isinstance(weight, (PackedInt8, PackedBf16, PackedF32)):
            ln = None if norm is None else (*norm, eps)
            weight.product(x, out, bias, norm=ln, accumulate=add)
            if activation == "gelu":  # NumPy's vectorised tanh is several times faster than C's tanhf, one at a time
                gelu(out, self._buffers_for(x.shape[0]).scratch)
            return out
        buf = self._buffers_for(x.shape[0])
        if norm is not None:
            x = layer_norm(x, *norm, eps, out=buf.h)  # [N, d]
        y = linear(x, weight, bias, out=buf.proj if add else out)
        if activation == "gelu":
            gelu(y, buf.scratch)
        if add:
            out += y
        return out

    def embed(self, tokens: np.ndarray) -> np.ndarray:
        """wte[tokens] [B, T, d] (read back from the packed or int8 table if it is one)."""
        if self.wte is not None:
            return self.wte[tokens]
        assert not isinstance(self.head, np.ndarray)  # (for mypy: the head is a packed or int8 table)
        return np.asarray(self.head.rows(tokens), dtype=self.dtype)

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
        """Causal multi-head attention of the new positions over everything cached. [N, 3d] -> [N, d].
        With the C kernels loaded (int8 or bf16 weights), one call does the same (unless a recorder
        wants the attention weights): NumPy's dozen small operations a layer cost more than it."""
        H, hd = self.config.n_head, self.config.head_dim
        if self.kernels is not None and recorder is None:
            out = self._buffers_for(B * T).attended  # [N, d]
            self.kernels.attention(qkv, cache.keys[:, layer], cache.values[:, layer], cache.lengths, out)
            return out
        q, k, v = qkv.reshape(B, T, 3, H, hd).transpose(2, 0, 3, 1, 4)  # 3 x [B, H, T, hd]
        keys, values = cache.write(layer, k, v, past)  # [B, H, S, hd], S = max(past) + T
        q = q * self.dtype.type(1.0 / math.sqrt(hd))
        weights: list[np.ndarray] | None = [] if recorder is not None else None
        y = attend(q, keys, values, mask, weights)  # [B, H, T, hd]
        if recorder is not None and weights:
            recorder.attention(layer, weights[0][0])  # row 0: [H, T, S]
        return y.transpose(0, 2, 1, 3).reshape(B * T, H * hd)  # [N, d]

    def _buffers_for(self, n: int) -> Buffers:
        buffers: Buffers | None = getattr(self._local, "buffers", None)
        if buffers is None or buffers.h.shape[0] != n:
            self._local.buffers = buffers = Buffers(n, self.config.n_embd, self.dtype)
        return buffers


def set_blas_threads(threads: int) -> None:
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        raise Gpt2Error('setting the numpy engine\'s threads needs threadpoolctl: pip install -e ".[numpy]"') from None
    threadpool_limits(limits=threads, user_api="blas")
