"""Measuring a model: mean cross-entropy over windows of text, perplexity, and a sample.

Perplexity is exp(mean loss): the number of tokens the model is, on average, as
unsure between as a uniform guess would be. A model that knows nothing about
GPT-2's 50257 tokens has loss ln(50257) = 10.8, perplexity 50257.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..engines.torch.device import pick_device
from ..generation.sampling import Sampler, SamplingConfig
from . import distributed
from .allocator import keep_freed_memory
from .data import Windows, check_vocabulary, load_tokens, split_tokens
from .errors import DataError, TrainConfigError

if TYPE_CHECKING:
    from ..engines.torch.model import GPT2
    from .instructions import Examples


def autocast_context(device: torch.device, dtype: str):
    """Mixed precision where the device supports it; float32 means no autocast."""
    if dtype == "float32":
        return contextlib.nullcontext()
    if dtype == "float16" and device.type != "cuda":
        raise TrainConfigError("float16 training needs a CUDA device; use --dtype bfloat16 on the CPU")
    if dtype == "bfloat16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise TrainConfigError("this GPU does not support bfloat16; use --dtype float16")
    return torch.autocast(device_type=device.type, dtype=getattr(torch, dtype))


def spread_indices(total: int, count: int) -> list[int]:
    """`count` window indices spread evenly over `total` (all of them when count >= total)."""
    if count >= total:
        return list(range(total))
    return [i * total // count for i in range(count)]


@torch.no_grad()
def windows_loss(
    model: torch.nn.Module,
    windows: Windows | Examples,
    indices: Sequence[int],
    *,
    batch_size: int,
    device: torch.device,
    dtype: str = "float32",
    dist: distributed.Distributed | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> float:
    """Mean loss over the given windows; under DDP each process scores its share.
    `progress(done, total)` is called after each batch with this process's window counts."""
    dist = dist or distributed.Distributed()
    was_training = model.training
    model.eval()
    mine = list(indices)[dist.rank :: dist.world_size]
    total = torch.zeros(2, dtype=torch.float64, device=device)  # [sum of losses, windows]
    try:
        for i in range(0, len(mine), batch_size):
            x, y = windows.batch(mine[i : i + batch_size])
            with autocast_context(device, dtype):
                _, loss = model(x.to(device), y.to(device))
            total[0] += loss.double() * len(x)
            total[1] += len(x)
            if progress is not None:
                progress(min(i + batch_size, len(mine)), len(mine))
    finally:
        model.train(was_training)
    total = distributed.sum_across(dist, total)
    return (total[0] / total[1]).item()


@torch.no_grad()
def sample_text(model: GPT2, tokenizer, *, n_tokens: int, seed: int, device: torch.device, top_k: int = 40) -> str:
    """A short unconditional sample (top-k, seeded so samples are comparable across steps).
    Uses its own random generator: sampling never disturbs the training RNG."""
    was_training = model.training
    model.eval()
    sampler = Sampler(SamplingConfig(temperature=1.0, top_k=top_k), seed=seed)
    n_ctx = model.config.n_ctx
    ids: list[int] = [tokenizer.eot_token]
    try:
        for _ in range(n_tokens):
            logits, _ = model(torch.tensor([ids[-n_ctx:]], device=device))
            ids.append(sampler.sample(logits[0, -1].float().cpu().tolist()))
    finally:
        model.train(was_training)
    return tokenizer.decode([t for t in ids[1:] if t != tokenizer.eot_token])


@dataclass(frozen=True)
class EvalPlan:
    """What an evaluation is about to score, known before the (possibly long) work starts."""

    text_tokens: int  # tokens of the text, or of its validation tail with split="val"
    tokens: int  # tokens to be scored (windows x context)
    sequences: int  # windows to be scored
    context_length: int
    dropped_tokens: int  # tokens of the tail after the last whole window: never scored
    split: str  # "all" or "val"
    sampled: bool  # True when --max-batches scores a spread-out subset of the windows


@dataclass(frozen=True)
class EvalResult:
    loss: float
    perplexity: float
    tokens: int  # tokens scored
    sequences: int
    context_length: int
    dropped_tokens: int = 0  # tail tokens after the last whole window, not scored
    split: str = "all"

    def to_dict(self) -> dict:
        return asdict(self)


SPLITS = ("all", "val")


def evaluate_text(
    model_name_or_path: str,
    data: str | Path,
    *,
    tokenizer,
    context_length: int | None = None,
    batch_size: int = 8,
    device: str = "auto",
    cache_dir: str | Path | None = None,
    split: str = "all",
    val_fraction: float = 0.1,
    max_batches: int | None = None,
    on_start: Callable[[EvalPlan], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> EvalResult:
    """Validation loss and perplexity of any loadable model on a text file (or directory),
    over non-overlapping windows of `context_length` tokens (default: the model's n_ctx).

    `split="val"` scores only the held-out tail `gpt2 train` validates on (the last
    `val_fraction` of the token stream, as training cuts it); `max_batches` scores that
    many batches of windows spread evenly over the text instead of all of them.
    `on_start(plan)` is called once the text is tokenised, before any scoring;
    `progress(windows_done, windows_total)` after each batch."""
    from ..engines.torch.model import GPT2
    from .models import load_pretrained

    if split not in SPLITS:
        raise TrainConfigError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if max_batches is not None and max_batches <= 0:
        raise TrainConfigError(f"max-batches must be a positive integer, got {max_batches!r}")
    if not 0.0 < val_fraction < 1.0:
        raise TrainConfigError(f"val-fraction must be in (0, 1), got {val_fraction!r}")
    config, params = load_pretrained(model_name_or_path)
    tokens, _ = load_tokens(data, tokenizer, cache_dir)
    check_vocabulary(tokens, config.vocab_size, str(data), tokenizer)
    if context_length is not None and context_length > config.n_ctx:
        raise TrainConfigError(
            f"context length {context_length} is longer than the model's context window {config.n_ctx}"
        )
    context = context_length or config.n_ctx
    if split == "val":
        _, tokens = split_tokens(tokens, val_fraction, context, name=str(data))
    if len(tokens) < 2:
        raise DataError(f"{data} has {len(tokens)} token(s); scoring needs at least 2")
    context = min(context, len(tokens) - 1)  # a short text: one window
    windows = Windows(tokens, context=context, stride=context)
    indices: Sequence[int] = range(len(windows))
    if max_batches is not None:
        indices = spread_indices(len(windows), max_batches * batch_size)
    dropped = len(tokens) - 1 - len(windows) * context  # the first token is never a target
    if on_start is not None:
        on_start(
            EvalPlan(
                len(tokens), len(indices) * context, len(indices), context, dropped, split, len(indices) < len(windows)
            )
        )
    dev = pick_device(device)
    if dev.type == "cpu":
        keep_freed_memory()  # the logits of every batch are the same size: reuse their pages
    model = GPT2.from_params(config, params).to(dev)
    loss = windows_loss(model, windows, indices, batch_size=batch_size, device=dev, progress=progress)
    return EvalResult(loss, math.exp(loss), len(indices) * context, len(indices), context, dropped, split)
