"""One sequence being generated, step by step, whoever computes its logits.

`GenerationConfig` is everything a caller can ask of generation (the sampler's
settings, the logit adjustments, stops, log-probabilities, the seed), the one
object the command line, the Python API and the server build. A `Decoder` holds
one sequence's state: given the logits of its next position it picks the token
(adjust, then sample with the sequence's own RNG), and returns a `Step` with the
text the token adds, its log-probability and the alternatives when asked, and
why generation ended when it did. The loop that feeds it logits is elsewhere:
`gpt2.generation.loop.stream` for one sequence, a server's scheduler for many
sharing one batch. Because each sequence has its own sampler and history, its
tokens do not depend on what else runs beside it.

>>> from gpt2.tokenizer import Tokenizer
>>> tok = Tokenizer.gpt2()
>>> decoder = Decoder(tok.encode("Hi"), GenerationConfig(max_new_tokens=2, temperature=0), tok)
>>> logits = [0.0] * 50257
>>> logits[15496] = 9.0                     # token 15496 is "Hello"
>>> step = decoder.step(logits)
>>> step.token, step.text, step.finish_reason
(15496, 'Hello', None)
>>> decoder.step(logits).finish_reason      # the second of max_new_tokens=2
'length'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..config import END_OF_TEXT
from ..errors import GenerationError
from .adjust import LogitAdjustments, TokenHistory
from .logits import LogitOps, ops_of
from .sampling import DEFAULT_TOP_K, Sampler, SamplingConfig
from .stops import StopStrings, check_stop_strings

if TYPE_CHECKING:
    from ..tokenizer import Tokenizer

__all__ = ["GenerationConfig", "Step", "Decoder"]

MAX_TOP_LOGPROBS = 20
FINISH_REASONS = ("stop", "length")


@dataclass(frozen=True)
class GenerationConfig:
    """What to generate and how. Every field has the meaning of the same-named option of
    `gpt2 generate`; see `SamplingConfig` and `LogitAdjustments` for the details."""

    max_new_tokens: int = 50
    # the sampler (SamplingConfig): temperature 0 (below 1e-6) = greedy
    temperature: float = 1.0
    top_k: int = DEFAULT_TOP_K  # 40, as gpt2 generate; 0 = no limit
    top_p: float = 1.0
    # the logits before sampling (LogitAdjustments)
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: Mapping[int, float] = field(default_factory=dict)
    # where to stop: a token id (not part of the output), or text (cut from the output)
    stop_ids: tuple[int, ...] = (END_OF_TEXT,)
    stop: tuple[str, ...] = ()
    # None: no log-probabilities; 0: the chosen token's; k: also the k most probable tokens
    logprobs: int | None = None
    seed: int | None = None  # None: a seed is drawn (and recorded in the Decoder)

    def __post_init__(self) -> None:
        n = self.max_new_tokens
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise GenerationError(f"max_new_tokens must be an integer >= 0, got {n!r}")
        object.__setattr__(self, "stop", check_stop_strings(self.stop))
        object.__setattr__(self, "stop_ids", tuple(self.stop_ids))
        for t in self.stop_ids:
            if isinstance(t, bool) or not isinstance(t, int) or t < 0:
                raise GenerationError(f"stop ids must be token ids (integers >= 0), got {t!r}")
        k = self.logprobs
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= MAX_TOP_LOGPROBS):
            raise GenerationError(f"logprobs must be an integer in [0, {MAX_TOP_LOGPROBS}], got {k!r}")
        s = self.seed
        if s is not None and (isinstance(s, bool) or not isinstance(s, int) or not 0 <= s < 2**64):
            raise GenerationError(f"seed must be an integer in [0, 2**64), got {s!r}")
        self.sampling  # noqa: B018  (validates temperature, top_k, top_p)
        self.adjustments  # noqa: B018  (validates the penalties and the bias)

    @property
    def sampling(self) -> SamplingConfig:
        return SamplingConfig(temperature=self.temperature, top_k=self.top_k, top_p=self.top_p)

    @property
    def adjustments(self) -> LogitAdjustments:
        return LogitAdjustments(
            repetition_penalty=self.repetition_penalty,
            presence_penalty=self.presence_penalty,
            frequency_penalty=self.frequency_penalty,
            logit_bias=self.logit_bias,
        )

    def replace(self, **changes: Any) -> GenerationConfig:
        import dataclasses

        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class Step:
    """What one step produced."""

    token: int  # the token drawn (a stop id when the step ended generation on one)
    text: str  # the text this step adds to the output ("" while it may be the start of a stop string)
    logprob: float | None  # log P(token) under the model (natural log), when logprobs were asked for
    top: tuple[tuple[int, float], ...]  # the `logprobs` most probable (token, logprob), best first
    finish_reason: str | None  # "stop" (a stop id or stop string), "length", or None: not finished


class Decoder:
    """One sequence's generation state (see the module docstring).

    `ids` holds the tokens generated so far (a stop id that ended generation is not
    among them; the token that completed a stop string is), `text` the text released
    so far (a stop string and what follows it are cut), `seed` the seed its sampler
    started from, `finish_reason` why it ended (None while it goes on).
    """

    def __init__(
        self,
        prompt_ids: Sequence[int],
        config: GenerationConfig,
        tokenizer: Tokenizer | None = None,
        *,
        sampler: Sampler | None = None,
        logits: LogitOps | None = None,
    ) -> None:
        """`tokenizer` is needed for text (and stop strings); `sampler` replaces the one the
        config would make (to continue a sampler's random stream); `logits` is the kind of logits
        the engine returns (`gpt2.generation.logits.ops_for(engine)`): the implementation of every
        step (adjust, sample, log-probabilities) is chosen for it here, once (without it, from the
        first step's logits)."""
        if config.stop and tokenizer is None:
            raise GenerationError("stop strings need a tokenizer")
        self.config = config
        self.prompt_ids = list(prompt_ids)
        self.sampler = sampler or Sampler(config.sampling, seed=config.seed)
        self.seed = self.sampler.seed
        self.ops: LogitOps | None = None
        if logits is not None:
            self._use(logits)
        self.adjustments = config.adjustments
        self.history = TokenHistory(self.prompt_ids)
        self.stop_ids = frozenset(config.stop_ids)
        self.ids: list[int] = []
        self.text = ""
        self.finish_reason: str | None = None if config.max_new_tokens > 0 else "length"
        self._stream = None
        self._stops = StopStrings(config.stop)
        if tokenizer is not None:
            from ..tokenizer import StreamDecoder

            self._stream = StreamDecoder(tokenizer)

    def _use(self, ops: LogitOps) -> LogitOps:
        self.ops = ops
        self.sampler.use(ops)
        return ops

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None

    def step(self, logits: Any) -> Step:
        """Pick the next token from the logits of the sequence's next position."""
        return self.accept(self.sampler.sample(self.adjusted(logits)), logits)

    def adjusted(self, logits: Any) -> Any:
        """The logits this sequence's sampler draws from: the model's `logits`, after the
        sequence's penalties and bias. A batched sampler (the scheduler's) draws every row's
        token from these at once with each row's own sampler, then calls `accept`."""
        if self.finished:
            raise GenerationError("this sequence has finished generating")
        ops = self.ops or self._use(ops_of(logits))
        return ops.adjust(logits, self.adjustments, self.history)

    def accept(self, token: int, logits: Any) -> Step:
        """Go on with `token`, drawn by this decoder's sampler from `adjusted(logits)` (`logits`:
        the model's own, for the log-probabilities)."""
        if self.finished:
            raise GenerationError("this sequence has finished generating")
        ops = self.ops or self._use(ops_of(logits))
        logprob: float | None = None
        top: tuple[tuple[int, float], ...] = ()
        if self.config.logprobs is not None:  # the model's own logits (before penalties, bias, temperature)
            logprob, top = ops.token_logprobs(logits, token, self.config.logprobs)
        if token in self.stop_ids:
            return Step(token, self._finish("stop"), logprob, top, "stop")
        self.ids.append(token)
        self.history.add(token)
        text = self._stops.feed(self._stream.feed(token)) if self._stream is not None else ""
        reason = "stop" if self._stops.stopped else "length" if len(self.ids) >= self.config.max_new_tokens else None
        if reason is not None:
            text += self._finish(reason)
        self.text += text
        return Step(token, text, logprob, top, reason)

    def finish(self, reason: str) -> str:
        """End the sequence from outside (e.g. "length" when the context window is full);
        returns the text that was still held back."""
        text = self._finish(reason)
        self.text += text
        return text

    def _finish(self, reason: str) -> str:
        if reason not in FINISH_REASONS:
            raise GenerationError(f"finish reason must be one of {FINISH_REASONS}, got {reason!r}")
        self.finish_reason = reason
        if self._stream is None or self._stops.stopped:
            return ""
        return self._stops.feed(self._stream.flush()) + self._stops.flush()
