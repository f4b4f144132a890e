"""The auto-regressive loop shared by every engine: one sequence, one token at a time.

`stream` yields a `Step` per token (with its text when given a tokenizer); `generate` is the
same loop reduced to the new ids.

>>> from gpt2.config import Config
>>> from gpt2.params import init_params
>>> from gpt2.engines import load_engine
>>> from gpt2.generation.sampling import SamplingConfig
>>> cfg = Config(n_layer=1, n_embd=8, n_head=2, vocab_size=11, n_ctx=16)
>>> engine = load_engine("pure", cfg, init_params(cfg, seed=0))
>>> ids = list(generate(engine, [1, 2, 3], max_new_tokens=4, sampler=Sampler(SamplingConfig(temperature=0))))
>>> len(ids)
4
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..config import END_OF_TEXT, Config
from ..engines.base import Engine, check_ids
from ..errors import GenerationError
from .decoder import Decoder, GenerationConfig, Step
from .logits import ops_for
from .sampling import Sampler

if TYPE_CHECKING:
    from ..tokenizer import Tokenizer

__all__ = [
    "generate",
    "stream",
    "decode",
    "Context",
    "crop_prompt",
    "prompt_or_start",
    "start_token",
    "check_max_new_tokens",
]


def start_token(config: Config) -> int:
    """`<|endoftext|>`, GPT-2's unconditional start, or the last id of a model whose vocabulary
    is smaller than GPT-2's."""
    return END_OF_TEXT if END_OF_TEXT < config.vocab_size else config.vocab_size - 1


def prompt_or_start(ids: Sequence[int], config: Config) -> list[int]:
    """The checked prompt; an empty one is `[start_token(config)]`."""
    return check_ids(ids, config) or [start_token(config)]


def crop_prompt(ids: Sequence[int], config: Config) -> list[int]:
    """A prompt longer than the context window keeps only its last n_ctx tokens."""
    return list(ids[-config.n_ctx :])


def check_max_new_tokens(max_new_tokens: int) -> None:
    if not isinstance(max_new_tokens, int) or isinstance(max_new_tokens, bool) or max_new_tokens < 0:
        raise GenerationError(f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")


def stream(
    engine: Engine,
    prompt_ids: Sequence[int],
    config: GenerationConfig,
    tokenizer: Tokenizer | None = None,
    *,
    sampler: Sampler | None = None,
) -> Iterator[Step]:
    """Generate one sequence, yielding a `Step` (token, text, log-probabilities, finish reason)
    as each token is produced; the last step has a finish reason. `tokenizer` is needed for the
    steps' text and for stop strings.

    - An empty prompt starts from `<|endoftext|>` (GPT-2's unconditional sampling;
      the last id in a model whose vocabulary is smaller than GPT-2's).
    - A prompt longer than the context window is cropped to its last n_ctx tokens.
    - When the context window fills, it slides: the cache is rebuilt from the
      most recent n_ctx // 2 tokens, so each rebuild is paid for by n_ctx // 2
      cheap steps.
    """
    model = engine.config
    ids = crop_prompt(prompt_or_start(prompt_ids, model), model)
    config.adjustments.check_vocabulary(model.vocab_size)
    decoder = Decoder(ids, config, tokenizer, sampler=sampler, logits=ops_for(engine))
    yield from decode(engine, decoder, Context(ids))


@dataclass
class Context:
    """The running sequence one generation extends, and the KV cache of its positions: the
    cache holds every id but those still to be run (at least the last one)."""

    ids: list[int]
    cache: Any = None  # None: a new cache is made on first use


def decode(engine: Engine, decoder: Decoder, context: Context) -> Iterator[Step]:
    """Drive `decoder` to its end on `engine`, extending `context` (whose ids end with the
    decoder's prompt and fit the window). The window slides as in `stream`. On return,
    `context.ids` has every token the decoder produced (not a stop id) and `context.cache`
    holds all of them but the last, so a later call can go on from there (`Session`)."""
    model = engine.config
    if decoder.finished:  # max_new_tokens == 0
        return
    ids = context.ids
    if context.cache is None:
        context.cache = engine.new_cache()
    logits = engine.forward(ids[len(context.cache) :], context.cache)
    while True:
        step = decoder.step(logits)
        if not (step.finish_reason == "stop" and step.token in decoder.stop_ids):
            ids.append(step.token)
        yield step
        if step.finish_reason is not None:
            return
        if len(ids) > model.n_ctx:
            del ids[: len(ids) - max(1, model.n_ctx // 2)]
            context.cache = engine.new_cache()
            logits = engine.forward(ids, context.cache)
        else:
            logits = engine.forward([step.token], context.cache)


def generate(
    engine: Engine,
    prompt_ids: Sequence[int],
    max_new_tokens: int,
    sampler: Sampler | None = None,
    stop_ids: Iterable[int] = (END_OF_TEXT,),
) -> Iterator[int]:
    """Yield new token ids one at a time, as they are produced: `stream` reduced to the ids.
    Generation stops after `max_new_tokens`, or when a token in `stop_ids` is drawn (the stop
    token itself is not yielded)."""
    config = GenerationConfig(max_new_tokens=max_new_tokens, stop_ids=tuple(stop_ids))
    for step in stream(engine, prompt_ids, config, sampler=sampler or Sampler()):
        if step.finish_reason == "stop":  # a stop id: generate() takes no stop strings
            return
        yield step.token
