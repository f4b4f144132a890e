"""Chapter 11, questions learners ask."""

from __future__ import annotations

import torch

from gpt2.config import Config
from gpt2.engines.torch.model import GPT2


class MaskedAttention(torch.nn.Module):
    """Exercise 1: the mask as a non-persistent buffer."""

    def __init__(self, n_ctx: int) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(8, 8)
        self.register_buffer("mask", torch.tril(torch.ones(n_ctx, n_ctx, dtype=torch.bool)), persistent=False)


def chapter_model() -> GPT2:
    """The chapter's small model."""
    config = Config(n_layer=2, n_embd=32, n_head=4, vocab_size=100, n_ctx=64)
    torch.manual_seed(0)
    model = GPT2(config)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model


def attention_weights_torch(model: GPT2, ids: list[int], layer: int = 0, head: int = 0) -> torch.Tensor:
    """Exercise 3: one head's attention weights [T, T] from the module's own layers."""
    config = model.config
    block = model.h[layer]
    C, D = config.n_embd, config.head_dim
    with torch.no_grad():
        x = model.wte(torch.tensor(ids)) + model.wpe(torch.arange(len(ids)))
        qkv = block.attn.c_attn(block.ln_1(x))  # [T, 3C]
        q = qkv[:, head * D : (head + 1) * D]
        k = qkv[:, C + head * D : C + (head + 1) * D]
        scores = q @ k.T / D**0.5
        mask = torch.tril(torch.ones(len(ids), len(ids), dtype=torch.bool))
        return torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
