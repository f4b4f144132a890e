"""GPT-2 as a `torch.nn.Module`, named exactly as the official checkpoints are.

`model.state_dict()` has the keys of :func:`gpt2.params.param_shapes`
(`wte.weight`, `h.0.attn.c_attn.weight`, ...) with the same (in, out) layout for
the projections, so loading any checkpoint is `load_state_dict` by name.
The output projection is tied to `wte`.

>>> import torch
>>> from gpt2 import Config
>>> m = GPT2(Config(n_layer=1, n_embd=8, n_head=2, vocab_size=11, n_ctx=4))
>>> logits, loss = m(torch.tensor([[1, 2, 3]]), targets=torch.tensor([[2, 3, 4]]))
>>> tuple(logits.shape), loss.ndim
((1, 3, 11), 0)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...config import Config
from ...params import Params, param_shapes, validate_params
from ...quantized_tensor import QuantizedTensor
from ...tensor import Tensor
from ..base import BatchKVCache
from .attention import CachedPass

Projection = Callable[[torch.Tensor], torch.Tensor]  # x [N, in] -> x @ W + b [N, out]


class Conv1D(nn.Module):
    """y = x @ weight + bias, with weight stored (in, out) as GPT-2's checkpoints store it.

    `project`, when set, computes the same product another way: the PyTorch engine swaps in the
    kernel it chose when it is built (the C kernels, OpenBLAS, oneDNN, int8 or half-precision
    products: see `gpt2.engines.torch.precision`); the math around it does not change."""

    project: Projection | None = None

    def __init__(self, n_in: int, n_out: int, bias_trainable: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_in, n_out))
        if bias_trainable:
            self.bias = nn.Parameter(torch.zeros(n_out))
        else:  # kept in the state dict as zeros, so every reader sees the same tree
            self.register_buffer("bias", torch.zeros(n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.project is not None:
            if x.dim() == 2:
                return self.project(x)  # [N, out]
            return self.project(x.reshape(-1, x.shape[-1])).view(*x.shape[:-1], -1)
        return torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight).view(*x.shape[:-1], -1)


class Attention(nn.Module):
    def __init__(self, config: Config) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.dropout = config.dropout
        self.c_attn = Conv1D(config.n_embd, 3 * config.n_embd, bias_trainable=config.qkv_bias)
        self.c_proj = Conv1D(config.n_embd, config.n_embd)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, step: CachedPass | None = None, layer: int = 0) -> torch.Tensor:
        """Causal self-attention: x [B, T, C] -> [B, T, C] over the sequence itself (training), or,
        with a `step` of a KV cache, x [N, C] (N = B * T new positions) over everything cached."""
        if step is not None:
            return self.c_proj(step.attend(layer, self.c_attn(x)))  # [N, 3C] -> [N, C] -> [N, C]
        B, T, C = x.shape  # [batch, time, n_embd]
        q, k, v = self.c_attn(x).split(C, dim=2)  # 3 x [B, T, C]
        # [B, T, C] -> [B, n_head, T, head_dim]
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(
            q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0
        )  # [B, n_head, T, head_dim]
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # [B, T, C]
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, config: Config) -> None:
        super().__init__()
        self.c_fc = Conv1D(config.n_embd, config.n_inner)
        self.c_proj = Conv1D(config.n_inner, config.n_embd)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))  # [..., 4C] -> [..., C]
        return self.dropout(y) if self.training else y


class Block(nn.Module):
    def __init__(self, config: Config) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.attn = Attention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, step: CachedPass | None = None, layer: int = 0) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), step, layer)  # pre-norm, residual
        return x + self.mlp(self.ln_2(x))


class GPT2(nn.Module):
    """The model. Training calls it as `model(idx, targets)`; the PyTorch engine calls the same
    forward with a KV cache (`model(idx, cache=cache)`), having swapped its kernels into the
    projections (`Conv1D.project`, `head`) and, for int8 or half-precision tables, the embedding
    lookup (`embed`)."""

    head: Projection | None = None  # the tied output projection, x [N, C] -> logits [N, V]
    embed: Callable[[torch.Tensor], torch.Tensor] | None = None  # ids [B, T] -> rows [B, T, C]

    def __init__(self, config: Config) -> None:
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.n_ctx, config.n_embd)
        if config.position_embedding == "sinusoidal":
            self.wpe.weight.requires_grad_(False)  # a fixed table, stored like a learned one
        self.drop = nn.Dropout(config.dropout)
        self.h = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.load_params(None)

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        *,
        cache: BatchKVCache | None = None,
        all_logits: bool = True,
        recorder: Any = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """idx [B, T] token ids -> logits [B, T, vocab]; with targets [B, T], also the mean
        cross-entropy (targets of -100 are ignored).

        With a `cache` (a `KVCache`), the T tokens of each row sit after the positions it holds;
        their keys and values are appended to it, and `all_logits=False` gives only each row's
        last position's logits ([B, 1, vocab]). A `recorder` (gpt2.engines.recorder) sees row 0's
        residual stream and attention weights."""
        B, T = idx.shape
        step = None if cache is None else CachedPass(cache, B, T, self.config, recorder)
        if step is None and T > self.config.n_ctx:
            raise ValueError(f"sequence of {T} tokens is longer than the context window {self.config.n_ctx}")
        rows = self.wte(idx) if self.embed is None else self.embed(idx)  # [B, T, C]
        if step is None:
            x = rows + self.wpe(torch.arange(T, device=idx.device))  # [B, T, C]
            x = self.drop(x) if self.training else x
            for block in self.h:
                x = block(x)
        else:
            d = self.config.n_embd
            x = (rows + step.positions(self.wpe.weight)).view(B * T, d)  # [N, C], N = B * T
            if recorder is not None:
                recorder.residual(-1, x[:T])  # row 0's positions
            for layer, block in enumerate(self.h):
                x = block(x, step, layer)
                if recorder is not None:
                    recorder.residual(layer, x[:T])
            step.cache.advance(T)
            x = x.view(B, T, d)
        if not all_logits:
            x = x[:, -1:]  # [B, 1, C]
        x = self.ln_f(x)
        if self.head is None:
            logits = x @ self.wte.weight.T  # tied output projection: [B, T, vocab]
        else:
            logits = self.head(x.reshape(-1, x.shape[-1])).view(*x.shape[:-1], -1)  # [B, T, vocab]
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=-100)
        return logits, loss

    # --- the parameter tree ----------------------------------------------------------

    def load_params(self, params: Mapping[str, Tensor] | None) -> None:
        """Copy a parameter tree in by name (None: GPT-2's random initialisation, seeded
        from torch's generator)."""
        if params is None:
            self._init_weights()
            return
        validate_params(params, self.config)
        state = {name: tensor_to_torch(t) for name, t in params.items()}
        self.load_state_dict(state, strict=True)

    def to_params(self) -> Params:
        """The model's weights as a framework-free parameter tree (float32)."""
        out: Params = {}
        state = self.state_dict()
        for name in param_shapes(self.config):
            t = state[name].detach().to("cpu", torch.float32).contiguous()
            out[name] = Tensor(tuple(t.shape), "F32", t.numpy().tobytes())
        return out

    @classmethod
    def from_params(cls, config: Config, params: Mapping[str, Tensor]) -> GPT2:
        model = cls(config)
        model.load_params(params)
        return model

    def _init_weights(self) -> None:
        std = 0.02
        residual_std = std / math.sqrt(2 * self.config.n_layer)
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name == "wpe.weight" and self.config.position_embedding == "sinusoidal":
                    continue
                if p.ndim == 2:
                    p.normal_(0.0, residual_std if name.endswith(("attn.c_proj.weight", "mlp.c_proj.weight")) else std)
                elif name.endswith(".weight"):
                    p.fill_(1.0)
                else:
                    p.zero_()
            if self.config.position_embedding == "sinusoidal":
                from ...params import sinusoidal_positions

                self.wpe.weight.copy_(torch.tensor(sinusoidal_positions(self.config.n_ctx, self.config.n_embd)))

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


_TORCH_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64}


def tensor_to_torch(t: Tensor) -> torch.Tensor:
    """A `Tensor` as a torch tensor of its own dtype (copied, so the source buffer may close);
    an int8 one (gpt2.weights.quantized) as its dequantized float32 values."""
    if isinstance(t, QuantizedTensor):
        t = t.to_f32()
    if t.numel == 0:
        return torch.empty(t.shape, dtype=_TORCH_DTYPES[t.dtype])
    flat = torch.frombuffer(bytearray(memoryview(t.data).cast("B")), dtype=_TORCH_DTYPES[t.dtype])
    return flat.view(t.shape)
