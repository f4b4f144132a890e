"""Log-probabilities in OpenAI's completions format, and which of them go out with which text.

A choice's `logprobs` object holds four parallel lists: `tokens` (each token's
text), `token_logprobs` (natural log), `top_logprobs` (the `logprobs` most
probable alternatives at that position, as {token text: logprob}) and
`text_offset` (where the token starts in the choice's text). With `echo`,
the prompt's own tokens come first; the first prompt token has no context, so
its logprob and alternatives are null, as OpenAI sends them. Summing the
rest gives the prompt's log-likelihood, so a client gets perplexity over HTTP.

A token whose bytes are not UTF-8 on their own (one byte of "é") is shown as
OpenAI shows it: "bytes:\\xc3". Generated text may be held back (a possible
start of a stop string, half a character); a token goes out with the text it
starts in, and a token that starts inside a stop string that was cut is
dropped, so streamed and non-streamed responses list the same tokens.

>>> from gpt2.tokenizer import Tokenizer
>>> tok = Tokenizer.gpt2()
>>> token_text(tok, 15496), token_text(tok, tok.encode("é")[0])
('Hello', 'é')
>>> out = to_json([TokenLogprob(15496, "Hello", 0, None, None), TokenLogprob(995, " world", 5, -2.5, {" world": -2.5})])
>>> out["tokens"], out["token_logprobs"], out["top_logprobs"], out["text_offset"]
(['Hello', ' world'], [None, -2.5], [None, {' world': -2.5}], [0, 5])
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..generation import Step
from ..generation.logits import ops_of
from ..tokenizer import StreamDecoder, Tokenizer

__all__ = ["TokenLogprob", "LogprobTrack", "token_text", "prompt_logprobs", "to_json", "prompt_offsets"]


@dataclass(frozen=True)
class TokenLogprob:
    token: int
    text: str  # the token as OpenAI shows it
    offset: int  # where it starts in the choice's text
    logprob: float | None  # None: the first prompt token
    top: dict[str, float] | None


def token_text(tokenizer: Tokenizer, token: int) -> str:
    data = tokenizer.decode_single_token_bytes(token)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return "bytes:" + "".join(f"\\x{b:02x}" for b in data)


def top_dict(tokenizer: Tokenizer, top: Iterable[tuple[int, float]]) -> dict[str, float]:
    return {token_text(tokenizer, t): lp for t, lp in top}


def to_json(entries: Sequence[TokenLogprob]) -> dict[str, list[Any]]:
    return {
        "tokens": [e.text for e in entries],
        "token_logprobs": [e.logprob for e in entries],
        "top_logprobs": [e.top for e in entries],
        "text_offset": [e.offset for e in entries],
    }


def prompt_offsets(tokenizer: Tokenizer, ids: Sequence[int]) -> list[int]:
    """Where each token starts in the decoded text (a character split across tokens starts
    where its first token does)."""
    stream = StreamDecoder(tokenizer)
    offsets, chars = [], 0
    for t in ids:
        offsets.append(chars)
        chars += len(stream.feed(t))
    return offsets


def prompt_logprobs(tokenizer: Tokenizer, ids: Sequence[int], logits: Any, k: int) -> list[TokenLogprob]:
    """The prompt's own tokens: logits [T, V] of every prompt position (row j predicts ids[j + 1])."""
    offsets = prompt_offsets(tokenizer, ids)
    entries = [TokenLogprob(ids[0], token_text(tokenizer, ids[0]), 0, None, None)]
    scored = ops_of(logits).rows_logprobs(logits, ids[1:], k)
    for j, (logprob, top) in enumerate(scored, start=1):
        entries.append(
            TokenLogprob(ids[j], token_text(tokenizer, ids[j]), offsets[j], logprob, top_dict(tokenizer, top))
        )
    return entries


class LogprobTrack:
    """One choice's generated tokens and when each goes out (see the module docstring).

    `add(step)` for every generated token (not a stop id), `release(n)` once the first n
    characters of the generated text have gone out, `finish(n)` when the text is final.
    `base` is where the generated text starts in the choice's text (the echoed prompt's length)."""

    def __init__(self, tokenizer: Tokenizer, base: int = 0) -> None:
        self.tokenizer = tokenizer
        self.base = base
        self._stream = StreamDecoder(tokenizer)
        self._chars = 0  # characters of the generated text so far, stop strings included
        self._pending: deque[TokenLogprob] = deque()

    def add(self, step: Step) -> None:
        offset = self._chars
        self._chars += len(self._stream.feed(step.token))
        top = top_dict(self.tokenizer, step.top)
        self._pending.append(
            TokenLogprob(step.token, token_text(self.tokenizer, step.token), offset, step.logprob, top)
        )

    def release(self, released_chars: int) -> list[TokenLogprob]:
        out = []
        while self._pending and self._pending[0].offset < released_chars:
            e = self._pending.popleft()
            out.append(TokenLogprob(e.token, e.text, self.base + e.offset, e.logprob, e.top))
        return out

    def finish(self, final_chars: int) -> list[TokenLogprob]:
        out = self.release(final_chars)
        self._pending.clear()  # tokens that start inside a stop string that was cut
        return out
