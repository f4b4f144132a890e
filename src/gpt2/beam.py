"""Several sequences at once: batched sampling and beam search.

Both need an engine with a batched cache (the NumPy and PyTorch engines:
`new_batch_cache(n)`, `forward_batch(rows, cache)`, `cache.row(b)`,
`cache.reorder(rows)`). At batch 1 a decoding step is bound by reading the
weights; B rows share that read, so B samples cost far less than B runs.

`generate_batch` gives each row its own sampler, so row i of a batch draws
exactly what `gpt2.generation.generate` draws alone with the same sampler
(up to float rounding in the logits). Engines without a batched cache (the
pure engine) fall back to generating the rows one after another.

Both keep every row inside the context window: a prompt keeps its last
n_ctx - max_new_tokens tokens (the window does not slide here).

>>> from gpt2.config import Config
>>> from gpt2.params import init_params
>>> from gpt2.engines import load_engine
>>> from gpt2.sampling import Sampler, SamplingConfig
>>> cfg = Config(n_layer=1, n_embd=8, n_head=2, vocab_size=11, n_ctx=16)
>>> engine = load_engine("numpy", cfg, init_params(cfg, seed=0))
>>> greedy = [Sampler(SamplingConfig(temperature=0)) for _ in range(2)]
>>> rows = generate_batch(engine, [[1, 2], [3, 4, 5]], 4, greedy, stop_ids=())
>>> [len(r) for r in rows]
[4, 4]
>>> beam_search(engine, [1, 2], num_beams=1, max_new_tokens=4, stop_ids=()).ids == rows[0]
True
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import GenerationError
from .generation import END_OF_TEXT, generate, pick, prompt_or_start
from .sampling import Sampler
from .scoring import log_softmax


def supports_batches(engine: Any) -> bool:
    return hasattr(engine, "new_batch_cache") and hasattr(engine, "forward_batch")


def fit_prompt(ids: Sequence[int], max_new_tokens: int, engine: Any) -> list[int]:
    """The prompt (empty: <|endoftext|>), cropped so that it and the new tokens fit the window."""
    n_ctx = engine.config.n_ctx
    if not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise GenerationError(f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")
    if max_new_tokens >= n_ctx:
        raise GenerationError(
            f"max_new_tokens ({max_new_tokens}) must be below the context window ({n_ctx}) "
            "when generating several sequences at once"
        )
    return prompt_or_start(ids, engine.config)[-(n_ctx - max_new_tokens) :]


# --- batched sampling ---------------------------------------------------------------------


def generate_batch(
    engine: Any,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int,
    samplers: Sequence[Sampler],
    stop_ids: Iterable[int] = (END_OF_TEXT,),
) -> list[list[int]]:
    """New ids for each prompt (one sampler per prompt); a row ends at a stop id (not included)."""
    if len(samplers) != len(prompts):
        raise GenerationError(f"{len(prompts)} prompts but {len(samplers)} samplers")
    stop = frozenset(stop_ids)
    prompts = [fit_prompt(p, max_new_tokens, engine) for p in prompts]
    if not prompts or max_new_tokens == 0:
        return [[] for _ in prompts]
    if not supports_batches(engine):
        return [list(generate(engine, p, max_new_tokens, s, stop)) for p, s in zip(prompts, samplers)]
    cache = engine.new_batch_cache(len(prompts))
    logits = _prefill(engine, prompts, cache)
    outputs: list[list[int]] = [[] for _ in prompts]
    done = [False] * len(prompts)
    for step in range(max_new_tokens):
        last = []
        for b, sampler in enumerate(samplers):
            token = END_OF_TEXT if done[b] else pick(engine, logits[b], sampler)
            if not done[b]:
                if token in stop:
                    done[b] = True
                else:
                    outputs[b].append(token)
            last.append([token])  # finished rows keep stepping; their output is ignored
        if all(done) or step == max_new_tokens - 1:
            break
        logits = engine.forward_batch(last, cache)
    return outputs


def _prefill(engine: Any, prompts: list[list[int]], cache: Any) -> list[Any]:
    """Logits of each prompt's last position; one batched pass when the lengths agree."""
    if len({len(p) for p in prompts}) == 1:
        return list(engine.forward_batch(prompts, cache))
    return [engine.forward_batch([p], cache.row(b))[0] for b, p in enumerate(prompts)]


# --- beam search --------------------------------------------------------------------------


@dataclass(frozen=True)
class Beam:
    ids: list[int]  # the new ids (a stop id that ended it is not included)
    logprob: float  # sum of the log-probabilities of its ids (and of the stop id, if it stopped)
    score: float  # logprob / length ** length_penalty, what the beams are ranked by
    finished: bool  # ended on a stop id


def beam_search(
    engine: Any,
    prompt_ids: Sequence[int],
    num_beams: int,
    max_new_tokens: int,
    length_penalty: float = 1.0,
    stop_ids: Iterable[int] = (END_OF_TEXT,),
) -> Beam:
    """The most probable continuation that beam search finds (deterministic).

    Each step extends every live beam by every token, keeps the 2 * num_beams best
    (beam log-prob + token log-prob, ties to the lower beam and token), moves those
    ending on a stop id to the finished list, and keeps the num_beams best of the
    rest alive. A finished beam's rank is logprob / length ** length_penalty
    (length counts the stop id); the search ends after max_new_tokens, or once
    num_beams beams have finished and no live beam ranks above the worst of them.
    With num_beams=1 and no stop id this is greedy decoding.
    """
    import numpy as np  # engines with batched caches come with NumPy

    if not isinstance(num_beams, int) or num_beams < 1:
        raise GenerationError(f"num_beams must be an integer >= 1, got {num_beams!r}")
    if not supports_batches(engine):
        raise GenerationError(f"beam search needs an engine with batches (numpy or torch), not {engine.name}")
    stop = frozenset(stop_ids)
    prompt = fit_prompt(prompt_ids, max_new_tokens, engine)
    if max_new_tokens == 0:
        return Beam([], 0.0, 0.0, False)
    cache = engine.new_batch_cache(num_beams)
    logits = engine.forward_batch([prompt] * num_beams, cache)
    live_ids: list[list[int]] = [[] for _ in range(num_beams)]
    live_logprob = np.full(num_beams, -np.inf)
    live_logprob[0] = 0.0  # the rows start identical: let only the first one branch
    finished: list[Beam] = []
    for step in range(1, max_new_tokens + 1):
        candidates = live_logprob[:, None] + log_softmax(logits)  # [beams, V]
        order = _best(candidates, 2 * num_beams)
        parents, next_ids, next_logprob = [], [], []
        for flat in order:
            beam, token = divmod(int(flat), candidates.shape[1])
            total = float(candidates[beam, token])
            if total == -np.inf:
                break
            if token in stop:
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
