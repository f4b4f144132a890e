"""The PyTorch engine: GPUs, half precision, and a fast CPU path.

The weights live in a `gpt2.engines.torch.model.GPT2` module (`engine.model`), named
exactly as the checkpoints are, so a parameter tree loads by name. Inference
does not call the module's `forward` (which recomputes every position); it runs
the same blocks over their parameters with a KV cache (it takes its views of the
weights when it is built: for other weights, build another engine):

- the cache is preallocated for the whole window ([batch, n_layer, n_head,
  n_ctx, head_dim]); each step writes its keys and values in place and attends
  over a view with `scaled_dot_product_attention`;
- causality is `is_causal=True` (a fresh prefill) or a *boolean* mask (a prefill
  after cached positions, or rows of different lengths); no -inf arithmetic is
  ever done in half precision, so fp16/bf16 logits stay finite;
- everything runs under `torch.inference_mode()`; the cache lengths are kept on
  the host, so a step never waits on the device to learn where to write;
- on the CPU, float32, bf16 and int8 products go to the NumPy engine's C kernels where they
  build (`kernel="native"`, the default there: gpt2.engines.native; the weights are packed for
  them and the module's projection weights freed, so nothing is stored twice), and PyTorch
  itself runs on one thread during a pass, so that its idle threads do not spin on the cores
  the kernels' threads work on. Without them, float32 products run through NumPy's OpenBLAS
  (`kernel="openblas"`: matrix-vector for one row, matrix-matrix for several, on views of the
  module's own (out, in) memory, faster than MKL's or oneDNN's, docs/precision.md), and
  `kernel="onednn"` (oneDNN's inner product `torch.ops.mkldnn._linear_pointwise`) or `"blas"`
  (MKL's addmm, and PyTorch's own int8 and half-precision kernels) pick another for
  everything; see `pick_kernel`. With those, the weights keep their names and (in, out) shapes
  in `engine.model`: only their memory is column-major. Without NumPy or oneDNN, the layouts
  MKL streams fastest are used (see BLAS_TRANSPOSED);
- int8 and half-precision weights with PyTorch's kernels: see `gpt2.engines.torch.precision`
  (W8A16 through `torch._weight_int8pack_mm`; float32 activations on the CPU);
- logits come back as float32 whatever the compute dtype, as a NumPy array on the host
  (the engine contract: `gpt2.engines.base`).

>>> from gpt2.params import init_params
>>> cfg = Config(n_layer=1, n_embd=8, n_head=2, vocab_size=11, n_ctx=16)
>>> engine = TorchEngine(cfg, init_params(cfg, seed=0), device="cpu")
>>> cache = engine.new_cache()
>>> tuple(engine.forward([1, 2, 3], cache).shape), len(cache)
((11,), 3)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from ...config import Config
from ...errors import Gpt2Error, install_hint
from ...params import PROJECTIONS, validate_params
from ...quantized_tensor import QuantizedTensor
from ...tensor import Tensor
from ..base import BatchKVCache, check_rows
from ..plan import EnginePlan, plan_engine
from .device import HostRecorder, host_array, pick_device
from .kernels import (
    BLAS_TRANSPOSED,
    PROJECTION_WEIGHTS,
    drop_weight,
    native_kernels,
    numpy_gemv,
    onednn_linear,
    pick_kernel,
    transpose_storage,
)
from .model import GPT2, tensor_to_torch
from .precision import (
    Projection,
    dense_projection,
    embedding_rows,
    int8_kernel,
    int8_projection,
    int8_scale,
    native_half,
    native_projection,
)

if TYPE_CHECKING:
    import numpy as np

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class KVCache(BatchKVCache):
    """The batched cache (see `gpt2.engines.base.BatchKVCache`) in torch tensors: keys and
    values [batch, n_layer, n_head, n_ctx, head_dim] on the engine's device, lengths int64
    on the host, so a step never waits on the device to learn where to write."""

    _views: list[tuple[torch.Tensor, torch.Tensor]] | None = None

    def layer_views(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Row 0's (keys, values) of each layer, [n_head, n_ctx, head_dim] views, made once."""
        if self._views is None:
            self._views = [(self.keys[0, i], self.values[0, i]) for i in range(self.keys.shape[1])]
        return self._views


class TorchEngine:
    name = "torch"

    def __init__(self, config: Config, params: Mapping[str, Tensor], plan: EnginePlan | None = None, **options: Any):
        """`plan`: from `gpt2.engines.plan_engine("torch", ...)`, or the options themselves, planned
        here. dtype: how the weights are stored and multiplied (see gpt2.engines.torch.precision); int8
        weights (gpt2.quantized_tensor, or load_engine(..., quantize="int8")) stay int8.
        kernel: float32 on the CPU: "auto" (OpenBLAS through NumPy if installed: the fastest
        single stream), "batched" (oneDNN: the fastest for many rows a step), "openblas",
        "onednn" or "blas"; see `pick_kernel`."""
        plan = plan or plan_engine("torch", **options)
        dtype, device, threads, kernel = plan.dtype, plan.device, plan.threads, plan.kernel or "auto"
        if threads is not None:  # process-wide: only when the caller asks for it
            torch.set_num_threads(threads)
        validate_params(params, config)
        self.config = config
        self.device = pick_device(device)
        self.dtype = DTYPES[dtype]
        # On the CPU the activations, norms, attention and cache are float32 whatever the weights
        # are (see precision.py); on a GPU everything runs in the weights' dtype.
        self.act_dtype = torch.float32 if self.device.type == "cpu" else self.dtype
        self.notices: list[str] = list(
            plan.notices
        )  # what the engine chose for you, worth telling (the CLI prints them)
        self._scale = 1.0 / config.head_dim**0.5
        quantized = {name: t for name, t in params.items() if isinstance(t, QuantizedTensor)}
        self.quantization = "int8" if quantized else None
        # PyTorch's CPU bf16 products round their output to bf16 (8 bits): fine inside a block, where
        # the fp32 residual stream absorbs it, not for the logits (it flipped 1.3% of the top-1 tokens
        # of a trained model). So in bf16 the tied embedding/head table is held in fp16: the same
        # values (fp16 has more mantissa), products rounded 8x more finely (see docs/precision.md).
        self.head_dtype = torch.float16 if self.device.type == "cpu" and self.dtype == torch.bfloat16 else self.dtype
        self.model = _load_module(config, params, self.device, self.dtype, self.act_dtype, self.head_dtype)
        self.kernel = pick_kernel(kernel, self.device, self.dtype, threads)
        half_on_cpu = self.device.type == "cpu" and self.dtype != torch.float32
        native = native_kernels(threads) if self.kernel == "native" else None
        if self.kernel in ("onednn", "openblas") or (half_on_cpu and native is None):  # dense (out, in) matrices
            transpose_storage(self.model, PROJECTION_WEIGHTS)
        elif self.device.type == "cpu" and native is None:
            transpose_storage(self.model, BLAS_TRANSPOSED)
        inner = onednn_linear() if self.kernel == "onednn" else None
        numpy_matmul = numpy_gemv() if self.kernel == "openblas" else None
        if numpy_matmul is not None and threads is not None:  # OpenBLAS has its own threads
            try:
                from threadpoolctl import threadpool_limits

                threadpool_limits(limits=threads, user_api="blas")
            except ImportError:
                self.notices.append(f"OpenBLAS keeps its own thread count: {install_hint('numpy')} to set it")
        int8_op = None
        if quantized and native is None:
            int8_op, notice = int8_kernel(self.device)
            if notice:
                self.notices.append(notice)
        if half_on_cpu and not native_half(self.dtype) and native is None:
            self.notices.append(
                f"this CPU has no {dtype} arithmetic (AMX or AVX512 {dtype}): prompts are multiplied in float32"
            )

        def projection(name: str, weight_in_out: torch.Tensor, bias: torch.Tensor | None) -> Projection:
            if native is not None:  # packed for the C kernels (a copy: the module's is freed)
                return native_projection(weight_in_out, quantized.get(name), bias, self.dtype, native, name)
            if name in quantized:  # the module holds the int8 values, (out, in) in memory
                scale = int8_scale(quantized[name], self.device)
                return int8_projection(weight_in_out.t(), scale, bias, self.act_dtype, int8_op)
            return dense_projection(weight_in_out, bias, self.act_dtype, inner, numpy_matmul)

        # Each block's layer norms (weight, bias) and projections (callables x -> x @ W + b).
        self._norms: list[dict[str, tuple[torch.Tensor, torch.Tensor]]] = []
        self._projections: list[dict[str, Projection]] = []
        for i, block in enumerate(self.model.h):
            self._norms.append({name: _weight_and_bias(block.get_submodule(name)) for name in ("ln_1", "ln_2")})
            projections = {}
            for name, _, _ in PROJECTIONS:
                weight, bias = _weight_and_bias(block.get_submodule(name))
                projections[name] = projection(f"h.{i}.{name}.weight", weight, bias)
                if native is not None:  # packed for the C kernels: free the module's copy now
                    drop_weight(block.get_submodule(name))
            self._projections.append(projections)
        wte = self.model.wte.weight
        self._head = projection("wte.weight", wte.t(), None)  # the tied output projection: [d, V] as (in, out)
        self._wte: torch.Tensor | tuple[torch.Tensor, torch.Tensor] = wte
        if "wte.weight" in quantized:
            self._wte = (wte, int8_scale(quantized["wte.weight"], self.device))

    # --- the Engine contract ---------------------------------------------------------------

    @property
    def kv_bytes_per_position(self) -> int:
        """Keys and values of every layer in the activations' dtype (float32 on the CPU)."""
        return 2 * self.config.n_layer * self.config.n_embd * self.act_dtype.itemsize

    def details(self) -> list[str]:
        return []

    def free_memory(self) -> int | None:
        """Free GPU memory on CUDA; None on the CPU (and MPS, which shares the host's)."""
        if self.device.type != "cuda":
            return None
        free, _ = torch.cuda.mem_get_info(self.device)
        return int(free)

    def new_cache(self) -> KVCache:
        return self.new_batch_cache(1)

    def forward(
        self, ids: Sequence[int], cache: KVCache, *, all_logits: bool = False, recorder: Any = None
    ) -> np.ndarray:
        """float32 logits [V] of the last new position (or [T, V] of every new one), a host NumPy
        array (the engine contract). `recorder`: see `gpt2.engines.recorder`."""
        if cache.batch_size != 1:
            raise Gpt2Error("forward takes a one-row cache; use forward_batch for a batch")
        return self.forward_batch([ids], cache, all_logits=all_logits, recorder=recorder)[0]

    def close(self) -> None:
        """Nothing to release: the weights are freed with the engine."""

    def new_batch_cache(self, batch_size: int) -> KVCache:
        c = self.config
        shape = (batch_size, c.n_layer, c.n_head, c.n_ctx, c.head_dim)
        keys = torch.zeros(shape, dtype=self.act_dtype, device=self.device)
        values = torch.zeros(shape, dtype=self.act_dtype, device=self.device)
        return KVCache(keys, values, torch.zeros(batch_size, dtype=torch.long))

    @torch.inference_mode()
    def forward_batch(
        self, rows: Sequence[Sequence[int]], cache: KVCache, *, all_logits: bool = False, recorder: Any = None
    ) -> np.ndarray:
        """T new tokens in each of B rows (rows may hold different numbers of past
        positions) -> float32 logits [B, V] of each row's last position ([B, T, V] if all_logits),
        a host NumPy array (the engine contract). A `recorder` sees row 0, as host arrays too."""
        checked = check_rows(rows, cache, self.config)
        recorder = None if recorder is None else HostRecorder(recorder)
        hot = recorder is None and len(checked) == 1 and len(checked[0]) == 1 and self.device.type == "cpu"
        with self._blas_owns_the_cores() if self.device.type == "cpu" else contextlib.nullcontext():
            if hot:
                x = self.one_token(checked[0][0], cache).view(1, 1, -1)  # decoding at batch 1: the hot path
            else:
                tokens = torch.tensor(checked, dtype=torch.long).to(self.device, non_blocking=True)  # [B, T]
                x = self.hidden_states(tokens, cache, recorder)  # [B, T, d]
            if not all_logits:
                x = x[:, -1:]
            B, T, d = x.shape
            m = self.model
            x = F.layer_norm(x.reshape(B * T, d), (d,), m.ln_f.weight, m.ln_f.bias, self.config.layer_norm_epsilon)
            logits = self._head(x).float().view(B, T, -1)  # [B, T, V], the tied output projection
        return host_array(logits if all_logits else logits[:, 0])  # the contract: float32 on the host

    @contextlib.contextmanager
    def _blas_owns_the_cores(self) -> Iterator[None]:
        """With the native or openblas kernel, PyTorch runs on one thread during a forward pass:
        its products all go to the C kernels or OpenBLAS, whose own threads use every core, while PyTorch's idle
        OpenMP threads would spin-wait on those same cores after each of its small operations.
        Left to both, two threads on two cores decoded 6 tokens/s instead of 80 (docs/precision.md).
        The thread count is PyTorch's process-wide setting: it is restored when the pass ends."""
        threads = torch.get_num_threads()
        # int8 weights go to PyTorch's int8 kernel (unless native), which wants PyTorch's threads
        own_threads = self.kernel == "native" or (self.kernel == "openblas" and self.quantization is None)
        if not own_threads or threads == 1:
            yield
            return
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(threads)

    # --- the forward pass ------------------------------------------------------------------

    def hidden_states(self, tokens: torch.Tensor, cache: KVCache, recorder: Any = None) -> torch.Tensor:
        """Token ids [B, T] -> the residual stream [B, T, d] after every block; appends the new
        positions' keys and values to the cache. A `recorder` sees row 0."""
        B, T = tokens.shape
        past = cache.past()  # [B] positions each row already holds
        m, eps, d = self.model, self.config.layer_norm_epsilon, self.config.n_embd
        uniform = all(p == past[0] for p in past)
        if uniform:
            pos = m.wpe.weight[past[0] : past[0] + T]  # [T, d]
        else:
            pos = m.wpe.weight[torch.tensor([[p + i for i in range(T)] for p in past], device=self.device)]
        x = (embedding_rows(self._wte, tokens, self.act_dtype) + pos).view(B * T, d)  # [N, d], N = B * T
        mask, causal = self._mask(past, T, uniform)
        if recorder is not None:
            recorder.residual(-1, x[:T])
        for layer, (norms, w) in enumerate(zip(self._norms, self._projections)):
            h = F.layer_norm(x, (d,), *norms["ln_1"], eps)  # [N, d]
            qkv = w["attn.c_attn"](h)  # [N, 3d]
            a = self.attention(qkv, cache, layer, past, B, T, mask, causal, recorder)  # [N, d]
            x = x + w["attn.c_proj"](a)  # residual
            h = F.layer_norm(x, (d,), *norms["ln_2"], eps)  # [N, d]
            f = F.gelu(w["mlp.c_fc"](h), approximate="tanh")  # [N, 4d]
            x = x + w["mlp.c_proj"](f)  # residual
            if recorder is not None:
                recorder.residual(layer, x[:T])  # row 0's positions
        cache.advance(T)
        return x.view(B, T, d)

    def one_token(self, token: int, cache: KVCache) -> torch.Tensor:
        """One token after a one-row cache's positions -> the residual stream [1, d] after every
        block. `hidden_states` computes the same for any batch; at batch 1 a step is so small
        that PyTorch's cost per operation counts, so this does the same arithmetic in half the
        tensor operations: the cache's per-layer views made once per cache, the new key and value
        written with one copy each, attention as two batched products and a softmax, and the
        residual additions in place."""
        p = int(cache.lengths[0])
        m, eps, d = self.model, self.config.layer_norm_epsilon, self.config.n_embd
        H, hd = self.config.n_head, self.config.head_dim
        x = embedding_rows(self._wte, torch.tensor([token]), self.act_dtype) + m.wpe.weight[p : p + 1]  # [1, d]
        for (keys, values), norms, w in zip(cache.layer_views(), self._norms, self._projections):
            h = F.layer_norm(x, (d,), *norms["ln_1"], eps)  # [1, d]
            q, k, v = w["attn.c_attn"](h).view(3, H, 1, hd).unbind(0)  # 3 x [H, 1, hd]
            keys.narrow(1, p, 1).copy_(k)  # keys, values: [H, n_ctx, hd]
            values.narrow(1, p, 1).copy_(v)
            scores = torch.bmm(q, keys[:, : p + 1].transpose(1, 2)).mul_(self._scale)  # [H, 1, p + 1]
            a = torch.bmm(torch.softmax(scores, dim=-1), values[:, : p + 1]).view(1, d)  # [H, 1, hd] -> [1, d]
            x += w["attn.c_proj"](a)  # residual
            h = F.layer_norm(x, (d,), *norms["ln_2"], eps)  # [1, d]
            x += w["mlp.c_proj"](F.gelu(w["mlp.c_fc"](h), approximate="tanh"))  # residual
        cache.advance(1)
        return x

    def _mask(self, past: list[int], T: int, uniform: bool) -> tuple[torch.Tensor | None, bool]:
        """(boolean mask [B, 1, T, S] where True = may attend, or None; is_causal)."""
        if uniform and T == 1:
            return None, False  # one query sees every cached key
        if uniform and past[0] == 0:
            return None, True  # a fresh prefill: the square causal mask
        seen = torch.tensor(past).view(-1, 1) + torch.arange(T)  # [B, T]: last position each query sees
        keys = torch.arange(max(past) + T)  # [S]
        allowed = keys.view(1, 1, -1) <= seen.unsqueeze(-1)  # [B, T, S]
        return allowed.unsqueeze(1).to(self.device), False

    def attention(
        self,
        qkv: torch.Tensor,
        cache: KVCache,
        layer: int,
        past: list[int],
        B: int,
        T: int,
        mask: torch.Tensor | None,
        causal: bool,
        recorder: Any = None,
    ) -> torch.Tensor:
        """Causal multi-head attention of the new positions over everything cached. [N, 3d] -> [N, d]."""
        H, hd = self.config.n_head, self.config.head_dim
        q, k, v = qkv.view(B, T, 3, H, hd).permute(2, 0, 3, 1, 4)  # 3 x [B, H, T, hd]
        keys, values = cache.write(layer, k, v, past)  # [B, H, S, hd], S = max(past) + T
        if recorder is not None:  # the fused kernel hides its weights: spell attention out
            weights = attention_weights(q, keys, mask, causal)  # [B, H, T, S]
            recorder.attention(layer, weights[0])
            y = weights @ values  # [B, H, T, hd]
        elif T == 1 and mask is None and self.device.type == "cpu":
            # One query a row: two small products and a softmax run on this thread, where SDPA's CPU
            # kernel would wake the thread pool for 12 heads (and meet OpenBLAS's threads there).
            scores = torch.matmul(q, keys.transpose(-1, -2)).mul_(self._scale)  # [B, H, 1, S]
            y = torch.matmul(torch.softmax(scores, dim=-1), values)  # [B, H, 1, hd]
        else:
            y = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, is_causal=causal)  # [B, H, T, hd]
        return y.transpose(1, 2).reshape(B * T, H * hd)  # [N, d]


def attention_weights(q: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor | None, causal: bool) -> torch.Tensor:
    """softmax(q k^T / sqrt(hd)) under the causal mask, [B, H, T, S]: what
    `scaled_dot_product_attention` computes inside, spelled out so it can be recorded.
    The softmax runs in float32 (half precision would round the weights twice)."""
    scores = (q.float() @ keys.float().transpose(-1, -2)) / q.shape[-1] ** 0.5  # [B, H, T, S]
    T, S = scores.shape[-2:]
    if causal:  # a fresh prefill: query t sees keys 0..t
        mask = torch.ones(T, S, dtype=torch.bool, device=scores.device).tril()
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=-1).to(q.dtype)


def _weight_and_bias(module: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """A layer's (weight, bias): a LayerNorm's gain and shift, or a Conv1D's (in, out) matrix and bias."""
    weight, bias = module.weight, module.bias
    if not isinstance(weight, torch.Tensor) or not isinstance(bias, torch.Tensor):
        raise TypeError(f"{type(module).__name__} has no weight and bias tensors")
    return weight, bias


def _load_module(
    config: Config,
    params: Mapping[str, Tensor],
    device: torch.device,
    dtype: torch.dtype,
    act: torch.dtype,
    head: torch.dtype,
) -> GPT2:
    """A `GPT2` module holding the tree's tensors, without spending time on a random init. The
    matrices read in bulk each token are stored in `dtype` (the projections) and `head` (wte),
    everything else in `act`; int8 ones hold their int8 values (the engine keeps their scales),
    as (out, in) memory."""
    with torch.device("meta"):
        model = GPT2(config)
    model.requires_grad_(False)  # an int8 tensor cannot be a parameter that wants gradients
    state = {}
    for name, t in params.items():
        if isinstance(t, QuantizedTensor):  # the values only: the engine builds its products from the tree
            q = torch.frombuffer(bytearray(memoryview(t.data).cast("B")), dtype=torch.int8).view(t.shape)
            state[name] = q.t().contiguous().t() if t.axis == 1 else q
        else:
            state[name] = tensor_to_torch(t)
    model.load_state_dict(state, strict=True, assign=True)
    bulk = {f"h.{i}.{w}" for i in range(config.n_layer) for w in PROJECTION_WEIGHTS}
    for name, tensor in model.state_dict(keep_vars=True).items():
        target = head if name == "wte.weight" else dtype if name in bulk else act
        if tensor.is_floating_point():
            tensor.data = tensor.data.to(device=device, dtype=target)
        else:
            tensor.data = tensor.data.to(device=device)
    return model.eval()
