"""Chapter 8, fine-tuning."""

from __future__ import annotations

import math
from pathlib import Path

from gpt2.config import Config
from gpt2.tokenizer import Tokenizer
from gpt2.training import evaluate_text, train
from gpt2.weights import load_model

SMALL = Config(n_layer=2, n_embd=64, n_head=4, n_ctx=64)
QUICK = dict(batch_size=4, context_length=32, warmup_steps=2, eval_batches=2, sample_interval=0)


def train_base(data: Path, out: Path, cache: Path) -> Path:
    """The chapter's base model: 40 steps on Shakespeare."""
    train(
        data,
        out,
        tokenizer=Tokenizer.gpt2(),
        config=SMALL,
        cache_dir=cache,
        options=dict(max_steps=40, lr=3e-3, eval_interval=40, **QUICK),
    )
    return out


def fine_tune(base: Path, data: Path, out: Path, cache: Path, steps: int = 60, lr: float = 3e-3) -> Path:
    """Exercise 1: a longer, stronger fine-tune."""
    train(
        data,
        out,
        tokenizer=Tokenizer.gpt2(),
        init=str(base),
        cache_dir=cache,
        options=dict(max_steps=steps, lr=lr, eval_interval=steps, **QUICK),
    )
    return out


def loss_on(model: Path, data: Path, cache: Path) -> float:
    return evaluate_text(str(model), data, tokenizer=Tokenizer.gpt2(), cache_dir=cache).loss


def relative_changes(before: Path, after: Path) -> dict[str, float]:
    """Exercise 3: |after - before| / |before| for every tensor (Euclidean norms)."""
    _, a = load_model(before)
    _, b = load_model(after)
    changes = {}
    for name in a:
        x, y = a[name].to_array(), b[name].to_array()
        norm = math.sqrt(math.fsum(v * v for v in x))
        changes[name] = math.sqrt(math.fsum((p - q) ** 2 for p, q in zip(x, y))) / norm
    return changes
