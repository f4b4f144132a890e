"""Changing the logits before sampling: repetition, presence and frequency penalties, logit bias.

Applied in this order, to the model's logits for the next token, before the
temperature, top-k and top-p of the sampler:

1. repetition penalty p (Hugging Face's definition): every token already in the
   sequence, prompt included, has its logit divided by p if it is positive and
   multiplied by p if it is negative, so p > 1 makes repeats less likely;
2. presence and frequency penalties (OpenAI's definition): a token generated
   c times so far (the prompt does not count) loses
   c * frequency_penalty + (c > 0) * presence_penalty;
3. logit bias: a fixed amount added to a token's logit (-100 all but bans it,
   +100 all but forces it).

>>> adj = LogitAdjustments(repetition_penalty=2.0, frequency_penalty=0.5, logit_bias={0: -1.0})
>>> history = TokenHistory([1])           # the prompt
>>> history.add(2); history.add(2)         # two generated tokens
>>> adjust([1.0, 4.0, -2.0, 3.0], adj, history)
[0.0, 2.0, -5.0, 3.0]
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import GenerationError

__all__ = ["LogitAdjustments", "TokenHistory", "adjust", "adjust_list", "adjust_array"]


def _finite(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise GenerationError(f"{name} must be a finite number, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class LogitAdjustments:
    repetition_penalty: float = 1.0  # > 0; 1 = off
    presence_penalty: float = 0.0  # 0 = off
    frequency_penalty: float = 0.0  # 0 = off
    logit_bias: Mapping[int, float] = field(default_factory=dict)  # token id -> added to its logit

    def __post_init__(self) -> None:
        if _finite("repetition_penalty", self.repetition_penalty) <= 0:
            raise GenerationError(f"repetition_penalty must be > 0 (1 = off), got {self.repetition_penalty!r}")
        _finite("presence_penalty", self.presence_penalty)
        _finite("frequency_penalty", self.frequency_penalty)
        if not isinstance(self.logit_bias, Mapping):
            raise GenerationError("logit_bias must map token ids to numbers")
        for token, bias in self.logit_bias.items():
            if isinstance(token, bool) or not isinstance(token, int) or token < 0:
                raise GenerationError(f"logit_bias keys must be token ids (integers >= 0), got {token!r}")
            _finite(f"logit_bias[{token}]", bias)

    @property
    def active(self) -> bool:
        return (
            self.repetition_penalty != 1.0
            or self.presence_penalty != 0.0
            or self.frequency_penalty != 0.0
            or bool(self.logit_bias)
        )

    def check_vocabulary(self, vocab_size: int) -> None:
        """Biased ids must exist in the model's vocabulary."""
        outside = sorted(t for t in self.logit_bias if t >= vocab_size)
        if outside:
            raise GenerationError(f"logit_bias names token {outside[0]}, outside the vocabulary [0, {vocab_size})")


class TokenHistory:
    """What the penalties look at: every token of the sequence (prompt included) and how often
    each token was generated."""

    def __init__(self, prompt: Iterable[int] = ()) -> None:
        self.seen: set[int] = set(prompt)
        self.generated: Counter[int] = Counter()

    def add(self, token: int) -> None:
        self.seen.add(token)
        self.generated[token] += 1


def adjust(logits: Any, adjustments: LogitAdjustments, history: TokenHistory) -> Any:
    """The adjusted logits, a new row of the same kind (the input is not changed): a list of
    floats stays a list, a NumPy array comes back as a new float32 array. A decoder, which knows
    its kind, calls `adjust_list` or `adjust_array` through `gpt2.generation.logits`."""
    if not adjustments.active:
        return logits
    if isinstance(logits, (list, tuple)):  # the kinds `gpt2.generation.logits.ops_of` tells apart
        return adjust_list(list(logits), adjustments, history)
    return adjust_array(logits, adjustments, history)


def adjust_list(out: list[float], a: LogitAdjustments, history: TokenHistory) -> list[float]:
    """`out` (a list the caller owns) adjusted in place, and returned."""
    if not a.active:
        return out
    if a.repetition_penalty != 1.0:
        p = a.repetition_penalty
        for t in history.seen:
            out[t] = out[t] * p if out[t] < 0 else out[t] / p
    if a.presence_penalty or a.frequency_penalty:
        for t, count in history.generated.items():
            out[t] -= count * a.frequency_penalty + a.presence_penalty
    for t, bias in a.logit_bias.items():
        out[t] += bias
    return out


def adjust_array(logits: Any, a: LogitAdjustments, history: TokenHistory) -> Any:
    """A float32 copy of the array `logits`, adjusted (the array itself when nothing is active)."""
    import numpy as np

    if not a.active:
        return logits
    out = np.array(logits, dtype=np.float32)  # a copy
    if a.repetition_penalty != 1.0 and history.seen:
        seen = np.fromiter(history.seen, dtype=np.int64, count=len(history.seen))
        values = out[seen]
        out[seen] = np.where(values < 0, values * a.repetition_penalty, values / a.repetition_penalty)
    if (a.presence_penalty or a.frequency_penalty) and history.generated:
        ids = np.fromiter(history.generated.keys(), dtype=np.int64, count=len(history.generated))
        counts = np.fromiter(history.generated.values(), dtype=np.float32, count=len(history.generated))
        out[ids] -= counts * a.frequency_penalty + a.presence_penalty
    if a.logit_bias:
        ids = np.fromiter(a.logit_bias.keys(), dtype=np.int64, count=len(a.logit_bias))
        out[ids] += np.fromiter(a.logit_bias.values(), dtype=np.float32, count=len(a.logit_bias))
    return out
