"""Beam search: the most probable continuation a breadth-limited search finds.

It needs a batched engine (NumPy or PyTorch): the beams are the rows of one
batch cache, reordered after each step to follow the survivors. Every row
stays inside the context window: a prompt keeps its last n_ctx - max_new_tokens
tokens.

>>> from gpt2.config import Config
>>> from gpt2.params import init_params
>>> from gpt2.engines import load_engine
>>> from gpt2.generation import generate, Sampler, SamplingConfig
>>> cfg = Config(n_layer=1, n_embd=8, n_head=2, vocab_size=11, n_ctx=16)
>>> engine = load_engine("numpy", cfg, init_params(cfg, seed=0))
>>> greedy = list(generate(engine, [1, 2], 4, Sampler(SamplingConfig(temperature=0)), stop_ids=()))
>>> beam_search(engine, [1, 2], num_beams=1, max_new_tokens=4, stop_ids=()).ids == greedy
True
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..config import END_OF_TEXT
from ..engines.base import BatchEngine, Engine
from ..errors import GenerationError
from .logits import check_rows, log_softmax
from .memory import check_batch_fits
from .rows import fit_prompt, prefill


@dataclass(frozen=True)
class Beam:
    ids: list[int]  # the new ids (a stop id that ended it is not included)
    logprob: float  # sum of the log-probabilities of its ids (and of the stop id, if it stopped)
    score: float  # logprob / length ** length_penalty, what the beams are ranked by
    finished: bool  # ended on a stop id


def beam_search(
    engine: Engine,
    prompt_ids: Sequence[int],
    num_beams: int,
    max_new_tokens: int,
    length_penalty: float = 1.0,
    stop_ids: Iterable[int] = (END_OF_TEXT,),
) -> Beam:
    """The most probable continuation that beam search finds (deterministic).

    Each step extends every live beam by every token, takes the 2 * num_beams best
    (beam log-prob + token log-prob, ties to the lower beam and token), moves those
    ending on a stop id *and ranked among the first num_beams* to the finished list,
    and keeps the num_beams best of the rest alive. A finished beam's rank is
    logprob / length ** length_penalty (length counts the stop id); the search ends
    after max_new_tokens, or once num_beams beams have finished and no live beam
    ranks above the worst of them. These are the rules of `transformers`' beam
    search (`early_stopping=False`); the tests check that both pick the same
    sequence. With num_beams=1 and no stop id this is greedy decoding.
    """
    import numpy as np  # engines with batched caches come with NumPy

    if isinstance(num_beams, bool) or not isinstance(num_beams, int) or num_beams < 1:
        raise GenerationError(f"num_beams must be an integer >= 1, got {num_beams!r}")
    if isinstance(length_penalty, bool) or not isinstance(length_penalty, (int, float)):
        raise GenerationError(f"length_penalty must be a finite number, got {length_penalty!r}")
    if not math.isfinite(length_penalty):
        raise GenerationError(f"length_penalty must be a finite number, got {length_penalty!r}")
    if not isinstance(engine, BatchEngine):
        raise GenerationError(f"beam search needs an engine with batches (numpy or torch), not {engine.name}")
    stop = frozenset(stop_ids)
    prompt = fit_prompt(prompt_ids, max_new_tokens, engine)
    if max_new_tokens == 0:
        return Beam([], 0.0, 0.0, False)
    check_batch_fits(engine, num_beams)  # before the cache is allocated
    cache = engine.new_batch_cache(num_beams)
    logits = prefill(engine, [prompt] * num_beams, cache)  # the prompt runs once, copied to every row
    live_ids: list[list[int]] = [[] for _ in range(num_beams)]
    live_logprob = np.full(num_beams, -np.inf)
    live_logprob[0] = 0.0  # the rows start identical: let only the first one branch
    finished: list[Beam] = []
    for step in range(1, max_new_tokens + 1):
        rows = np.asarray(logits)  # [beams, V] (prefill gives a list of rows: stacked)
        check_rows(rows)  # NaN or +inf: a GenerationError, not a beam
        candidates = live_logprob[:, None] + log_softmax(rows)  # [beams, V]
        order = _best(candidates, 2 * num_beams)
        parents: list[int] = []
        next_ids: list[list[int]] = []
        next_logprob: list[float] = []
        for rank, flat in enumerate(order):
            beam, token = divmod(int(flat), candidates.shape[1])
            total = float(candidates[beam, token])
            if total == -np.inf:
                break
            if token in stop:
                if rank < num_beams:  # a stop ranked below the first num_beams is dropped, as transformers does
                    finished.append(Beam(live_ids[beam], total, total / step**length_penalty, True))
            elif len(parents) < num_beams:
                parents.append(beam)
                next_ids.append(live_ids[beam] + [token])
                next_logprob.append(total)
            if len(parents) == num_beams and len(finished) >= num_beams:
                break
        finished = sorted(finished, key=lambda b: -b.score)[:num_beams]
        if not parents or step == max_new_tokens or _settled(finished, next_logprob, step, num_beams, length_penalty):
            break
        while len(parents) < num_beams:  # fewer survivors than rows: pad with dead copies
            parents.append(parents[0])
            next_ids.append(next_ids[0])
            next_logprob.append(-math.inf)
        cache.reorder(parents)
        live_ids, live_logprob = next_ids, np.asarray(next_logprob)
        logits = engine.forward_batch([[ids[-1]] for ids in live_ids], cache)
    alive = [
        Beam(ids, lp, lp / max(1, len(ids)) ** length_penalty, False)
        for ids, lp in zip(next_ids, next_logprob)
        if lp > -math.inf
    ]
    return max(finished + alive, key=lambda b: b.score)


def _best(candidates: Any, k: int) -> Any:
    """Flat indices of the k largest entries, best first, ties to the lower index."""
    import numpy as np

    flat = candidates.reshape(-1)
    k = min(k, flat.size)
    part = np.argpartition(-flat, k - 1)[:k]
    kth = flat[part].min()
    part = np.flatnonzero(flat >= kth)  # every tie of the k-th value, so the lowest ids win
    return part[np.lexsort((part, -flat[part]))][:k]


def _settled(finished: list[Beam], live: list[float], step: int, num_beams: int, length_penalty: float) -> bool:
    """True when num_beams beams have finished and the best live beam, ranked at its
    current length, is no better than the worst of them (the usual heuristic: a live
    beam's log-prob only falls as it grows)."""
    if len(finished) < num_beams or not live:
        return False
    best_live = max(live) / step**length_penalty
    return best_live <= finished[-1].score
