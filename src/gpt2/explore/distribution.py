"""The next-token distribution as the sampler sees it: which candidates survive, and the arithmetic.

`gpt2.generation.sampling` fixes the algorithm every engine samples with:

1. temperature 0 (or top_k 1): the arg-max, nothing drawn;
2. divide the logits by the temperature;
3. top-k: keep the k largest (ties: lower id);
4. softmax over the survivors (float64, max subtracted);
5. top-p: walk them from the most probable and keep the shortest prefix reaching top_p;
6. draw once among those kept, in proportion to their probabilities.

`next_token_distribution` runs steps 1 to 5 with the same arithmetic as the sampler's
vectorised copy (`gpt2.generation.vectorised.sample_array`), the same checks (NaN or
+inf logits are a GenerationError) and the same greedy rule (`SamplingConfig.greedy`:
a temperature below 1e-6 is greedy), so the tokens it marks
`kept` are exactly the ones `gpt2 generate` could draw, and `p_sample` is the
probability of drawing each. It also gives each candidate's probability under the model
itself (temperature 1, the whole vocabulary), so a reader sees what the controls changed.

>>> import numpy as np
>>> from gpt2.generation.sampling import SamplingConfig
>>> d = next_token_distribution(np.log(np.array([0.5, 0.3, 0.2])), SamplingConfig(top_p=0.7), top=3)
>>> [(c["id"], round(c["p"], 2), c["kept"], round(c["p_sample"], 3)) for c in d["candidates"]]
[(0, 0.5, True, 0.625), (1, 0.3, True, 0.375), (2, 0.2, False, 0.0)]
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..generation.logits import ARRAY, check_scaled, ranked
from ..generation.sampling import SamplingConfig

__all__ = ["next_token_distribution"]


def next_token_distribution(logits: Any, sampling: SamplingConfig, top: int = 20) -> dict[str, Any]:
    """Logits [V] of the next position -> the `top` most likely candidates, each with
    `id`, `logit`, `p` (the model's probability), `scaled` (logit / temperature), `in_top_k`,
    `p_top_k` (softmax among the top-k survivors), `cumulative` (the top-p walk), `kept`
    and `p_sample` (the probability the sampler draws it); plus the totals. Texts are
    added by the caller (it holds the tokenizer)."""
    values = np.asarray(logits, dtype=np.float64).reshape(-1)  # float32 -> float64 is exact
    ARRAY.check(values)
    V = len(values)
    top = max(1, min(top, V))
    log_total = float(values.max() + np.log(np.exp(values - values.max()).sum()))
    order = ranked(values, 0)[:top]  # the sampler's order: by logit, ties by lower id
    candidates: list[dict[str, Any]] = [
        {"id": int(i), "logit": float(values[i]), "p": math.exp(float(values[i]) - log_total)} for i in order.tolist()
    ]
    if sampling.greedy:
        for rank, c in enumerate(candidates):
            c.update(scaled=None, in_top_k=rank == 0, p_top_k=None, cumulative=None, kept=rank == 0)
            c["p_sample"] = 1.0 if rank == 0 else 0.0
        return _summary(sampling, candidates, kept_count=1, top_k_count=1, kept_mass=1.0)
    # Steps 2-5, as sample_array does them.
    ids = ranked(values, sampling.top_k)  # the top-k survivors, in order
    inv_t = 1.0 / sampling.temperature
    scaled = values[ids] * inv_t
    check_scaled(float(scaled[0]))
    weights = [math.exp(v) for v in (scaled - scaled[0]).tolist()]
    total = math.fsum(weights)
    probs = np.asarray(weights) / total  # p_top_k
    mass = np.cumsum(probs)
    keep = len(probs)
    if sampling.top_p < 1.0 and (mass >= sampling.top_p).any():
        keep = int(np.argmax(mass >= sampling.top_p)) + 1
    kept_mass = math.fsum(probs[:keep].tolist())
    # The top-k survivors are the first len(ids) tokens of the same order the candidates follow.
    for n, c in enumerate(candidates):
        inside = n < len(ids)
        c["scaled"] = c["logit"] * inv_t
        c["in_top_k"] = inside
        c["p_top_k"] = float(probs[n]) if inside else None
        c["cumulative"] = float(mass[n]) if inside else None
        c["kept"] = n < keep
        c["p_sample"] = float(probs[n]) / kept_mass if n < keep else 0.0
    return _summary(sampling, candidates, kept_count=keep, top_k_count=len(ids), kept_mass=kept_mass)


def _summary(
    sampling: SamplingConfig, candidates: list[dict[str, Any]], *, kept_count: int, top_k_count: int, kept_mass: float
) -> dict[str, Any]:
    return {
        "temperature": sampling.temperature,
        "top_k": sampling.top_k,
        "top_p": sampling.top_p,
        "greedy": sampling.greedy,
        "top_k_count": top_k_count,  # tokens left after top-k (the vocabulary when it is off)
        "kept_count": kept_count,  # tokens the sampler may draw
        "kept_mass": kept_mass,  # their share of the top-k softmax (the top-p walk's total)
        "candidates": candidates,
    }
