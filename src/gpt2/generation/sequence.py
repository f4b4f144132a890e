"""What the scheduler runs and what it sends back: a `Sequence` is one choice of one request,
and its `sink` hears that choice's events.

A choice hears, in order: `PromptScored` (only with echo + logprobs), then a `Generated` for
each token (the last one carries `step.finish_reason`), or an `Ended` when something outside
the decoder stops it (the time limit, the context window), or a `Failed` at any point.

>>> from gpt2.generation import GenerationConfig
>>> heard = []
>>> seq = Sequence(0, [1, 2], GenerationConfig(max_new_tokens=3), sink=lambda i, e: heard.append(e), group="req")
>>> seq.row, seq.tokens, seq.group  # no cache row until the scheduler admits it
(-1, 0, ('req', (1, 2)))
>>> seq.cancel()  # from any thread: the scheduler drops it at its next step
>>> seq.cancelled
True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable
from collections.abc import Sequence as Seq
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import Gpt2Error
from .decoder import Decoder, GenerationConfig, Step

if TYPE_CHECKING:
    from ..tokenizer import Tokenizer

__all__ = ["Sequence", "Sink", "Event", "PromptScored", "Generated", "Ended", "Failed"]


# --- what a sequence hears -------------------------------------------------------------------


@dataclass(frozen=True)
class PromptScored:
    """The prompt's own log-probabilities (asked for with `prompt_logprobs`), as the scheduler's
    `score_prompt` made them; before any token."""

    entries: list[Any]


@dataclass(frozen=True)
class Generated:
    """One token; `step.finish_reason` set on the last."""

    step: Step


@dataclass(frozen=True)
class Ended:
    """Ended from outside the decoder (the time limit, the context window): the text it held back."""

    text: str
    reason: str


@dataclass(frozen=True)
class Failed:
    """The sequence failed: a `gpt2.generation.errors.SchedulerError` (no place, shutting down,
    a failed step) or the `Gpt2Error` its decoder raised (NaN logits)."""

    error: Gpt2Error


Event = PromptScored | Generated | Ended | Failed
Sink = Callable[[int, Event], None]


class Sequence:
    """One choice of one request, as the scheduler sees it."""

    def __init__(
        self,
        index: int,
        prompt_ids: Seq[int],
        config: GenerationConfig,
        tokenizer: Tokenizer | None = None,
        *,
        sink: Sink,
        deadline: float = math.inf,
        prompt_logprobs: int | None = None,
        group: Hashable | None = None,
        decoder: Decoder | None = None,
    ) -> None:
        """`deadline`: on the scheduler's clock (time.monotonic); `prompt_logprobs`: k to score
        the prompt itself (echo + logprobs); `group`: sequences with the same group and prompt
        share one prefill; `decoder`: one already made for this prompt and config (else one is)."""
        if not prompt_ids:
            raise Gpt2Error("a sequence needs at least one prompt token")
        self.index = index
        self.prompt_ids = list(prompt_ids)
        self.decoder = decoder or Decoder(self.prompt_ids, config, tokenizer)
        self.sink = sink
        self.deadline = deadline
        self.prompt_logprobs = prompt_logprobs
        self.group = (group, tuple(self.prompt_ids)) if group is not None else None
        self.cancelled = False
        self.row = -1  # its cache row while live
        self.token = -1  # the last token drawn: fed at the next step
        self.tokens = 0  # tokens drawn so far
        self.admitted_at = 0.0

    def cancel(self) -> None:
        """From any thread: the client went away; the scheduler frees the row at its next step."""
        self.cancelled = True
