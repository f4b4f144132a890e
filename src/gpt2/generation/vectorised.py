"""The sampler's algorithm (see `gpt2.generation.sampling`) on NumPy arrays, a batch of rows at once.

`Sampler.sample` sends array logits (from the NumPy and PyTorch engines) here, and
the scheduler sends a whole batch: `sample_rows(rows, samplers)` draws one token for
each row of a [B, V] batch with that row's own sampler (its settings, its own RNG, one
`rng.random()` draw per sampled row, none for a greedy one), so a seeded row draws the
same tokens whatever else is in the batch. The steps are the list algorithm's, in the
same order and in float64:

1. greedy rows (`SamplingConfig.greedy`): the arg-max, the lowest id on a tie;
2. the rest: a row's logits divided by its temperature (in float64), max subtracted,
   exponentiated and normalised, a few NumPy passes in a buffer every row reuses;
3. top-k rows keep their k best (ties to the lower id) and normalise over them;
4. candidates are walked from the most to the least probable (by (-logit, id)):
   top-p keeps the shortest prefix whose mass reaches top_p, then the first token
   whose cumulative probability exceeds u * (the kept mass) is drawn.

Sorting all 50,257 candidates of a row is what made a sampled token cost ~10 ms in
Python. The walk in 4 only needs the order of the candidates around the point where
it stops, so a row without top-k is not sorted: its probability mass is summed per
band of log(p / p_max) (half a nat wide) in one pass, the band holding the stop is
found from those sums, halved by weight until a few hundred candidates are left,
and only those are sorted and added up one by one from the mass before them (the
list version's sequential float64 sum). The normalising sums (pairwise in NumPy,
`math.fsum` in the list version), the sums of the bands passed over and `exp` may
round differently in the last bits, so the two pick the same token except when a
draw falls within about 1e-15 of a boundary between two tokens (tests compare them
draw for draw).

>>> from gpt2.generation.sampling import Sampler, SamplingConfig
>>> logits = np.array([0.5, 2.0, 2.0, -1.0], dtype=np.float32)
>>> top2 = SamplingConfig(top_k=2)
>>> Sampler(top2, seed=3).sample(logits) == Sampler(top2, seed=3).sample(logits.tolist())
True
>>> rows = np.stack([logits, logits[::-1].copy()])
>>> sample_rows(rows, [Sampler(SamplingConfig(temperature=0)), Sampler(SamplingConfig(temperature=0))])
[1, 1]
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from ..errors import GenerationError
from .logits import ARRAY, check_scaled, ranked

__all__ = ["sample_array", "sample_rows", "ranked"]


class Draws(Protocol):
    """What a draw needs of a `gpt2.generation.sampling.Sampler`: its settings and its generator.
    Typed here rather than imported, because the sampler imports this module for array logits."""

    config: Any  # a SamplingConfig: temperature, top_k, top_p, greedy
    rng: random.Random


# A sampled row's candidates fall in BANDS bands of log(p / p_max), WIDTH nats each (the last
# one takes the rest, -inf included); the band that holds the draw is halved until at most
# SORTED_AT_ONCE candidates are left, and only those are sorted.
BANDS = 128
WIDTH = 0.5
SORTED_AT_ONCE = 256


def sample_array(logits: Any, sampler: Draws) -> int:
    """`sampler`'s choice from array logits [V] (a host NumPy array, as the engine contract has them)."""
    outcome = sample_rows(np.asarray(logits).reshape(1, -1), [sampler], errors=True)[0]
    if isinstance(outcome, GenerationError):
        raise outcome
    return int(outcome)


def sample_rows(rows: Any, samplers: Sequence[Draws], *, errors: bool = False) -> list[Any]:
    """One token for each row of `rows` ([B, V] float32 or float64, or B rows [V]) with the row's
    own sampler.

    A row whose logits hold NaN or +inf (or nothing but -inf) gets no token: its entry is the
    GenerationError saying so when `errors` is true (the scheduler fails that row only, the
    others go on), else the error is raised. Its sampler draws nothing."""
    x = np.asarray(rows)
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
    if x.ndim != 2 or len(x) != len(samplers):
        raise GenerationError(f"{len(samplers)} samplers for logits of shape {x.shape}")
    out: list[Any] = [None] * len(samplers)
    for b in np.flatnonzero(~np.isfinite(x).all(axis=1)).tolist():  # -inf is allowed (a banned token)
        try:
            ARRAY.check(x[b])  # NaN, +inf, nothing but -inf: the sampler's GenerationError
        except GenerationError as exc:
            if not errors:
                raise
            out[b] = exc
    scratch: _Scratch | None = None
    vocab = x.shape[1]
    for b, sampler in enumerate(samplers):
        if out[b] is not None:
            continue
        s = sampler.config
        if s.greedy:
            out[b] = int(np.argmax(x[b]))  # the first (lowest) id on a tie
        elif 0 < s.top_k < vocab:  # a handful of candidates: sorted outright
            ids = ranked(x[b], s.top_k)
            scaled = x[b][ids].astype(np.float64) * (1.0 / s.temperature)
            check_scaled(float(scaled[0]))
            weights = np.exp(scaled - scaled[0])
            out[b] = _draw_sorted(ids, weights / weights.sum(), sampler)
        else:
            scratch = scratch or _Scratch(vocab)
            out[b] = _Row(x[b], s.temperature, scratch).draw(sampler)
    return out


class _Scratch:
    """Buffers one row at a time reuses (a row's float64 weights stay in the cache)."""

    def __init__(self, vocab: int) -> None:
        self.weights = np.empty(vocab, dtype=np.float64)
        self.bands = np.empty(vocab, dtype=np.float64)


class _Row:
    """One sampled row's candidates: weights exp(logit / t - max), their total, and how the
    probability mass falls into bands of log(p / p_max), all in a few passes over the row."""

    def __init__(self, values: np.ndarray, temperature: float, scratch: _Scratch) -> None:
        self.values = values
        # float64 arithmetic, as the list version's: float32 logits times a float would round in float32
        w = np.multiply(values, 1.0 / temperature, out=scratch.weights, dtype=np.float64)  # [V]
        top = float(w.max())
        check_scaled(top)
        w -= top  # log(p / p_max) <= 0
        bands = np.multiply(w, -1.0 / WIDTH, out=scratch.bands)
        np.minimum(bands, BANDS - 1, out=bands)
        self.band = bands.astype(np.intp)  # 0 for the best candidates, BANDS - 1 for the tail
        np.exp(w, out=w)
        self.weights = w
        self.total = float(w.sum())
        self.band_mass = np.bincount(self.band, weights=w, minlength=BANDS) / self.total
        self.probs_total = float(self.band_mass.sum())

    def draw(self, sampler: Draws) -> int:
        """Steps 5 and 6: the prefix top-p keeps, one draw, the first token whose cumulative
        probability exceeds it."""
        top_p = sampler.config.top_p
        if top_p < 1.0:
            last, before = self.crossing(top_p, strict=False)
            kept = before + float(self.weights[last]) / self.total
            if kept >= top_p:  # else rounding kept every candidate
                token, _ = self.crossing(sampler.rng.random() * kept, strict=True)
                later = self.values[token] < self.values[last] or (
                    self.values[token] == self.values[last] and token > last
                )
                return last if later else token
        token, _ = self.crossing(sampler.rng.random() * self.probs_total, strict=True)
        return token

    def crossing(self, target: float, strict: bool) -> tuple[int, float]:
        """The first candidate, in the sampler's order (-value, id), at which the running sum of
        the probabilities exceeds `target` (`strict`) or reaches it, with the mass before it; the
        last candidate when rounding leaves the sum a hair short."""
        mass = 0.0
        for k, band_mass in enumerate(self.band_mass.tolist()):
            if _crosses(mass + band_mass, target, strict) or k == BANDS - 1:
                ids = np.flatnonzero(self.band == k)
                if len(ids):
                    return self._inside(ids, mass, target, strict)
            mass += band_mass
        ids = np.flatnonzero(self.band == int(self.band.max()))  # the sum fell short: the last candidate
        return int(ids[np.lexsort((-ids, self.values[ids]))[0]]), mass - float(self.weights[ids].sum()) / self.total

    def _inside(self, ids: np.ndarray, mass: float, target: float, strict: bool) -> tuple[int, float]:
        """`crossing` within one band's candidates `ids`, `mass` before them: halve the band by
        weight while many candidates are left (ties cannot be split), then sort and add up."""
        w = self.weights
        low, high = float(w[ids].min()), float(w[ids].max())
        for _ in range(64):
            if len(ids) <= SORTED_AT_ONCE or not high > low:
                break
            middle = 0.5 * (low + high)
            above = w[ids] > middle
            upper = ids[above]
            upper_mass = float(w[upper].sum()) / self.total
            if len(upper) and _crosses(mass + upper_mass, target, strict):
                ids, low = upper, middle
            else:
                ids, high, mass = ids[~above], middle, mass + upper_mass
        order = ids[np.lexsort((ids, -self.values[ids]))]  # by -value, then the lower id
        probs = w[order] / self.total
        cum = np.cumsum(np.concatenate(([mass], probs)))[1:]  # one at a time, as the list version adds
        hit = np.flatnonzero(cum > target if strict else cum >= target)
        k = int(hit[0]) if len(hit) else len(order) - 1
        return int(order[k]), (float(cum[k - 1]) if k else mass)


def _crosses(total: float, target: float, strict: bool) -> bool:
    return total > target if strict else total >= target


def _draw_sorted(ids: np.ndarray, probs: np.ndarray, sampler: Draws) -> int:
    """Steps 5 and 6 over candidates already in order (a top-k row's)."""
    top_p = sampler.config.top_p
    if top_p < 1.0:
        reached = np.flatnonzero(np.cumsum(probs) >= top_p)
        keep = int(reached[0]) + 1 if len(reached) else len(probs)
        ids, probs = ids[:keep], probs[:keep]
    threshold = sampler.rng.random() * float(probs.sum())
    above = np.flatnonzero(np.cumsum(probs) > threshold)
    return int(ids[above[0]]) if len(above) else int(ids[-1])
