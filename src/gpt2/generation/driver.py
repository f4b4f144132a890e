"""Several sequences at once, in the caller's thread: the server's scheduler, driven synchronously.

`gpt2 generate --num-samples N` and batched prompts run through the same
continuous-batching `Scheduler` as `gpt2 serve` (one batching loop in the project):
`stream_batch` submits one `Sequence` per row and calls `run_step` until nothing is
left, yielding each row's steps as they come. No thread, no event loop. At batch 1 a
decoding step is bound by reading the weights; B rows share that read, so B samples
cost far less than B runs. Each row is a `Decoder` with its own sampler (its own RNG),
penalties, stop strings and log-probabilities, so row i of a batch draws exactly what
`stream` draws alone with the same settings and seed (up to float rounding in the
logits: a batched product may sum in another order). Engines without batches (the
pure engine) run the rows one after another.

Seeds: row i of a batch seeded s is seeded s + i; with no seed one is drawn for the
batch (`row_seeds`), so every row's seed is known and the batch can be repeated.

Every row stays inside the context window: a prompt keeps its last
n_ctx - max_new_tokens tokens (`fit_prompt`; the window does not slide here). Before
the batch's KV cache is allocated, `gpt2.generation.memory` checks that it fits.

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

from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

from ..config import END_OF_TEXT
from ..engines.base import BatchEngine, Engine
from ..errors import GenerationError
from .decoder import Decoder, GenerationConfig, Step
from .memory import check_batch_fits
from .rows import fit_prompt
from .sampling import Sampler, SamplingConfig, draw_seed
from .scheduler import Scheduler
from .sequence import Event, Failed, Generated
from .sequence import Sequence as Row

if TYPE_CHECKING:
    from ..tokenizer import Tokenizer

__all__ = ["generate_batch", "batch_decoders", "stream_batch", "run_batch", "row_seeds", "row_samplers"]


def row_seeds(seed: int | None, n: int) -> list[int]:
    """The seed of each of n rows: seed, seed + 1, ... Row i of a batch seeded s draws what a
    single run seeded s + i draws. With no seed one is drawn for the batch, so every row's
    seed is still known (and the batch can be repeated)."""
    base = draw_seed() if seed is None else seed
    return [base + i for i in range(n)]


def row_samplers(config: SamplingConfig, seed: int | None, n: int) -> list[Sampler]:
    """One sampler per row, seeded by `row_seeds`."""
    return [Sampler(config, seed=s) for s in row_seeds(seed, n)]


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
    """Run the decoders (their prompts fitted by `fit_prompt`) as one batch on a `Scheduler`
    driven in this thread, yielding (row, Step) as each row produces a token; a row's last step
    has a finish reason. A row that fails (NaN logits) raises its GenerationError."""
    rows: deque[tuple[int, Event]] = deque()
    sequences = [
        Row(b, d.prompt_ids, d.config, sink=lambda i, e: rows.append((i, e)), group="batch", decoder=d)
        for b, d in enumerate(decoders)
        if not d.finished
    ]
    if not sequences:
        return
    n_ctx = engine.config.n_ctx
    for seq in sequences:
        if len(seq.prompt_ids) + seq.decoder.config.max_new_tokens - len(seq.decoder.ids) > n_ctx:
            raise GenerationError(f"a row's prompt and new tokens do not fit the context window ({n_ctx}): fit_prompt")
    if isinstance(engine, BatchEngine):
        check_batch_fits(engine, len(sequences))  # before the scheduler allocates the cache
    # Every row at once (as many places as rows), and no chunked prefill: nobody waits here.
    scheduler = Scheduler(engine, max_batch=len(sequences), max_queue=len(sequences), prefill_chunk=n_ctx)
    scheduler.submit(sequences)
    while scheduler.busy:
        scheduler.run_step()
        while rows:
            b, event = rows.popleft()
            if isinstance(event, Failed):
                raise event.error
            if isinstance(event, Generated):
                yield b, event.step
            # Ended: only the context window ends a row from outside, and fit_prompt prevents it


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
