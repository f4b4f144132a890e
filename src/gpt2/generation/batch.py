"""Several sequences at once: batched sampling.

At batch 1 a decoding step is bound by reading the weights; B rows share that
read, so B samples cost far less than B runs. `generate_batch` gives each row
its own sampler, so row i of a batch draws exactly what `generate` draws alone
with the same sampler (up to float rounding in the logits: a batched product
may sum in another order). Engines without batches (the pure engine) generate
the rows one after another.

Every row stays inside the context window: a prompt keeps its last
n_ctx - max_new_tokens tokens (the window does not slide here).

>>> from gpt2.config import Config
>>> from gpt2.params import init_params
>>> from gpt2.engines import load_engine
>>> cfg = Config(n_layer=1, n_embd=8, n_head=2, vocab_size=11, n_ctx=16)
>>> engine = load_engine("numpy", cfg, init_params(cfg, seed=0))
>>> greedy = row_samplers(SamplingConfig(temperature=0), seed=None, n=2)
>>> rows = generate_batch(engine, [[1, 2], [3, 4, 5]], 4, greedy, stop_ids=())
>>> [len(r) for r in rows]
[4, 4]
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from ..config import END_OF_TEXT
from ..engines.base import BatchEngine, BatchKVCache, Engine
from ..errors import GenerationError
from .loop import check_max_new_tokens, generate, prompt_or_start, start_token
from .sampling import Sampler, SamplingConfig

__all__ = ["generate_batch", "fit_prompt", "row_seeds", "row_samplers"]


def row_seeds(seed: int | None, n: int) -> list[int | None]:
    """The seed of each of n rows: seed, seed + 1, ... (None: each row unseeded). Row i of a
    batch seeded s draws what a single run seeded s + i draws."""
    return [None if seed is None else seed + i for i in range(n)]


def row_samplers(config: SamplingConfig, seed: int | None, n: int) -> list[Sampler]:
    """One sampler per row, seeded by `row_seeds`."""
    return [Sampler(config, seed=s) for s in row_seeds(seed, n)]


def fit_prompt(ids: Sequence[int], max_new_tokens: int, engine: Engine) -> list[int]:
    """The prompt (empty: <|endoftext|>), cropped so that it and the new tokens fit the window."""
    n_ctx = engine.config.n_ctx
    check_max_new_tokens(max_new_tokens)
    if max_new_tokens >= n_ctx:
        raise GenerationError(
            f"max_new_tokens ({max_new_tokens}) must be below the context window ({n_ctx}) "
            "when generating several sequences at once"
        )
    return prompt_or_start(ids, engine.config)[-(n_ctx - max_new_tokens) :]


def generate_batch(
    engine: Engine,
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
    if not isinstance(engine, BatchEngine):
        return [list(generate(engine, p, max_new_tokens, s, stop)) for p, s in zip(prompts, samplers)]
    cache = engine.new_batch_cache(len(prompts))
    logits = prefill(engine, prompts, cache)
    outputs: list[list[int]] = [[] for _ in prompts]
    done = [False] * len(prompts)
    filler = start_token(engine.config)
    for step in range(max_new_tokens):
        last = []
        for b, sampler in enumerate(samplers):
            token = filler if done[b] else sampler.sample(logits[b])
            if not done[b]:
                if token in stop:
                    done[b] = True
                    token = filler
                else:
                    outputs[b].append(token)
            last.append([token])  # finished rows keep stepping on a filler; their output is ignored
        if all(done) or step == max_new_tokens - 1:
            break
        logits = engine.forward_batch(last, cache)
    return outputs


def prefill(engine: BatchEngine, prompts: Sequence[Sequence[int]], cache: BatchKVCache) -> list[Any]:
    """Logits of each prompt's last position; one batched pass when the lengths agree."""
    if len({len(p) for p in prompts}) == 1:
        return list(engine.forward_batch(prompts, cache))
    return [engine.forward_batch([p], cache.row(b))[0] for b, p in enumerate(prompts)]
