"""Scoring a text: the log-probability the model gives each of its tokens, and perplexity.

`score(engine, ids)` works with every engine. Token i (from the second on) is
scored given all the tokens before it; the first token has no context and is
not scored, unless `prepend_eot` puts `<|endoftext|>` before it, as GPT-2 saw
at the start of its training documents.

Texts longer than the context window are scored with a sliding window: each
window holds n_ctx tokens and starts `stride` tokens (default n_ctx // 2) after
the previous one; it scores only the tokens the previous window did not, so
every token is scored exactly once, with at least n_ctx - stride tokens of
context (except near the start). A smaller stride gives more context and
costs more forward passes.

>>> from gpt2.config import Config
>>> from gpt2.params import init_params
>>> from gpt2.engines import load_engine
>>> cfg = Config(n_layer=1, n_embd=8, n_head=2, vocab_size=11, n_ctx=4)
>>> result = score(load_engine("pure", cfg, init_params(cfg, seed=0)), [1, 2, 3, 4, 5, 6])
>>> len(result.logprobs), round(result.perplexity) in range(5, 20)
(5, True)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from .config import END_OF_TEXT
from .engines.base import Engine, Logits
from .errors import Gpt2Error
from .generation.logits import LogitOps, ops_for


class ScoringError(Gpt2Error, ValueError):
    """Nothing to score, or a bad window setting."""


@dataclass(frozen=True)
class ScoreResult:
    ids: list[int]  # the scored sequence (with the prepended <|endoftext|>, if any)
    logprobs: list[float]  # logprobs[i] = log P(ids[i + 1] | ids[: i + 1]), natural log
    windows: int = field(default=1)  # forward passes used (1 when the text fits the window)

    @property
    def nll(self) -> float:
        """Mean negative log-likelihood per scored token (nats)."""
        return -math.fsum(self.logprobs) / len(self.logprobs)

    @property
    def perplexity(self) -> float:
        return math.exp(self.nll)

    @property
    def total_logprob(self) -> float:
        return math.fsum(self.logprobs)


def score(engine: Engine, ids: Sequence[int], *, stride: int | None = None, prepend_eot: bool = False) -> ScoreResult:
    """Per-token log-probabilities of `ids` under `engine`'s model (see the module docstring)."""
    ids = ([END_OF_TEXT] if prepend_eot else []) + list(ids)
    if len(ids) < 2:
        raise ScoringError("need at least two tokens to score (the first one is only context)")
    n_ctx = engine.config.n_ctx
    stride = n_ctx // 2 if stride is None else stride
    if n_ctx < 2:
        raise ScoringError("a context window of one token cannot score anything")
    if not isinstance(stride, int) or isinstance(stride, bool) or not 1 <= stride < n_ctx:
        raise ScoringError(f"stride must be in [1, {n_ctx - 1}], got {stride!r}")
    ops = ops_for(engine)  # the kind of logits the engine returns
    logprobs: list[float] = []
    windows = 0
    scored_until = 1  # ids[:scored_until] need no more scoring (the first has no context)
    start = 0
    while scored_until < len(ids):
        window = ids[start : start + n_ctx]
        logits = engine.forward(window, engine.new_cache(), all_logits=True)  # [len(window), V]
        windows += 1
        # position j of the window predicts window[j + 1] = ids[start + j + 1]
        first = scored_until - start - 1
        targets = window[first + 1 :]
        logprobs.extend(token_logprobs(ops, logits, first, targets))
        scored_until = start + len(window)
        start += stride
    return ScoreResult(ids, logprobs, windows)


def token_logprobs(ops: LogitOps, logits: Logits, first: int, targets: Sequence[int]) -> list[float]:
    """log_softmax(logits[first + j])[targets[j]] for each j, in float64 (logits of the kind `ops`)."""
    return [logprob for logprob, _ in ops.rows_logprobs(logits[first : first + len(targets)], targets, 0)]
