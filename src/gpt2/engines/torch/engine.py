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
- on the CPU in float32 the projections run through oneDNN's inner product
  (`torch.ops.mkldnn._linear_pointwise`) on dense (out, in) weights, which
  streams them ~25% faster than MKL's `addmm` at batch 1 (see `pick_kernel`;
  `kernel="blas"` turns it off). The weights keep their names and (in, out)
  shapes in `engine.model`: only their memory is column-major, so nothing is
  stored twice. Without oneDNN, the layouts MKL streams fastest are used
  (see BLAS_TRANSPOSED);
- logits come back as float32 whatever the compute dtype.

>>> from gpt2.params import init_params
>>> cfg = Config(n_layer=1, n_embd=8, n_head=2, vocab_size=11, n_ctx=16)
>>> engine = TorchEngine(cfg, init_params(cfg, seed=0), device="cpu")
>>> cache = engine.new_cache()
>>> tuple(engine.forward([1, 2, 3], cache).shape), len(cache)
((11,), 3)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from ...config import Config
from ...errors import Gpt2Error
from ...params import PROJECTIONS, validate_params
from ...tensor import Tensor
from ..base import BatchKVCache, check_rows
from .device import pick_device
from .model import GPT2, tensor_to_torch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

KERNELS = ("auto", "onednn", "blas")
PROJECTION_WEIGHTS = tuple(name + ".weight" for name, _, _ in PROJECTIONS)

# Per-token times of the 124M model's matrices at batch 1 on a 2-core x86 machine
# (12 layers each; ms, best of 21): (in, out) = the checkpoint layout with addmm,
# (out, in) = column-major memory with addmm, oneDNN = _linear_pointwise on (out, in).
#
#                     c_attn  attn.c_proj  c_fc  mlp.c_proj  head (wte)
#     (in, out)        4.9       1.8        5.3     7.3       6.1 ([d, V])
#     (out, in)        6.8       2.3        9.7     6.6      13.7 ([V, d])
#     oneDNN           3.6       1.4        4.3     4.2       5.1 ([V, d])
#
# So: oneDNN where it is available (CPU, float32), all projections column-major and the
# embedding table as stored. Otherwise on the CPU, BLAS_TRANSPOSED column-major (a head
# that is [d, V]-contiguous, read by the embedding through a transposed view).
BLAS_TRANSPOSED = ("wte.weight", "mlp.c_proj.weight")


class KVCache(BatchKVCache):
    """The batched cache (see `gpt2.engines.base.BatchKVCache`) in torch tensors: keys and
    values [batch, n_layer, n_head, n_ctx, head_dim] on the engine's device, lengths int64
    on the host, so a step never waits on the device to learn where to write."""


class TorchEngine:
    name = "torch"

    def __init__(
        self,
        config: Config,
        params: Mapping[str, Tensor],
        device: str | None = None,
        dtype: str = "float32",
        threads: int | None = None,
        kernel: str = "auto",
    ) -> None:
        """kernel: "auto" (oneDNN on the CPU in float32 with 2+ threads), "onednn" or "blas"."""
        if dtype not in DTYPES:
            raise Gpt2Error(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
        if kernel not in KERNELS:
            raise Gpt2Error(f"unknown kernel {kernel!r}; choose one of {', '.join(KERNELS)}")
        if threads is not None:  # process-wide: only when the caller asks for it
            if not isinstance(threads, int) or threads < 1:
                raise Gpt2Error(f"threads must be an integer >= 1, got {threads!r}")
            torch.set_num_threads(threads)
        validate_params(params, config)
        self.config = config
        self.device = pick_device(device)
        self.dtype = DTYPES[dtype]
        self.model = _load_module(config, params, self.device, self.dtype)
        self.kernel = pick_kernel(kernel, self.device, self.dtype)
        if self.kernel == "onednn":
            _transpose_storage(self.model, PROJECTION_WEIGHTS)
        elif self.device.type == "cpu":
            _transpose_storage(self.model, BLAS_TRANSPOSED)
        self._inner_product = _onednn_linear() if self.kernel == "onednn" else None
        # Each block's (weight, bias) pairs under the tree's names, made once: the layer norms, and
        # each projection in the layout its kernel reads: oneDNN takes (out, in) = weight.t(),
        # contiguous here; addmm takes the (in, out) weight.
        self._blocks: list[dict[str, tuple[torch.Tensor, torch.Tensor]]] = []
        for block in self.model.h:
            pairs = {name: _weight_and_bias(block.get_submodule(name)) for name in ("ln_1", "ln_2")}
            for name, _, _ in PROJECTIONS:
                weight, bias = _weight_and_bias(block.get_submodule(name))
                pairs[name] = (weight.t() if self._inner_product is not None else weight, bias)
            self._blocks.append(pairs)

    # --- the Engine contract ---------------------------------------------------------------

    def new_cache(self) -> KVCache:
        return self.new_batch_cache(1)

    def forward(
        self, ids: Sequence[int], cache: KVCache, *, all_logits: bool = False, recorder: Any = None
    ) -> torch.Tensor:
        """float32 logits [V] of the last new position (or [T, V] of every new one).
        `recorder`: see `gpt2.engines.recorder`."""
        if cache.batch_size != 1:
            raise Gpt2Error("forward takes a one-row cache; use forward_batch for a batch")
        return self.forward_batch([ids], cache, all_logits=all_logits, recorder=recorder)[0]

    def close(self) -> None:
        """Nothing to release: the weights are freed with the engine."""

    def new_batch_cache(self, batch_size: int) -> KVCache:
        c = self.config
        shape = (batch_size, c.n_layer, c.n_head, c.n_ctx, c.head_dim)
        keys = torch.zeros(shape, dtype=self.dtype, device=self.device)
        values = torch.zeros(shape, dtype=self.dtype, device=self.device)
        return KVCache(keys, values, torch.zeros(batch_size, dtype=torch.long))

    @torch.inference_mode()
    def forward_batch(
        self, rows: Sequence[Sequence[int]], cache: KVCache, *, all_logits: bool = False, recorder: Any = None
    ) -> torch.Tensor:
        """T new tokens in each of B rows (rows may hold different numbers of past
        positions) -> float32 logits [B, V] of each row's last position ([B, T, V] if all_logits).
        A `recorder` sees row 0."""
        checked = check_rows(rows, cache, self.config)
        tokens = torch.tensor(checked, dtype=torch.long).to(self.device, non_blocking=True)  # [B, T]
        x = self.hidden_states(tokens, cache, recorder)  # [B, T, d]
        if not all_logits:
            x = x[:, -1:]
        B, T, d = x.shape
        m = self.model
        x = F.layer_norm(x.reshape(B * T, d), (d,), m.ln_f.weight, m.ln_f.bias, self.config.layer_norm_epsilon)
        if self._inner_product is not None:
            logits = self._inner_product(x, m.wte.weight, None, "none", [], "")  # [N, V]
        else:
            logits = x @ m.wte.weight.t()  # the tied output projection
        logits = logits.float().view(B, T, -1)
        return logits if all_logits else logits[:, 0]

    def _project(self, x: torch.Tensor, weight_and_bias: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """x [N, in] -> [N, out]: x @ W + b, W in the kernel's layout (see self._weights)."""
        weight, bias = weight_and_bias
        if self._inner_product is not None:
            return self._inner_product(x, weight, bias, "none", [], "")  # weight [out, in]
        return torch.addmm(bias, x, weight)  # weight [in, out]

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
        x = (m.wte.weight[tokens] + pos).view(B * T, d)  # [N, d], N = B * T
        mask, causal = self._mask(past, T, uniform)
        if recorder is not None:
            recorder.residual(-1, x[:T])
        for layer, w in enumerate(self._blocks):
            h = F.layer_norm(x, (d,), *w["ln_1"], eps)  # [N, d]
            qkv = self._project(h, w["attn.c_attn"])  # [N, 3d]
            a = self.attention(qkv, cache, layer, past, B, T, mask, causal, recorder)  # [N, d]
            x = x + self._project(a, w["attn.c_proj"])  # residual
            h = F.layer_norm(x, (d,), *w["ln_2"], eps)  # [N, d]
            f = F.gelu(self._project(h, w["mlp.c_fc"]), approximate="tanh")  # [N, 4d]
            x = x + self._project(f, w["mlp.c_proj"])  # residual
            if recorder is not None:
                recorder.residual(layer, x[:T])  # row 0's positions
        cache.advance(T)
        return x.view(B, T, d)

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


def _onednn_linear() -> Any:
    """oneDNN's inner product y = x @ w.T + b (w [out, in]), or None if this PyTorch lacks it."""
    try:
        return torch.ops.mkldnn._linear_pointwise
    except (AttributeError, RuntimeError):
        return None


def pick_kernel(kernel: str, device: torch.device, dtype: torch.dtype) -> str:
    """ "onednn" or "blas". "auto" takes oneDNN on the CPU in float32 with more than one
    thread (its gain comes from using every core; on one thread MKL's matrix-vector
    product is faster: 30 vs 34 ms per token for 124M), if it is built in and gives the
    right answer on a small product. Asking for "onednn" where it cannot run is an error."""
    usable = device.type == "cpu" and dtype == torch.float32 and torch.backends.mkldnn.is_available()
    if kernel == "blas" or (kernel == "auto" and not (usable and torch.get_num_threads() > 1)):
        return "blas"
    op = _onednn_linear()
    if usable and op is not None:
        try:
            # fixed values: drawing random ones would move torch's global generator
            x, w = torch.linspace(-1, 1, 48).view(3, 16), torch.linspace(-3, 2, 80).cos().view(5, 16)
            b = torch.linspace(0, 1, 5)
            if torch.allclose(op(x, w, b, "none", [], ""), torch.addmm(b, x, w.t()), atol=1e-4):
                return "onednn"
        except RuntimeError:
            pass
    if kernel == "onednn":
        raise Gpt2Error("the onednn kernel needs PyTorch with oneDNN, the cpu device and float32")
    return "blas"


def _transpose_storage(model: GPT2, suffixes: tuple[str, ...]) -> None:
    """Give the named parameters column-major storage: `p.t().contiguous().t()` has p's
    shape and values, so every reader (embedding lookups, addmm, state_dict) is unchanged."""
    for name, param in list(model.named_parameters()):
        if name.endswith(suffixes):
            owner = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
            column_major = param.detach().t().contiguous().t()
            setattr(owner, name.rsplit(".", 1)[-1], torch.nn.Parameter(column_major, requires_grad=False))


def _load_module(config: Config, params: Mapping[str, Tensor], device: torch.device, dtype: torch.dtype) -> GPT2:
    """A `GPT2` module holding the tree's tensors, without spending time on a random init."""
    with torch.device("meta"):
        model = GPT2(config)
    state = {name: tensor_to_torch(t) for name, t in params.items()}
    model.load_state_dict(state, strict=True, assign=True)
    return model.to(device=device, dtype=dtype).eval().requires_grad_(False)
