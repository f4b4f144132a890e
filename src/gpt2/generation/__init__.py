"""Generation: choosing tokens and the loops that drive an engine to produce them.

    logits      the engines' two kinds of logits (lists, float32 arrays) and every operation on them
    sampling    Sampler, SamplingConfig: greedy, temperature, top-k, top-p, with its own RNG
    vectorised  the sampler's algorithm on NumPy arrays (the same token from the same draw)
    adjust      repetition, presence and frequency penalties, logit bias
    stops       stop strings, found even when they span tokens
    decoder     GenerationConfig; Decoder: one sequence's state, logits in, Step (token, text) out
    loop        stream() and generate(): one sequence, sliding past the context window
    driver      stream_batch(), generate_batch(): several sequences sharing each read of the
                weights, through the scheduler driven synchronously
    memory      will a batch fit? checked before its KV cache is allocated
    scheduler   continuous batching: every live sequence in one batched forward a step
                (sequence: one choice and its events; prefill: prompts into the batch, a long
                one a chunk a step; rows: the KV cache's rows; stats: its counters;
                errors: QueueFull, ShuttingDown, ...)
    beam        beam_search()
    session     Session: a running text extended turn by turn, its KV cache kept (gpt2 chat)

This package sits above the engines: it drives any `gpt2.engines.base.Engine`,
and no engine imports it.

>>> from gpt2.config import Config
>>> from gpt2.params import init_params
>>> from gpt2.engines import load_engine
>>> cfg = Config(n_layer=1, n_embd=8, n_head=2, vocab_size=11, n_ctx=16)
>>> engine = load_engine("pure", cfg, init_params(cfg, seed=0))
>>> len(list(generate(engine, [1, 2, 3], 4, Sampler(SamplingConfig(temperature=0)))))
4
"""

from ..config import END_OF_TEXT
from .adjust import LogitAdjustments
from .beam import Beam, beam_search
from .decoder import Decoder, GenerationConfig, Step
from .driver import batch_decoders, generate_batch, row_samplers, row_seeds, run_batch, stream_batch
from .loop import Context, decode, generate, prompt_or_start, start_token, stream
from .sampling import Sampler, SamplingConfig
from .session import Session
from .stops import StopStrings

__all__ = [
    "END_OF_TEXT",
    "Beam",
    "Decoder",
    "GenerationConfig",
    "LogitAdjustments",
    "Step",
    "StopStrings",
    "stream",
    "stream_batch",
    "run_batch",
    "batch_decoders",
    "decode",
    "Context",
    "Session",
    "Sampler",
    "SamplingConfig",
    "beam_search",
    "generate",
    "generate_batch",
    "prompt_or_start",
    "row_samplers",
    "row_seeds",
    "start_token",
]
