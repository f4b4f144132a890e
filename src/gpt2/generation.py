"""The auto-regressive loop shared by every engine.

>>> from gpt2.params import init_params
>>> from gpt2.engines import load_engine
>>> cfg = Config(n_layer=1, n_embd=8, n_head=2, vocab_size=11, n_ctx=16)
>>> engine = load_engine("pure", cfg, init_params(cfg, seed=0))
>>> ids = list(generate(engine, [1, 2, 3], max_new_tokens=4, sampler=Sampler(SamplingConfig(temperature=0))))
>>> len(ids)
4
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from .config import Config
from .errors import GenerationError
from .sampling import Sampler, SamplingConfig

END_OF_TEXT = 50256

__all__ = ["generate", "crop_prompt", "pick", "Sampler", "SamplingConfig", "END_OF_TEXT"]


def check_ids(ids: Sequence[int], config: Config) -> list[int]:
    out = list(ids)
    for t in out:
        if not isinstance(t, int) or isinstance(t, bool) or not 0 <= t < config.vocab_size:
            raise GenerationError(f"token id {t!r} is outside the vocabulary [0, {config.vocab_size})")
    return out


def prompt_or_start(ids: Sequence[int], config: Config) -> list[int]:
    """The checked prompt; an empty one is `<|endoftext|>` (GPT-2's unconditional start), or
    the last id of a model whose vocabulary is smaller than GPT-2's."""
    start = END_OF_TEXT if END_OF_TEXT < config.vocab_size else config.vocab_size - 1
    return check_ids(ids, config) or [start]


def check_window(cached: int, new: int, config: Config) -> None:
    """An engine's cache holds at most n_ctx positions."""
    if cached + new > config.n_ctx:
        raise GenerationError(f"{cached} cached + {new} new positions exceed the context window ({config.n_ctx})")


def pick(engine, logits, sampler: Sampler) -> int:
    """The sampler's choice. An engine may carry a vectorised copy of the sampling algorithm
    (`engine.sample(logits, sampler)`): the same token from the same single draw, without
    sorting 50257 Python floats."""
    fast = getattr(engine, "sample", None)
    return fast(logits, sampler) if fast is not None else sampler.sample(logits)


def crop_prompt(ids: Sequence[int], config: Config) -> list[int]:
    """A prompt longer than the context window keeps only its last n_ctx tokens."""
    return list(ids[-config.n_ctx :])


def generate(
    engine,
    prompt_ids: Sequence[int],
    max_new_tokens: int,
    sampler: Sampler | None = None,
    stop_ids: Iterable[int] = (END_OF_TEXT,),
) -> Iterator[int]:
    """Yield new token ids one at a time, as they are produced.

    - An empty prompt starts from `<|endoftext|>` (GPT-2's unconditional sampling;
      the last id in a model whose vocabulary is smaller than GPT-2's).
    - A prompt longer than the context window is cropped to its last n_ctx tokens.
    - Generation stops after `max_new_tokens`, or when a token in `stop_ids` is
      drawn; the stop token itself is not yielded.
    - When the context window fills, it slides: the cache is rebuilt from the
      most recent n_ctx // 2 tokens, so each rebuild is paid for by n_ctx // 2
      cheap steps.
    """
    config: Config = engine.config
    if not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise GenerationError(f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")
    sampler = sampler or Sampler()
    stop = frozenset(stop_ids)
    ids = crop_prompt(prompt_or_start(prompt_ids, config), config)
    if max_new_tokens == 0:
        return
    cache = engine.new_cache()
    logits = engine.forward(ids, cache)
    for produced in range(1, max_new_tokens + 1):
        token = pick(engine, logits, sampler)
        if token in stop:
            return
        yield token
        if produced == max_new_tokens:
            return
        ids.append(token)
        if len(ids) > config.n_ctx:
            ids = ids[-max(1, config.n_ctx // 2) :]
            cache = engine.new_cache()
            logits = engine.forward(ids, cache)
        else:
            logits = engine.forward([token], cache)
