"""Chapter 2, embeddings."""

from __future__ import annotations

import math

from gpt2.config import Config


def table_share(config: Config) -> float:
    """Exercise 1: the fraction of the parameters in wte and wpe."""
    return (config.vocab_size + config.n_ctx) * config.n_embd / config.num_parameters()


def offset_dot(k: int, n_embd: int) -> float:
    """Exercise 2: PE[p] . PE[p + k] from the formula: one cos(k w_i) per sin/cos pair."""
    return sum(math.cos(k / 10000 ** (i / n_embd)) for i in range(0, n_embd, 2))


def max_random_cosine(rows: int = 2_000, width: int = 768, seed: int = 0) -> float:
    """Exercise 3: the largest |cosine| between two different rows of a freshly initialised table."""
    import torch

    from gpt2.engines.torch.model import GPT2

    torch.manual_seed(seed)
    table = GPT2(Config(n_layer=1, n_embd=width, n_head=12, vocab_size=rows, n_ctx=8)).wte.weight.detach().double()
    unit = table / table.norm(dim=1, keepdim=True)
    cosines = (unit @ unit.T)[~torch.eye(rows, dtype=torch.bool)]
    return float(cosines.abs().max())
