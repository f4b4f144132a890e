"""Chapter 9, fast and slow."""

from __future__ import annotations

import math

from gpt2.config import Config


def bytes_per_token(config: Config, bytes_per_weight: int) -> int:
    """Exercise 1: every weight but the rows of wpe other than the current position's."""
    return (config.num_parameters() - config.n_ctx * config.n_embd + config.n_embd) * bytes_per_weight


def roofline(config: Config, bandwidth: float, bytes_per_weight: int) -> float:
    """Exercise 1: the most tokens per second memory bandwidth (bytes/s) allows at batch 1."""
    return bandwidth / bytes_per_token(config, bytes_per_weight)


def ridge_batch(peak_flops: float, bandwidth: float, bytes_per_weight: int = 4) -> int:
    """Exercise 2: the smallest batch B with 2 B / peak >= bytes_per_weight / bandwidth."""
    return math.ceil(bytes_per_weight * peak_flops / (2 * bandwidth))


def cache_outweighs_model_at(config: Config, bytes_per_value: int = 4) -> int:
    """Exercise 3: the smallest batch whose full-window KV cache is larger than the weights."""
    per_row = 2 * config.n_layer * config.n_embd * config.n_ctx * bytes_per_value
    return config.num_parameters() * bytes_per_value // per_row + 1
