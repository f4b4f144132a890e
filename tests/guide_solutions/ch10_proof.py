"""Chapter 10, proof."""

from __future__ import annotations

from typing import Any

from gpt2.engines.pure.model import Weights
from gpt2.engines.pure.ops import linear


def flat(x: Any) -> list[float]:
    if isinstance(x, (int, float)):
        return [float(x)]
    return [v for item in x for v in flat(item)]


def max_rel_error(ours: Any, reference: Any) -> float:
    """Exercise 2: max |ours - reference| / max |reference|, over nested lists."""
    a, b = flat(ours), flat(reference)
    return max(abs(x - y) for x, y in zip(a, b)) / max(abs(y) for y in b)


def relu_mlp(x: list[list[float]], w: Weights, prefix: str) -> list[list[float]]:
    """Exercise 3: the MLP with ReLU in place of GELU (the bug to catch)."""
    h = linear(x, w[prefix + "c_fc.weight"], w[prefix + "c_fc.bias"])
    h = [[max(0.0, v) for v in row] for row in h]
    return linear(h, w[prefix + "c_proj.weight"], w[prefix + "c_proj.bias"])
