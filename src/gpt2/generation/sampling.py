"""Choosing the next token from logits: greedy, temperature, top-k and top-p (nucleus).

The sampler owns its random number generator, so two samplers with the same
seed make the same choices whatever else the program does with `random`.

The algorithm is fixed, so that every engine (pure, NumPy, PyTorch) picks the
same token from the same logits and the same seed:

1. greedy (`SamplingConfig.greedy`: a temperature below MIN_TEMPERATURE, 0
   included, or top_k 1): the arg-max, the lowest id on a tie; no random draw;
2. divide the logits by the temperature;
3. top-k: keep the k largest, ties broken by the lower id;
4. softmax over the survivors (float64, max subtracted);
5. top-p: walk the survivors from the most to the least probable (ties by
   lower id) and keep the shortest prefix whose probability reaches top_p;
6. draw u = rng.random() once and walk the kept tokens in that same order,
   choosing the first whose cumulative probability exceeds u * total.

Logits holding NaN or +inf (or nothing but -inf) are a GenerationError, never a token.

`SamplingConfig.greedy` is the one rule that says whether a setting is greedy: the
command line, the Python API, the server and the explorer all decide through it. A
temperature below MIN_TEMPERATURE (1e-6) is greedy because dividing by it could
overflow (1 / 5e-324 is inf in float64, and logits times 1e6 stay far inside float32's
range), and because the distribution it asks for is the arg-max's to within rounding.

>>> s = Sampler(SamplingConfig(temperature=0.0))
>>> s.sample([0.1, 3.0, -1.0])
1
>>> Sampler(SamplingConfig(temperature=1e-320)).sample([0.1, 3.0, -1.0])  # greedy too: 1 / 1e-320 overflows
1
>>> a = Sampler(SamplingConfig(top_k=2), seed=7); b = Sampler(SamplingConfig(top_k=2), seed=7)
>>> [a.sample([1.0, 2.0, 3.0]) for _ in range(5)] == [b.sample([1.0, 2.0, 3.0]) for _ in range(5)]
True
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import GenerationError
from .logits import LIST, LogitOps, check_scaled, ops_of

MIN_TEMPERATURE = 1e-6  # below it (0 included) sampling is greedy: see the module docstring

# Sample among the 40 most likely tokens unless told otherwise: OpenAI drew GPT-2's published
# samples with top-k 40, and its sampling scripts call 40 "generally a good value"; without a cut,
# the tail of 50,000 unlikely tokens, each rare, together derails a sample every few dozen tokens.
# The one default for the Python API (SamplingConfig, GenerationConfig), `gpt2 generate`,
# `gpt2 chat` and the explorer; the server keeps OpenAI's (no top-k), which its API defines.
DEFAULT_TOP_K = 40


@dataclass(frozen=True)
class SamplingConfig:
    temperature: float = 1.0  # below MIN_TEMPERATURE (0 included) means greedy
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
        """THE rule for greedy decoding, everywhere: a temperature below MIN_TEMPERATURE (0
        included; smaller ones would overflow once the logits are divided by them) or top_k 1.

        >>> SamplingConfig(temperature=1e-320).greedy, SamplingConfig(temperature=1e-6).greedy
        (True, False)
        """
        return self.temperature < MIN_TEMPERATURE or self.top_k == 1


def argmax(values: Sequence[float]) -> int:
    """Index of the largest value; the first one on a tie."""
    return LIST.argmax(values)


def draw_seed() -> int:
    """A fresh seed from the operating system's randomness."""
    return random.SystemRandom().randrange(2**32)


class Sampler:
    """Picks token ids from logits according to a :class:`SamplingConfig`.

    `seed` None draws one (`draw_seed`): `sampler.seed` always says which seed the sampler
    started from, so any run can be repeated."""

    def __init__(
        self, config: SamplingConfig | None = None, seed: int | None = None, *, logits: LogitOps | None = None
    ) -> None:
        """`logits`: the kind of logits it will be given (`gpt2.generation.logits.ops_for(engine)`),
        so that the implementation is chosen once, here; without it each call looks at its logits."""
        self.config = config or SamplingConfig()
        self.seed = draw_seed() if seed is None else seed
        self.rng = random.Random(self.seed)
        self._pick: Callable[[Any], int] | None = None
        if logits is not None:
            self.use(logits)

    def use(self, logits: LogitOps) -> Sampler:
        """From now on take logits of this kind only, through the implementation chosen now:
        greedy or not, the algorithm as written for lists, its vectorised copy for arrays
        (`gpt2.generation.vectorised`, the same token from the same single draw without sorting
        50257 Python floats). A decoder calls it once, with its engine's kind."""
        self._pick = _strategy(self, logits)
        return self

    def sample(self, logits: Any) -> int:
        """The next token (see the module docstring)."""
        if self._pick is not None:
            return self._pick(logits)
        return _strategy(self, ops_of(logits))(logits)

    def candidates(self, logits: Sequence[float]) -> list[tuple[int, float]]:
        """(id, probability) of the tokens that may be drawn, most probable first (steps 2 to 5),
        from a list of floats."""
        s = self.config
        inv_t = 1.0 / s.temperature
        ids = LIST.ranked(logits, s.top_k)
        top = logits[ids[0]] * inv_t
        check_scaled(top)
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


def _strategy(sampler: Sampler, ops: LogitOps) -> Callable[[Any], int]:
    """How `sampler` turns logits of the kind `ops` into a token (chosen once per decoder)."""
    if sampler.config.greedy:

        def greedy(logits: Any) -> int:
            ops.check(logits)
            return ops.argmax(logits)

        return greedy
    if ops is LIST:

        def sample_list(logits: Any) -> int:
            LIST.check(logits)
            candidates = sampler.candidates(logits)
            return sampler.choose([p for _, p in candidates], [i for i, _ in candidates])

        return sample_list
    from .vectorised import sample_array  # NumPy: imported only for array logits

    return lambda logits: sample_array(logits, sampler)
