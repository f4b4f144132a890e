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

import torch

from ..engines.torch.device import pick_device
from ..generation.sampling import Sampler, SamplingConfig
from . import distributed
from .data import Windows, check_vocabulary, load_tokens
from .errors import DataError, TrainConfigError


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
    windows: Windows,
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
def sample_text(
    model: torch.nn.Module, tokenizer, *, n_tokens: int, seed: int, device: torch.device, top_k: int = 40
) -> str:
    """A short unconditional sample (top-k, seeded so samples are comparable across steps).
    Uses its own random generator: sampling never disturbs the training RNG."""
    was_training = model.training
    model.eval()
    sampler = Sampler(SamplingConfig(temperature=1.0, top_k=top_k), seed=seed)
    n_ctx = model.config.n_ctx
    ids = [tokenizer.eot_token]
    try:
        for _ in range(n_tokens):
            logits, _ = model(torch.tensor([ids[-n_ctx:]], device=device))
            ids.append(sampler.sample(logits[0, -1].float().cpu().tolist()))
    finally:
        model.train(was_training)
    return tokenizer.decode([t for t in ids[1:] if t != tokenizer.eot_token])


@dataclass(frozen=True)
class EvalResult:
    loss: float
    perplexity: float
    tokens: int  # tokens scored
    sequences: int
    context_length: int

    def to_dict(self) -> dict:
        return asdict(self)


def evaluate_text(
    model_name_or_path: str,
    data: str | Path,
    *,
    tokenizer,
    context_length: int | None = None,
    batch_size: int = 8,
    device: str = "auto",
    cache_dir: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> EvalResult:
    """Validation loss and perplexity of any loadable model on a text file (or directory),
    over non-overlapping windows of `context_length` tokens (default: the model's n_ctx).
    `progress(windows_done, windows_total)` is called after each batch."""
    from ..engines.torch.model import GPT2
    from .models import load_pretrained

    config, params = load_pretrained(model_name_or_path)
    tokens, _ = load_tokens(data, tokenizer, cache_dir)
    check_vocabulary(tokens, config.vocab_size, str(data), tokenizer)
    if context_length is not None and context_length > config.n_ctx:
        raise TrainConfigError(
            f"context length {context_length} is longer than the model's context window {config.n_ctx}"
        )
    if len(tokens) < 2:
        raise DataError(f"{data} has {len(tokens)} token(s); scoring needs at least 2")
    context = min(context_length or config.n_ctx, len(tokens) - 1)  # a short text: one window
    windows = Windows(tokens, context=context, stride=context)
    dev = pick_device(device)
    model = GPT2.from_params(config, params).to(dev)
    loss = windows_loss(model, windows, range(len(windows)), batch_size=batch_size, device=dev, progress=progress)
    return EvalResult(loss, math.exp(loss), len(windows) * context, len(windows), context)
