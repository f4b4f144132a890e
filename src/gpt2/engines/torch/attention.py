"""Attention over a KV cache, for the PyTorch module's forward when it runs with one.

The cache is preallocated for the whole window ([batch, n_layer, n_head, n_ctx, head_dim]);
each pass writes its keys and values in place and attends over a view. Causality is
`is_causal=True` (a fresh prefill) or a *boolean* mask (a prefill after cached positions, or
rows of different lengths): no -inf arithmetic is ever done in half precision, so fp16/bf16
logits stay finite. The lengths are kept on the host, so a step never waits on the device to
learn where to write.

One pass is a :class:`CachedPass`: it knows where each row's new positions go and which mask
they need, and `attend` computes one layer's attention from that layer's q, k, v. Decoding one
token of one row on the CPU is so small that PyTorch's cost per operation counts, so that case
does the same arithmetic in fewer tensor operations: the cache's per-layer views made once per
cache, the new key and value written with one copy each, attention as two batched products and
a softmax.

>>> import torch
>>> from gpt2 import Config
>>> cfg = Config(n_layer=1, n_embd=8, n_head=2, vocab_size=11, n_ctx=4)
>>> cache = KVCache.empty(cfg, 1, torch.float32, torch.device("cpu"))
>>> step = CachedPass(cache, 1, 3, cfg)
>>> tuple(step.attend(0, torch.ones(3, 24)).shape), cache.keys[0, 0, :, :3].abs().sum() > 0
((3, 8), tensor(True))
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ...config import Config
from ..base import BatchKVCache

__all__ = ["KVCache", "CachedPass", "attention_weights"]


class KVCache(BatchKVCache):
    """The batched cache (see `gpt2.engines.base.BatchKVCache`) in torch tensors: keys and
    values [batch, n_layer, n_head, n_ctx, head_dim] on the engine's device, lengths int64
    on the host, so a step never waits on the device to learn where to write."""

    _views: list[tuple[torch.Tensor, torch.Tensor]] | None = None

    @classmethod
    def empty(cls, config: Config, batch_size: int, dtype: torch.dtype, device: torch.device) -> KVCache:
        shape = (batch_size, config.n_layer, config.n_head, config.n_ctx, config.head_dim)
        keys = torch.zeros(shape, dtype=dtype, device=device)
        values = torch.zeros(shape, dtype=dtype, device=device)
        return cls(keys, values, torch.zeros(batch_size, dtype=torch.long))

    def layer_views(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Row 0's (keys, values) of each layer, [n_head, n_ctx, head_dim] views, made once."""
        if self._views is None:
            self._views = [(self.keys[0, i], self.values[0, i]) for i in range(self.keys.shape[1])]
        return self._views


class CachedPass:
    """T new positions in each of B rows after what `cache` holds: positions, mask, attention."""

    def __init__(self, cache: BatchKVCache, B: int, T: int, config: Config, recorder: Any = None) -> None:
        self.cache, self.B, self.T, self.recorder = cache, B, T, recorder
        self.H, self.hd = config.n_head, config.head_dim
        self.scale = 1.0 / config.head_dim**0.5
        self.past = cache.past()  # [B] positions each row already holds
        self.device = cache.keys.device
        self.uniform = all(p == self.past[0] for p in self.past)
        # decoding one token of one row on the CPU: the path with the fewest tensor operations
        self.single = B == 1 and T == 1 and recorder is None and self.device.type == "cpu"
        self.mask, self.causal = (None, False) if self.single else self._mask()

    def positions(self, wpe: torch.Tensor) -> torch.Tensor:
        """The position embeddings of the new positions: [T, C] when every row holds as many
        positions, else [B, T, C]."""
        if self.uniform:
            return wpe[self.past[0] : self.past[0] + self.T]  # [T, C]
        index = torch.tensor([[p + i for i in range(self.T)] for p in self.past], device=self.device)
        return wpe[index]  # [B, T, C]

    def attend(self, layer: int, qkv: torch.Tensor) -> torch.Tensor:
        """Causal multi-head attention of the new positions over everything cached, after
        writing their keys and values: qkv [N, 3C] -> [N, C]."""
        H, hd, B, T = self.H, self.hd, self.B, self.T
        if self.single:
            p = self.past[0]
            keys, values = self.cache.layer_views()[layer]  # type: ignore[attr-defined]  # [H, n_ctx, hd]
            q, k, v = qkv.view(3, H, 1, hd).unbind(0)  # 3 x [H, 1, hd]
            keys.narrow(1, p, 1).copy_(k)
            values.narrow(1, p, 1).copy_(v)
            scores = torch.bmm(q, keys[:, : p + 1].transpose(1, 2)).mul_(self.scale)  # [H, 1, p + 1]
            return torch.bmm(torch.softmax(scores, dim=-1), values[:, : p + 1]).view(1, H * hd)  # [1, C]
        q, k, v = qkv.view(B, T, 3, H, hd).permute(2, 0, 3, 1, 4)  # 3 x [B, H, T, hd]
        keys, values = self.cache.write(layer, k, v, self.past)  # [B, H, S, hd], S = max(past) + T
        if self.recorder is not None:  # the fused kernel hides its weights: spell attention out
            weights = attention_weights(q, keys, self.mask, self.causal)  # [B, H, T, S]
            self.recorder.attention(layer, weights[0])
            y = weights @ values  # [B, H, T, hd]
        elif T == 1 and self.mask is None and self.device.type == "cpu":
            # One query a row: two small products and a softmax run on this thread, where SDPA's CPU
            # kernel would wake the thread pool for 12 heads (and meet OpenBLAS's threads there).
            scores = torch.matmul(q, keys.transpose(-1, -2)).mul_(self.scale)  # [B, H, 1, S]
            y = torch.matmul(torch.softmax(scores, dim=-1), values)  # [B, H, 1, hd]
        else:
            y = F.scaled_dot_product_attention(
                q, keys, values, attn_mask=self.mask, is_causal=self.causal
            )  # [B, H, T, hd]
        return y.transpose(1, 2).reshape(B * T, H * hd)  # [N, C]

    def _mask(self) -> tuple[torch.Tensor | None, bool]:
        """(boolean mask [B, 1, T, S] where True = may attend, or None; is_causal)."""
        past, T = self.past, self.T
        if self.uniform and T == 1:
            return None, False  # one query sees every cached key
        if self.uniform and past[0] == 0:
            return None, True  # a fresh prefill: the square causal mask
        seen = torch.tensor(past).view(-1, 1) + torch.arange(T)  # [B, T]: last position each query sees
        keys = torch.arange(max(past) + T)  # [S]
        allowed = keys.view(1, 1, -1) <= seen.unsqueeze(-1)  # [B, T, S]
        return allowed.unsqueeze(1).to(self.device), False


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
