"""AdamW with weight decay on matrices only.

Decay pulls weights towards zero; that regularises the matrices (embeddings,
projections) but would only hurt biases and layer-norm gains, whose job is to
shift and scale. So parameters with two or more dimensions decay, the rest do
not. Frozen tensors (a sinusoidal position table) are left out entirely.
"""

from __future__ import annotations

import torch


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for _, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def make_optimizer(
    model: torch.nn.Module, *, lr: float, weight_decay: float, betas=(0.9, 0.95), eps: float = 1e-8
) -> torch.optim.AdamW:
    return torch.optim.AdamW(parameter_groups(model, weight_decay), lr=lr, betas=betas, eps=eps)


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
