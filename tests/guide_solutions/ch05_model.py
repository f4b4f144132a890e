"""Chapter 5, the whole model and the real weights."""

from __future__ import annotations

import json
import struct
from pathlib import Path

from gpt2.config import Config


def parameter_count(config: Config) -> int:
    """Exercise 1: V C + n_ctx C + n_layer (12 C^2 + 13 C) + 2 C."""
    c = config.n_embd
    return config.vocab_size * c + config.n_ctx * c + config.n_layer * (12 * c * c + 13 * c) + 2 * c


def weight_bytes(config: Config, bytes_per_weight: int) -> int:
    """Exercise 2."""
    return config.num_parameters() * bytes_per_weight


def safetensors_index(path: str | Path) -> dict[str, tuple[str, tuple[int, ...], int, int]]:
    """Exercise 3: {name: (dtype, shape, begin, end)} from the header alone."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    header.pop("__metadata__", None)
    return {name: (entry["dtype"], tuple(entry["shape"]), *entry["data_offsets"]) for name, entry in header.items()}
