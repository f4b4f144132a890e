"""Chapter 7, training."""

from __future__ import annotations

import torch

from gpt2.config import Config
from gpt2.engines.torch.model import GPT2


def gradients(model: GPT2, x: torch.Tensor, y: torch.Tensor, micro_batches: int) -> dict[str, torch.Tensor]:
    """Exercise 1: the gradient of the loss on (x, y), accumulated over `micro_batches` equal
    parts, each loss divided by their number (what --grad-accum does)."""
    model.zero_grad()
    for xs, ys in zip(x.chunk(micro_batches), y.chunk(micro_batches)):
        _, loss = model(xs, ys)
        (loss / micro_batches).backward()
    return {name: p.grad.clone() for name, p in model.named_parameters()}


def perplexity_at_init(vocab_size: int, seed: int = 0) -> float:
    """Exercise 2: exp(loss) of a freshly initialised model on random ids.

    It is close to the vocabulary size because GPT-2's initialisation makes every logit
    tiny (wte's entries are about 0.02, so h . wte[t] is near 0 for every t): the softmax
    starts almost uniform, and a uniform guess has perplexity exactly V."""
    torch.manual_seed(seed)
    model = GPT2(Config(n_layer=2, n_embd=32, n_head=2, vocab_size=vocab_size, n_ctx=32))
    ids = torch.randint(0, vocab_size, (8, 33))
    with torch.no_grad():
        _, loss = model(ids[:, :-1], ids[:, 1:])
    return float(torch.exp(loss))


def first_step_moves(lr: float = 1e-3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Exercise 3: (|gradient|, |move|) of every weight after one AdamW step without decay."""
    from gpt2.training.optim import make_optimizer

    torch.manual_seed(seed)
    model = GPT2(Config(n_layer=2, n_embd=32, n_head=2, vocab_size=100, n_ctx=32))
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = make_optimizer(model, lr=lr, weight_decay=0.0)
    ids = torch.randint(0, 100, (4, 17))
    _, loss = model(ids[:, :-1], ids[:, 1:])
    loss.backward()
    grads = torch.cat([p.grad.abs().flatten() for p in model.parameters()])
    optimizer.step()
    moves = torch.cat([(p.detach() - b).abs().flatten() for p, b in zip(model.parameters(), before)])
    return grads, moves
