"""The rows of the KV cache a scheduler runs its sequences in, whatever the engine.

`BatchRows` is a `BatchEngine`'s batched cache: `capacity` rows, prefilled a
span at a time (`cache.span`; a long prompt a chunk at a time, `extend`), decoded
together over the live prefix (`cache.rows(n)`), a finished row refilled by
copying the last live one into it (`copy_row`, `clear_row`). `SingleRow` is an
engine without batches (the pure engine): one sequence at a time, in a cache of
its own. Logits come back as the engine returns them (host lists or arrays: the
engine contract).

>>> from gpt2.config import Config
>>> from gpt2.params import init_params
>>> from gpt2.engines import load_engine
>>> cfg = Config(n_layer=1, n_embd=8, n_head=2, vocab_size=11, n_ctx=16)
>>> rows = SingleRow(load_engine("pure", cfg, init_params(cfg, seed=0)))
>>> len(rows.prefill(0, [[1, 2, 3]], all_logits=False)[0]), rows.length(0)
(11, 3)
>>> len(rows.extend(0, [4, 5], all_logits=True)), rows.length(0)  # [2, V]: the new positions'
(2, 5)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..engines.base import BatchEngine, BatchKVCache, Engine
from ..errors import GenerationError, Gpt2Error
from .logits import ops_of
from .loop import check_max_new_tokens, prompt_or_start

__all__ = ["BatchRows", "SingleRow", "join_logits", "fit_prompt", "prefill"]


def fit_prompt(ids: Sequence[int], max_new_tokens: int, engine: Engine) -> list[int]:
    """The prompt (empty: <|endoftext|>), cropped so that it and the new tokens fit one row of
    the window (several rows at once do not slide past it)."""
    n_ctx = engine.config.n_ctx
    check_max_new_tokens(max_new_tokens)
    if max_new_tokens >= n_ctx:
        raise GenerationError(
            f"max_new_tokens ({max_new_tokens}) must be below the context window ({n_ctx}) "
            "when generating several sequences at once"
        )
    return prompt_or_start(ids, engine.config)[-(n_ctx - max_new_tokens) :]


def prefill(engine: BatchEngine, prompts: Sequence[Sequence[int]], cache: BatchKVCache) -> Any:
    """Logits of each prompt's last position, in rows 0, 1, ... of `cache` (beam search's
    prefill): one batched pass when the lengths agree; a prompt repeated in every row (the
    beams) runs once and is copied."""
    first = list(prompts[0])
    if len(prompts) > 1 and all(list(p) == first for p in prompts):
        logits = engine.forward_batch([first], cache.row(0))[0]
        for b in range(1, len(prompts)):
            cache.copy_row(0, b)
        return [logits] * len(prompts)
    if len({len(p) for p in prompts}) == 1:
        return list(engine.forward_batch(prompts, cache))
    return [engine.forward_batch([p], cache.row(b))[0] for b, p in enumerate(prompts)]


def join_logits(parts: list[Any]) -> Any:
    """[t, V] logits of consecutive positions (lists of floats, or NumPy arrays) joined into one [T, V]."""
    return ops_of(parts[0]).join(parts)


class BatchRows:
    """A BatchEngine's batched cache: `capacity` rows."""

    def __init__(self, engine: BatchEngine, capacity: int) -> None:
        self.engine = engine
        self.capacity = capacity
        self.cache = engine.new_batch_cache(capacity)

    def prefill(self, start: int, prompts: list[list[int]], all_logits: bool) -> Any:
        view = self.cache.span(start, start + len(prompts))
        return self.engine.forward_batch(prompts, view, all_logits=all_logits)

    def extend(self, row: int, ids: list[int], all_logits: bool) -> Any:
        """More positions for one row that holds some already (a long prompt's next chunk)."""
        return self.prefill(row, [ids], all_logits)[0]

    def decode(self, tokens: list[int]) -> Any:
        return self.engine.forward_batch([[t] for t in tokens], self.cache.rows(len(tokens)))

    def move(self, source: int, target: int) -> None:
        self.cache.copy_row(source, target)

    def clear(self, row: int) -> None:
        self.cache.clear_row(row)

    def length(self, row: int) -> int:
        return int(self.cache.lengths[row])


class SingleRow:
    """An engine without batches: one sequence at a time, in a cache of its own."""

    capacity = 1

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.cache: Any = None

    def prefill(self, start: int, prompts: list[list[int]], all_logits: bool) -> Any:
        self.cache = self.engine.new_cache()
        return [self.engine.forward(prompts[0], self.cache, all_logits=all_logits)]

    def extend(self, row: int, ids: list[int], all_logits: bool) -> Any:
        return self.engine.forward(ids, self.cache, all_logits=all_logits)

    def decode(self, tokens: list[int]) -> Any:
        return [self.engine.forward(tokens, self.cache)]

    def move(self, source: int, target: int) -> None:
        raise Gpt2Error("an engine without batches has one row")

    def clear(self, row: int) -> None:
        self.cache = None

    def length(self, row: int) -> int:
        return len(self.cache) if self.cache is not None else 0
