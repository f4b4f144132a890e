"""Several sequences at once: batched sampling.

At batch 1 a decoding step is bound by reading the weights; B rows share that
read, so B samples cost far less than B runs. Each row is a `Decoder` with its
own sampler, penalties, stop strings and log-probabilities, so row i of a batch
draws exactly what `stream` draws alone with the same settings and seed (up to
float rounding in the logits: a batched product may sum in another order).
Engines without batches (the pure engine) generate the rows one after another.

Every row stays inside the context window: a prompt keeps its last
n_ctx - max_new_tokens tokens (the window does not slide here). Before the
batch's KV cache is allocated, `gpt2.generation.memory` checks that it fits.

>>> from gpt2.config import Config
>>> from gpt2.params import init_params
>>> from gpt2.engines import load_engine
>>> cfg = Config(n_layer=1, n_embd=8, n_head=2, vocab_size=11, n_ctx=16)
>>> engine = load_engine("numpy", cfg, init_params(cfg, seed=0))
>>> greedy = row_samplers(SamplingConfig(temperature=0), seed=None, n=2)
>>> rows = generate_batch(engine, [[1, 2], [3, 4, 5]], 4, greedy, stop_ids=())
>>> [len(r) for r in rows]
[4, 4]
>>> decoders = batch_decoders(engine, [[1, 2], [1, 2]], GenerationConfig(max_new_tokens=3, seed=7, stop_ids=()))
>>> [d.seed for d in decoders]             # row i is seeded seed + i
[7, 8]
>>> [len(d.ids) for d in run_batch(engine, decoders)]
[3, 3]
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ..config import END_OF_TEXT
from ..engines.base import BatchEngine, BatchKVCache, Engine
from ..errors import GenerationError
from .decoder import Decoder, GenerationConfig, Step
from .loop import Context, check_max_new_tokens, decode, prompt_or_start, start_token
from .memory import check_batch_fits
from .sampling import Sampler, SamplingConfig, draw_seed

if TYPE_CHECKING:
    from ..tokenizer import Tokenizer

__all__ = [
    "generate_batch",
    "batch_decoders",
    "stream_batch",
    "run_batch",
    "fit_prompt",
    "row_seeds",
    "row_samplers",
]


def row_seeds(seed: int | None, n: int) -> list[int]:
    """The seed of each of n rows: seed, seed + 1, ... Row i of a batch seeded s draws what a
    single run seeded s + i draws. With no seed one is drawn for the batch, so every row's
    seed is still known (and the batch can be repeated)."""
    base = draw_seed() if seed is None else seed
    return [base + i for i in range(n)]


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


def batch_decoders(
    engine: Engine,
    prompts: Sequence[Sequence[int]],
    config: GenerationConfig,
    tokenizer: Tokenizer | None = None,
) -> list[Decoder]:
    """One `Decoder` per prompt, each prompt fitted to the window, row i seeded config.seed + i
    (a seed is drawn for the batch when config.seed is None)."""
    config.adjustments.check_vocabulary(engine.config.vocab_size)
    seeds = row_seeds(config.seed, len(prompts))
    return [
        Decoder(fit_prompt(p, config.max_new_tokens, engine), config.replace(seed=s), tokenizer)
        for p, s in zip(prompts, seeds)
    ]


def stream_batch(engine: Engine, decoders: Sequence[Decoder]) -> Iterator[tuple[int, Step]]:
    """Run the decoders (their prompts fitted by `fit_prompt`) as one batch, yielding
    (row, Step) as each row produces a token; a row's last step has a finish reason."""
    live = [d for d in decoders if not d.finished]
    if not live:
        return
    if not isinstance(engine, BatchEngine):
        for b, d in enumerate(decoders):
            for step in decode(engine, d, Context(list(d.prompt_ids))):
                yield b, step
        return
    check_batch_fits(engine, len(decoders))
    cache = engine.new_batch_cache(len(decoders))
    logits = prefill(engine, [d.prompt_ids for d in decoders], cache)
    filler = start_token(engine.config)
    while True:
        last = []
        for b, d in enumerate(decoders):
            if d.finished:  # finished rows keep stepping on a filler; their logits are ignored
                last.append([filler])
                continue
            step = d.step(logits[b])
            yield b, step
            last.append([filler if d.finished else step.token])
        if all(d.finished for d in decoders):
            return
        logits = engine.forward_batch(last, cache)


def run_batch(engine: Engine, decoders: Sequence[Decoder]) -> Sequence[Decoder]:
    """`stream_batch` run to the end; the decoders hold the ids and text."""
    for _ in stream_batch(engine, decoders):
        pass
    return decoders


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
    config = GenerationConfig(max_new_tokens=max_new_tokens, stop_ids=tuple(stop_ids))
    decoders = [Decoder(fit_prompt(p, max_new_tokens, engine), config, sampler=s) for p, s in zip(prompts, samplers)]
    return [d.ids for d in run_batch(engine, decoders)]


def prefill(engine: BatchEngine, prompts: Sequence[Sequence[int]], cache: BatchKVCache) -> list[Any]:
    """Logits of each prompt's last position: one batched pass when the lengths agree; a prompt
    repeated in every row (samples of one prompt, beams) runs once and is copied."""
    first = list(prompts[0])
    if len(prompts) > 1 and all(list(p) == first for p in prompts):
        logits = engine.forward_batch([first], cache.row(0))[0]
        for b in range(1, len(prompts)):
            cache.copy_row(0, b)
        return [logits] * len(prompts)
    if len({len(p) for p in prompts}) == 1:
        return list(engine.forward_batch(prompts, cache))
    return [engine.forward_batch([p], cache.row(b))[0] for b, p in enumerate(prompts)]
