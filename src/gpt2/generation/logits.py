"""Logits as the engines hand them over, and every operation the project does on them.

The engine contract (`gpt2.engines.base`) says what comes back: lists of Python floats
from an engine without batches (the pure engine), float32 C-contiguous NumPy arrays on
the host from a `BatchEngine` (the NumPy and PyTorch engines). This module is the one
place that knows both kinds. Each kind is a small object of the same operations, picked
once by whoever holds the logits for long (a decoder, a scorer, the server's prompt
scoring) and used for every token after:

    ops = ops_for(engine)       # from the engine (the contract), before any logits arrive
    ops = ops_of(logits)        # from logits in hand (a caller that was given only them)
    ops.check(row)              # NaN, +inf or nothing but -inf: a GenerationError
    ops.argmax(row)             # the greedy token: the lowest id on a tie
    ops.ranked(row, k)          # ids by (-logit, id): the k first, or all when k is 0
    ops.token_logprobs(row, token, k)        # log P(token) and the k most probable (id, log P)
    ops.rows_logprobs(rows, targets, k)      # the same for row j and targets[j], for each j
    ops.join(parts)             # [t, V] pieces of consecutive positions -> [T, V]
    ops.adjust(row, adjustments, history)    # penalties and bias, a new row of the same kind

Both kinds give the same answers: the same order (ties to the lower id), float64
arithmetic for probabilities (float32 -> float64 is exact). The list kind imports
nothing beyond the standard library (the core runs without NumPy); the array kind
imports NumPy when it is first used.

>>> row = [0.5, 2.0, 2.0, -1.0]
>>> ops = ops_of(row)
>>> ops.name, ops.argmax(row), ops.ranked(row, 2)
('list', 1, [1, 2])
>>> logprob, top = ops.token_logprobs(row, 3, 1)
>>> round(logprob, 4), [(i, round(lp, 4)) for i, lp in top]
(-3.8211, [(1, -0.8211)])
>>> ops.check([0.0, float("nan")])
Traceback (most recent call last):
...
gpt2.errors.GenerationError: the model produced NaN logits; the weights may be corrupt or the dtype too narrow for them
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import GenerationError
from .adjust import LogitAdjustments, TokenHistory, adjust_array, adjust_list

if TYPE_CHECKING:
    import numpy as np

    from ..engines.base import Engine

__all__ = [
    "LogitOps",
    "LIST",
    "ARRAY",
    "ops_for",
    "ops_of",
    "ranked",
    "log_softmax",
    "check_rows",
    "check_scaled",
]

Logprobs = tuple[float, tuple[tuple[int, float], ...]]  # log P(token), then the top (id, log P)


def _refuse(what: str) -> GenerationError:
    return GenerationError(
        f"the model produced {what} logits; the weights may be corrupt or the dtype too narrow for them"
    )


def check_scaled(top: float) -> None:
    """The largest logit once divided by the temperature must still be a number: an overflow
    there would turn every weight into NaN (`SamplingConfig.greedy` keeps the temperatures
    that could overflow a float's range away from here; a logit bias near the largest float
    can still get here)."""
    if not math.isfinite(top):
        raise GenerationError(
            "the logits divided by the temperature overflow; lower the logit bias or the temperature's inverse"
        )


class LogitOps(Protocol):
    """The operations on one kind of logits (see the module docstring)."""

    name: str

    def check(self, row: Any) -> None: ...
    def argmax(self, row: Any) -> int: ...
    def ranked(self, row: Any, top_k: int) -> Any: ...
    def token_logprobs(self, row: Any, token: int, k: int) -> Logprobs: ...
    def rows_logprobs(self, rows: Any, targets: Sequence[int], k: int) -> list[Logprobs]: ...
    def join(self, parts: list[Any]) -> Any: ...
    def adjust(self, row: Any, adjustments: LogitAdjustments, history: TokenHistory) -> Any: ...


class _ListOps:
    """Lists of Python floats: the pure engine's logits, and the algorithm as written."""

    name = "list"

    def check(self, row: Sequence[float]) -> None:
        if any(map(math.isnan, row)):
            raise _refuse("NaN")
        top = max(row)
        if top == math.inf:
            raise _refuse("+inf")
        if top == -math.inf:
            raise _refuse("all -inf")

    def argmax(self, row: Sequence[float]) -> int:
        return max(range(len(row)), key=row.__getitem__)  # max keeps the first on a tie

    def ranked(self, row: Sequence[float], top_k: int) -> list[int]:
        n = len(row)
        if 0 < top_k < n:
            return heapq.nsmallest(top_k, range(n), key=lambda i: (-row[i], i))
        return sorted(range(n), key=lambda i: (-row[i], i))

    def token_logprobs(self, row: Sequence[float], token: int, k: int) -> Logprobs:
        top = max(row)
        log_total = top + math.log(math.fsum(math.exp(v - top) for v in row))
        best = self.ranked(row, k) if k else []
        return row[token] - log_total, tuple((i, row[i] - log_total) for i in best)

    def rows_logprobs(self, rows: Sequence[Sequence[float]], targets: Sequence[int], k: int) -> list[Logprobs]:
        return [self.token_logprobs(rows[j], t, k) for j, t in enumerate(targets)]

    def join(self, parts: list[list[list[float]]]) -> list[list[float]]:
        return [row for part in parts for row in part]

    def adjust(self, row: Sequence[float], adjustments: LogitAdjustments, history: TokenHistory) -> Sequence[float]:
        return adjust_list(list(row), adjustments, history) if adjustments.active else row


ROWS_AT_ONCE = 64  # rows turned into float64 log-probabilities at a time (bounds the memory of a long prompt)


class _ArrayOps:
    """Float32 NumPy arrays on the host: the NumPy and PyTorch engines' logits."""

    name = "array"

    def check(self, row: np.ndarray) -> None:
        import numpy as np

        if np.isfinite(row).all():  # the usual case: one vectorised pass
            return
        if np.isnan(row).any():
            raise _refuse("NaN")
        if (row == np.inf).any():
            raise _refuse("+inf")
        if (row == -np.inf).all():
            raise _refuse("all -inf")

    def argmax(self, row: np.ndarray) -> int:
        import numpy as np

        return int(np.argmax(row))  # the first (lowest) id on a tie

    def ranked(self, row: np.ndarray, top_k: int) -> np.ndarray:
        return ranked(row, top_k)

    def token_logprobs(self, row: np.ndarray, token: int, k: int) -> Logprobs:
        return self.rows_logprobs(row.reshape(1, -1), [token], k)[0]

    def rows_logprobs(self, rows: np.ndarray, targets: Sequence[int], k: int) -> list[Logprobs]:
        import numpy as np

        out: list[Logprobs] = []
        for start in range(0, len(targets), ROWS_AT_ONCE):
            chunk = targets[start : start + ROWS_AT_ONCE]
            logp = log_softmax(rows[start : start + len(chunk)])  # [n, V] float64
            chosen = logp[np.arange(len(chunk)), list(chunk)].tolist()
            for row, logprob in zip(logp, chosen):
                best = ranked(row, k).tolist() if k else []
                out.append((logprob, tuple((i, float(row[i])) for i in best)))
        return out

    def join(self, parts: list[np.ndarray]) -> np.ndarray:
        import numpy as np

        return np.concatenate(parts)

    def adjust(self, row: np.ndarray, adjustments: LogitAdjustments, history: TokenHistory) -> np.ndarray:
        return adjust_array(row, adjustments, history)


LIST: LogitOps = _ListOps()
ARRAY: LogitOps = _ArrayOps()


def ops_for(engine: Engine) -> LogitOps:
    """The kind of logits `engine` returns, by the contract: arrays from a BatchEngine, lists
    from any other engine."""
    from ..engines.base import BatchEngine

    return ARRAY if isinstance(engine, BatchEngine) else LIST


def ops_of(logits: Any) -> LogitOps:
    """The kind of logits in hand (a row [V] or rows [T, V]): a list (or tuple) or an array."""
    return LIST if isinstance(logits, (list, tuple)) else ARRAY


# --- the array kind's shared pieces (the vectorised sampler and the explorer use them too) ------


def ranked(values: np.ndarray, top_k: int) -> np.ndarray:
    """Ids ordered by (-value, id); only the top_k first when 0 < top_k < len(values).

    >>> import numpy as np
    >>> ranked(np.array([0.5, 2.0, 2.0, -1.0]), 0).tolist(), ranked(np.array([0.5, 2.0, 2.0, -1.0]), 1).tolist()
    ([1, 2, 0, 3], [1])
    """
    import numpy as np

    n = len(values)
    if 0 < top_k < n:
        kth = np.partition(values, n - top_k)[n - top_k]  # the k-th largest value
        above = np.flatnonzero(values > kth)
        tied = np.flatnonzero(values == kth)[: top_k - len(above)]  # lowest ids win the ties
        ids = np.concatenate([above, tied])
        return ids[np.lexsort((ids, -values[ids]))]
    return np.argsort(-values, kind="stable")


def log_softmax(rows: np.ndarray) -> np.ndarray:
    """[..., V] logits -> float64 log-probabilities over the last axis (max subtracted)."""
    import numpy as np

    x = np.asarray(rows, dtype=np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def check_rows(rows: np.ndarray) -> None:
    """`ARRAY.check` for each row of a [B, V] batch, one vectorised pass when all is finite
    (a batched sampler checks its rows before it draws)."""
    import numpy as np

    if not np.isfinite(rows).all():
        for row in rows:
            ARRAY.check(row)
