"""Choosing the next token from logits: greedy, temperature, top-k and top-p (nucleus).

The sampler owns its random number generator, so two samplers with the same
seed make the same choices whatever else the program does with `random`.

The algorithm is fixed, so that every engine (pure, NumPy, PyTorch) picks the
same token from the same logits and the same seed:

1. temperature 0 (or top_k 1): the arg-max, the lowest id on a tie; no random draw.
2. divide the logits by the temperature;
3. top-k: keep the k largest, ties broken by the lower id;
4. softmax over the survivors (float64, max subtracted);
5. top-p: walk the survivors from the most to the least probable (ties by
   lower id) and keep the shortest prefix whose probability reaches top_p;
6. draw u = rng.random() once and walk the kept tokens in that same order,
   choosing the first whose cumulative probability exceeds u * total.

>>> s = Sampler(SamplingConfig(temperature=0.0))
>>> s.sample([0.1, 3.0, -1.0])
1
>>> a = Sampler(SamplingConfig(top_k=2), seed=7); b = Sampler(SamplingConfig(top_k=2), seed=7)
>>> [a.sample([1.0, 2.0, 3.0]) for _ in range(5)] == [b.sample([1.0, 2.0, 3.0]) for _ in range(5)]
True
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import GenerationError

# Sample among the 40 most likely tokens unless told otherwise: OpenAI drew GPT-2's published
# samples with top-k 40, and its sampling scripts call 40 "generally a good value"; without a cut,
# the tail of 50,000 unlikely tokens, each rare, together derails a sample every few dozen tokens.
# The one default for the Python API (SamplingConfig, GenerationConfig), `gpt2 generate`,
# `gpt2 chat` and the explorer; the server keeps OpenAI's (no top-k), which its API defines.
DEFAULT_TOP_K = 40


@dataclass(frozen=True)
class SamplingConfig:
    temperature: float = 1.0  # 0 means greedy
    top_k: int = DEFAULT_TOP_K  # 0 means no limit; above the vocabulary it is clamped
    top_p: float = 1.0  # nucleus mass in (0, 1]; 1 means off

    def __post_init__(self) -> None:
        t = self.temperature
        if not isinstance(t, (int, float)) or isinstance(t, bool) or math.isnan(t) or t < 0 or math.isinf(t):
            raise GenerationError(f"temperature must be a finite number >= 0, got {t!r}")
        if not isinstance(self.top_k, int) or isinstance(self.top_k, bool) or self.top_k < 0:
            raise GenerationError(f"top_k must be an integer >= 0 (0 = off), got {self.top_k!r}")
        p = self.top_p
        if not isinstance(p, (int, float)) or isinstance(p, bool) or math.isnan(p) or not 0.0 < p <= 1.0:
            raise GenerationError(f"top_p must be in (0, 1], got {p!r}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0 or self.top_k == 1


def argmax(values: Sequence[float]) -> int:
    """Index of the largest value; the first one on a tie."""
    return max(range(len(values)), key=values.__getitem__)


def check_logits(logits: Sequence[float]) -> None:
    """A model that produced NaN (or nothing but -inf) has failed; say so instead of
    picking an arbitrary token."""
    if any(map(math.isnan, logits)) or max(logits) == -math.inf:
        raise GenerationError(
            "the model produced NaN or all -inf logits; the weights may be corrupt or the dtype too narrow for them"
        )


def draw_seed() -> int:
    """A fresh seed from the operating system's randomness."""
    return random.SystemRandom().randrange(2**32)


class Sampler:
    """Picks token ids from logits according to a :class:`SamplingConfig`.

    `seed` None draws one (`draw_seed`): `sampler.seed` always says which seed the sampler
    started from, so any run can be repeated."""

    def __init__(self, config: SamplingConfig | None = None, seed: int | None = None) -> None:
        self.config = config or SamplingConfig()
        self.seed = draw_seed() if seed is None else seed
        self.rng = random.Random(self.seed)

    def sample(self, logits: Any) -> int:
        """The next token. A list of floats goes through the algorithm above as written; a
        NumPy array or torch tensor through its vectorised copy (`gpt2.generation.vectorised`),
        which picks the same token from the same single draw without sorting 50257 Python
        floats."""
        if not isinstance(logits, (list, tuple)):
            from .vectorised import sample_array  # NumPy: imported only for array logits

            return sample_array(logits, self)
        check_logits(logits)
        s = self.config
        if s.greedy:
            return argmax(logits)
        candidates = self.candidates(logits)
        return self.choose([p for _, p in candidates], [i for i, _ in candidates])

    def candidates(self, logits: Sequence[float]) -> list[tuple[int, float]]:
        """(id, probability) of the tokens that may be drawn, most probable first (steps 2 to 5)."""
        s = self.config
        inv_t = 1.0 / s.temperature
        n = len(logits)
        if 0 < s.top_k < n:
            ids = heapq.nsmallest(s.top_k, range(n), key=lambda i: (-logits[i], i))
        else:
            ids = sorted(range(n), key=lambda i: (-logits[i], i))
        top = logits[ids[0]] * inv_t
        weights = [math.exp(logits[i] * inv_t - top) for i in ids]
        total = math.fsum(weights)
        probs = [w / total for w in weights]
        if s.top_p < 1.0:
            mass, keep = 0.0, len(probs)
            for n, p in enumerate(probs, start=1):
                mass += p
                if mass >= s.top_p:
                    keep = n
                    break
            ids, probs = ids[:keep], probs[:keep]
        return list(zip(ids, probs))

    def choose(self, probs: Sequence[float], ids: Sequence[int]) -> int:
        """Step 6: one uniform draw, inverse CDF over `probs` in the order given."""
        threshold = self.rng.random() * math.fsum(probs)
        cumulative = 0.0
        for token, p in zip(ids, probs):
            cumulative += p
            if cumulative > threshold:
                return token
        return ids[-1]  # rounding left the threshold a hair above the sum
