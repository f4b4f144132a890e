"""The engine contract: what every engine offers, and the plumbing they share.

An engine is one implementation of GPT-2's forward pass over the parameter tree
(see `gpt2.params`). It holds the weights in its own layout and keeps the keys
and values of past positions in a cache, so each new token costs one position:

    cache = engine.new_cache()                   # empty; len(cache) = positions held
    logits = engine.forward(ids, cache)          # [V]: the next-token logits after ids
    logits = engine.forward([token], cache)      # one more position
    engine.forward(ids, cache, all_logits=True)  # [T, V]: every new position's logits
    engine.forward(ids, cache, recorder=r)       # also hand r each layer's attention and residual stream
    engine.close()                               # free worker processes, if any

A :class:`BatchEngine` also runs several sequences at once, so that they share
each read of the weights (batched sampling, beam search, a server's continuous
batching):

    cache = engine.new_batch_cache(4)            # 4 rows, each with its own length
    engine.forward_batch(rows, cache)            # rows: B lists of T ids -> [B, V]

What comes back is one type per kind of engine, on the host, whatever the engine
computes in or on (the contract; `tests/test_engine_contract.py` checks every engine):

- an `Engine` without batches (the pure engine): lists of Python floats, [V] or [T][V];
- a `BatchEngine` (the NumPy and PyTorch engines): float32, C-contiguous NumPy arrays in
  host memory, from `forward` as from `forward_batch`; an engine on a GPU copies its
  logits to the host once per pass, here, and nobody after it converts anything.

A recorder is handed values of the same kinds: nested lists from the pure engine, NumPy
arrays on the host from the others (float32; float64 from a NumPy engine computing in it).
Every operation on logits (checks, arg-max, top-k, log-softmax, joining, the sampler's
choice of implementation) lives in `gpt2.generation.logits`, which picks the kind once
from the engine (`ops_for`).
Sampling on the device (a GPU drawing the token itself, so that only an id crosses to the
host) is a deliberate possible exception to this contract, not taken and not measured here:
at 50,257 float32 logits the copy is 200 KB per row per step.

>>> from gpt2.config import Config
>>> check_ids([1, 2], Config(n_layer=1, n_embd=8, n_head=2, vocab_size=11, n_ctx=4))
[1, 2]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, TypeVar, runtime_checkable

from ..config import Config
from ..errors import GenerationError

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "Logits",
    "BatchLogits",
    "Engine",
    "BatchEngine",
    "BatchKVCache",
    "check_ids",
    "check_window",
    "check_rows",
]


# What `forward` returns: a row [V] or rows [T, V] of logits on the host, lists of floats
# (list[float] | list[list[float]]) from an engine without batches, a float32 C-contiguous
# np.ndarray from a BatchEngine (see the module docstring). Any to the type checker, which
# cannot tell the engines apart: each engine annotates its own; the contract test checks them.
Logits: TypeAlias = Any
BatchLogits: TypeAlias = "np.ndarray"  # what `forward_batch` returns: float32 [B, V] or [B, T, V], host, C-contiguous


@runtime_checkable
class Engine(Protocol):
    """Every engine: a name, the model's config, a cache, and a forward pass."""

    name: str
    config: Config
    notices: Sequence[str]  # what the engine chose for the user that they should hear (the CLI prints them)
    kv_bytes_per_position: int  # bytes one position of one row takes in the KV cache (keys and values)

    def details(self) -> list[str]:
        """How it computes on this machine, a line each, for a -v listing (may be empty)."""
        ...

    def free_memory(self) -> int | None:
        """Bytes still free where the engine keeps its caches when that is a device's memory (a
        GPU); None when it is the host's, which the caller asks the operating system for."""
        ...

    def new_cache(self) -> Any:
        """An empty KV cache; `len(cache)` is the number of positions it holds."""
        ...

    def forward(self, ids: Sequence[int], cache: Any, *, all_logits: bool = False, recorder: Any = None) -> Logits:
        """Run `ids` at the positions after those already in `cache`, append their keys and
        values to it, and return the logits of the last position (V floats), or of every new
        position ([T, V]) when `all_logits` is true: lists of floats from an engine without
        batches, a float32 C-contiguous host NumPy array from a BatchEngine. A `recorder` (see `gpt2.engines.recorder`)
        is handed each layer's attention probabilities and residual stream on the way."""
        ...

    def close(self) -> None:
        """Release what the engine holds beyond memory (the pure engine's worker processes)."""
        ...


@runtime_checkable
class BatchEngine(Engine, Protocol):
    """An engine that also runs several sequences in one pass (the NumPy and PyTorch engines)."""

    def new_batch_cache(self, batch_size: int) -> BatchKVCache:
        """An empty cache of `batch_size` rows."""
        ...

    def forward_batch(
        self, rows: Sequence[Sequence[int]], cache: BatchKVCache, *, all_logits: bool = False
    ) -> BatchLogits:
        """T new ids in each of the cache's B rows (the rows may hold different numbers of past
        positions) -> logits [B, V] of each row's last new position ([B, T, V] if all_logits),
        a float32 C-contiguous NumPy array on the host."""
        ...


# --- the checks every engine makes ------------------------------------------------------------


def check_ids(ids: Sequence[int], config: Config) -> list[int]:
    """The ids as a list, each a Python int inside the vocabulary."""
    out = list(ids)
    for t in out:
        if not isinstance(t, int) or isinstance(t, bool) or not 0 <= t < config.vocab_size:
            raise GenerationError(f"token id {t!r} is outside the vocabulary [0, {config.vocab_size})")
    return out


def check_window(cached: int, new: int, config: Config) -> None:
    """An engine's cache holds at most n_ctx positions."""
    if cached + new > config.n_ctx:
        raise GenerationError(f"{cached} cached + {new} new positions exceed the context window ({config.n_ctx})")


def check_rows(rows: Sequence[Sequence[int]], cache: BatchKVCache, config: Config) -> list[list[int]]:
    """A batch's new ids: one row per cache row, all of the same length (at least 1), every
    id in the vocabulary, and room for them in the context window of the longest row."""
    if isinstance(rows, (str, bytes)) or len(rows) != cache.batch_size:
        raise GenerationError(f"{len(rows)} rows for a cache of {cache.batch_size}")
    checked = [check_ids(row, config) for row in rows]
    lengths = {len(row) for row in checked}
    if len(lengths) != 1 or 0 in lengths:
        raise GenerationError("forward needs at least one token id in every row, all rows the same length")
    check_window(len(cache), lengths.pop(), config)
    return checked


# --- the batched KV cache ------------------------------------------------------------------------

C = TypeVar("C", bound="BatchKVCache")


class BatchKVCache:
    """Keys and values of every position seen so far, preallocated for the whole window.

    keys, values: [batch, n_layer, n_head, n_ctx, head_dim] arrays of the engine's framework
    (NumPy or torch: the operations below are written in the indexing the two share);
    lengths: [batch] integers on the host, the positions each row holds, so that a step never
    waits on a device to learn where to write. `len(cache)` is the longest row's length (for a
    one-row cache, simply the positions held).
    """

    def __init__(self, keys: Any, values: Any, lengths: Any) -> None:
        self.keys, self.values, self.lengths = keys, values, lengths

    def __len__(self) -> int:
        return int(self.lengths.max()) if self.batch_size else 0

    @property
    def batch_size(self) -> int:
        return len(self.lengths)

    def past(self) -> list[int]:
        """Each row's length, as Python ints."""
        return [int(n) for n in self.lengths.tolist()]

    # --- views (they share this cache's memory: filling one fills this) -------------------------

    def row(self: C, b: int) -> C:
        """Row `b` as a one-row cache."""
        return type(self)(self.keys[b : b + 1], self.values[b : b + 1], self.lengths[b : b + 1])

    def rows(self: C, n: int) -> C:
        """The first `n` rows as an n-row cache (continuous batching keeps its live rows first)."""
        return type(self)(self.keys[:n], self.values[:n], self.lengths[:n])

    def span(self: C, start: int, stop: int) -> C:
        """Rows start..stop-1 as a cache (a server prefills several new requests in one pass)."""
        return type(self)(self.keys[start:stop], self.values[start:stop], self.lengths[start:stop])

    # --- what a forward pass does with it -------------------------------------------------------

    def write(self, layer: int, k: Any, v: Any, past: Sequence[int]) -> tuple[Any, Any]:
        """Store one layer's new keys and values, k and v [B, H, T, hd], after each row's `past`
        positions, and return that layer's keys and values up to the longest row,
        [B, H, max(past) + T, hd] (views: nothing is copied)."""
        keys, values = self.keys[:, layer], self.values[:, layer]  # [B, H, n_ctx, hd]
        T = k.shape[2]
        if all(p == past[0] for p in past):  # one slice for the whole batch
            keys[:, :, past[0] : past[0] + T] = k
            values[:, :, past[0] : past[0] + T] = v
        else:
            for b, p in enumerate(past):
                keys[b, :, p : p + T] = k[b]
                values[b, :, p : p + T] = v[b]
        seen = max(past) + T
        return keys[:, :, :seen], values[:, :, :seen]

    def advance(self, n: int) -> None:
        """Every row now holds `n` more positions (after all layers have been written)."""
        self.lengths += n

    # --- rearranging rows -----------------------------------------------------------------------

    def reorder(self, rows: Sequence[int]) -> None:
        """Row i becomes a copy of old row rows[i] (beam search keeps its survivors)."""
        order = [int(r) for r in rows]
        if order == list(range(self.batch_size)):
            return
        held = len(self)  # copy only the filled part of the window
        self.keys[:, :, :, :held] = self.keys[order, :, :, :held]
        self.values[:, :, :, :held] = self.values[order, :, :, :held]
        self.lengths[:] = self.lengths[order]

    def copy_row(self, source: int, target: int) -> None:
        """Row `target` becomes a copy of row `source` (a finished row's place is refilled)."""
        if source == target:
            return
        held = int(self.lengths[source])
        self.keys[target, :, :, :held] = self.keys[source, :, :, :held]
        self.values[target, :, :, :held] = self.values[source, :, :, :held]
        self.lengths[target] = self.lengths[source]

    def clear_row(self, b: int) -> None:
        """Row `b` holds no positions any more (its memory is reused as it refills)."""
        self.lengths[b] = 0
