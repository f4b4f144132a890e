"""Chapter 6, generating."""

from __future__ import annotations

import math
from collections.abc import Sequence

from gpt2.config import Config


def min_p_candidates(logits: Sequence[float], min_p: float) -> list[tuple[int, float]]:
    """Exercise 1: tokens with probability >= min_p x the top one, renormalised, most probable first."""
    top = max(logits)
    weights = [math.exp(x - top) for x in logits]  # proportional to the probabilities; the top one is 1
    kept = sorted((i for i, w in enumerate(weights) if w >= min_p), key=lambda i: (-logits[i], i))
    total = math.fsum(weights[i] for i in kept)
    return [(i, weights[i] / total) for i in kept]


def kv_cache_bytes(config: Config, positions: int, bytes_per_value: int) -> int:
    """Exercise 2: a key and a value of n_embd numbers per layer and position."""
    return 2 * config.n_layer * config.n_embd * positions * bytes_per_value


def largest_greedy_top_p(logits: Sequence[float]) -> float:
    """Exercise 3: top_p keeps only the arg-max while top_p <= its probability."""
    top = max(logits)
    return 1 / math.fsum(math.exp(x - top) for x in logits)
