"""A `/v1/completions` request from checked fields to OpenAI's response, streamed or not.

`prepare` applies what needs the model and the server's limits (the model's
name, the prompts' ids and lengths, the context window, the choice count) and
turns each choice into a `GenerationConfig`; choice i of a request seeded s is
seeded s + i, as row i of `gpt2 generate --num-samples` is. A `Completion`
puts the choices' sequences on the scheduler and turns the events they send
back into pieces: text, the log-probabilities of the tokens that text starts
with, and a finish reason. A stream sends each piece as a chunk as it comes;
a plain response joins the same pieces, so both carry the same text and
tokens by construction.

>>> from gpt2.config import Config
>>> from gpt2.tokenizer import Tokenizer
>>> from gpt2.server.schemas import parse_completion
>>> p = parse_completion({"model": "m", "prompt": ["Hi", "Yo"], "n": 2, "seed": 7, "max_tokens": 4})
>>> prepared = prepare(p, "m", Tokenizer.gpt2(), Config(n_layer=1, n_embd=8, n_head=2, n_ctx=16), ServerSettings())
>>> [(c.prompt, c.config.seed) for c in prepared.choices]
[(0, 7), (0, 8), (1, 9), (1, 10)]
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from ..config import Config
from ..errors import GenerationError
from ..generation import GenerationConfig
from ..generation.errors import SchedulerError
from ..generation.loop import start_token
from ..generation.scheduler import Scheduler
from ..generation.sequence import Event, Failed, Generated, PromptScored, Sequence
from ..tokenizer import Tokenizer, TokenizerError
from .errors import ApiError, bad_request, context_length_exceeded, scheduler_error
from .logprobs import LogprobTrack, TokenLogprob, to_json
from .schemas import CompletionParams, check_model
from .settings import ServerSettings

__all__ = ["prepare", "Prepared", "Completion", "Piece", "error_chunk"]


@dataclass(frozen=True)
class Choice:
    prompt: int  # index into Prepared.prompts
    config: GenerationConfig


@dataclass(frozen=True)
class Prepared:
    params: CompletionParams
    prompts: list[list[int]]  # ids, as fed to the model
    choices: list[Choice]  # prompt-major: choice i = prompt i // n, sample i % n

    @property
    def prompt_tokens(self) -> int:
        return sum(len(p) for p in self.prompts)


def prepare(
    params: CompletionParams, model_name: str, tokenizer: Tokenizer, config: Config, settings: ServerSettings
) -> Prepared:
    """Everything about a request that needs the model and the limits (see the module docstring)."""
    check_model(params.model, model_name)
    count = len(params.prompts) * params.n
    if count > settings.max_choices:
        raise bad_request(
            f"{len(params.prompts)} prompts x n={params.n} = {count} completions; "
            f"this server makes at most {settings.max_choices} per request",
            "n",
        )
    n_ctx = config.n_ctx
    prompt_limit = min(n_ctx, settings.max_prompt_tokens or n_ctx)
    token_limit = min(n_ctx, settings.max_tokens or n_ctx)
    requested = params.max_tokens
    if requested is not None and requested > token_limit:
        if not params.max_tokens_given:  # OpenAI's default of 16, above this server's limit
            requested = token_limit
        elif token_limit < n_ctx:
            raise bad_request(f"max_tokens is {requested}; this server allows at most {token_limit}", "max_tokens")
    outside = [t for t in params.logit_bias if t >= config.vocab_size]
    if outside:
        raise bad_request(
            f"logit_bias names token {outside[0]}, outside the vocabulary [0, {config.vocab_size})", "logit_bias"
        )
    prompts = [_prompt_ids(p, tokenizer, config) for p in params.prompts]
    eot = tokenizer.eot_token
    stop_ids = () if params.ignore_eos or eot is None or eot >= config.vocab_size else (eot,)
    choices = []
    for i, ids in enumerate(prompts):
        if len(ids) > prompt_limit:
            if prompt_limit < n_ctx:
                raise bad_request(
                    f"the prompt has {len(ids)} tokens; this server accepts at most {prompt_limit}", "prompt"
                )
            raise context_length_exceeded(len(ids), requested or 0, n_ctx)
        max_tokens = requested if requested is not None else min(token_limit, n_ctx - len(ids))
        if len(ids) + max_tokens > n_ctx:
            raise context_length_exceeded(len(ids), max_tokens, n_ctx)
        for j in range(params.n):
            seed = None if params.seed is None else (params.seed + i * params.n + j) % 2**64
            try:
                generation = GenerationConfig(
                    max_new_tokens=max_tokens,
                    temperature=params.temperature,
                    top_k=params.top_k,
                    top_p=params.top_p,
                    repetition_penalty=params.repetition_penalty,
                    presence_penalty=params.presence_penalty,
                    frequency_penalty=params.frequency_penalty,
                    logit_bias=params.logit_bias,
                    stop_ids=stop_ids,
                    stop=params.stop,
                    logprobs=params.logprobs,
                    seed=seed,
                )
            except GenerationError as exc:  # the schema checks should have caught it; say so anyway
                raise bad_request(str(exc)) from None
            choices.append(Choice(i, generation))
    return Prepared(params, prompts, choices)


def _prompt_ids(prompt: str | tuple[int, ...], tokenizer: Tokenizer, config: Config) -> list[int]:
    """Text (special tokens such as <|endoftext|> written out count as themselves, as in
    `gpt2 generate`) or ids; an empty prompt starts from <|endoftext|>, as OpenAI's does."""
    if isinstance(prompt, str):
        try:
            ids = tokenizer.encode(prompt, allowed_special="all")
        except TokenizerError as exc:
            raise bad_request(str(exc), "prompt") from None
    else:
        ids = list(prompt)
    outside = [t for t in ids if t >= config.vocab_size]
    if outside:
        raise bad_request(f"token id {outside[0]} is outside the vocabulary [0, {config.vocab_size})", "prompt")
    return ids or [start_token(config)]


# --- a request in flight -------------------------------------------------------------------


@dataclass
class Piece:
    """What one event adds to one choice."""

    index: int
    text: str
    logprobs: list[TokenLogprob] | None  # None when logprobs were not asked for
    finish_reason: str | None


@dataclass
class ChoiceState:
    index: int
    prompt_ids: list[int]
    stop_ids: frozenset[int]
    echo: bool
    logprobs: bool
    tokenizer: Tokenizer
    track: LogprobTrack | None = None
    echo_text: str = ""
    started: bool = False
    text_chars: int = 0  # generated text released so far
    tokens: int = 0
    finish_reason: str | None = None
    prompt_entries: list[TokenLogprob] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.echo_text = self.tokenizer.decode(self.prompt_ids) if self.echo else ""
        self.track = LogprobTrack(self.tokenizer, base=len(self.echo_text)) if self.logprobs else None

    def on(self, event: Event) -> Piece | None:
        if isinstance(event, Failed):
            raise scheduler_error(event.error)
        if isinstance(event, PromptScored):
            self.prompt_entries = list(event.entries)
            return None  # sent with the first text
        entries: list[TokenLogprob] = []
        prefix = ""
        if not self.started:  # the echoed prompt (and its log-probabilities) go with the first piece
            self.started = True
            entries += self.prompt_entries
            prefix = self.echo_text
        if isinstance(event, Generated):
            step = event.step
            self.tokens += 1
            ends_on_stop_id = step.finish_reason == "stop" and step.token in self.stop_ids
            if self.track is not None and not ends_on_stop_id:
                self.track.add(step)
            text, reason = step.text, step.finish_reason
        else:  # Ended
            text, reason = event.text, event.reason
        self.text_chars += len(text)
        if self.track is not None:
            entries += self.track.finish(self.text_chars) if reason else self.track.release(self.text_chars)
        self.finish_reason = reason
        return Piece(self.index, prefix + text, entries if self.logprobs else None, reason)


class Completion:
    """One request on the scheduler: `start()`, then `async for piece in pieces()`; `cancel()`
    when the client goes away. Must be created inside the event loop that consumes it."""

    ID_PREFIX = "cmpl-"  # a chat completion's is "chatcmpl-" (gpt2.server.chat)

    def __init__(
        self,
        prepared: Prepared,
        model_name: str,
        tokenizer: Tokenizer,
        scheduler: Scheduler,
        *,
        deadline: float,
    ) -> None:
        self.prepared = prepared
        self.params = prepared.params
        self.model_name = model_name
        self.id = self.ID_PREFIX + uuid.uuid4().hex
        self.created = int(time.time())
        self.scheduler = scheduler
        self._queue: asyncio.Queue[tuple[int, Event]] = asyncio.Queue()
        loop = asyncio.get_running_loop()
        queue = self._queue

        def sink(index: int, event: Event) -> None:  # called from the scheduler's thread
            loop.call_soon_threadsafe(queue.put_nowait, (index, event))

        params = prepared.params
        self.choices: list[ChoiceState] = []
        self.sequences: list[Sequence] = []
        for i, choice in enumerate(prepared.choices):
            ids = prepared.prompts[choice.prompt]
            self.choices.append(
                ChoiceState(
                    i, ids, frozenset(choice.config.stop_ids), params.echo, params.logprobs is not None, tokenizer
                )
            )
            wants_scores = params.echo and params.logprobs is not None
            self.sequences.append(
                Sequence(
                    i,
                    ids,
                    choice.config,
                    tokenizer,
                    sink=sink,
                    deadline=deadline,
                    prompt_logprobs=params.logprobs if wants_scores else None,
                    group=(self.id, choice.prompt),
                )
            )
        self.finished = False

    def start(self) -> None:
        """Queue the sequences (429 when the queue cannot take them all, 503 when stopping)."""
        try:
            self.scheduler.submit(self.sequences)
        except SchedulerError as exc:
            raise scheduler_error(exc) from None

    def cancel(self) -> None:
        for seq in self.sequences:
            seq.cancel()

    @property
    def completion_tokens(self) -> int:
        return sum(c.tokens for c in self.choices)

    async def pieces(self) -> AsyncIterator[Piece]:
        """Each choice's pieces as they come; an ApiError if a choice fails (the others are
        cancelled)."""
        open_choices = len(self.choices)
        try:
            while open_choices:
                index, event = await self._queue.get()
                piece = self.choices[index].on(event)
                if piece is None:
                    continue
                if piece.finish_reason is not None:
                    open_choices -= 1
                yield piece
            self.finished = True
        finally:
            if not self.finished:
                self.cancel()

    # --- OpenAI's shapes ----------------------------------------------------------------------

    def usage(self) -> dict[str, int]:
        prompt, completion = self.prepared.prompt_tokens, self.completion_tokens
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    def envelope(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "text_completion",
            "created": self.created,
            "model": self.model_name,
            "choices": choices,
        }

    def opening_chunks(self) -> list[dict[str, Any]]:
        """Chunks a stream starts with, before any text (none here; a chat stream's roles)."""
        return []

    def chunk(self, piece: Piece) -> dict[str, Any] | None:
        """The stream chunk of one piece (None when it says nothing: text held back)."""
        if not piece.text and not piece.logprobs and piece.finish_reason is None:
            return None
        out = self.envelope([_choice(piece.index, piece.text, piece.logprobs, piece.finish_reason)])
        if self.params.include_usage:
            out["usage"] = None
        return out

    def usage_chunk(self) -> dict[str, Any]:
        return {**self.envelope([]), "usage": self.usage()}

    async def collect(self) -> tuple[dict[int, str], dict[int, list[TokenLogprob] | None]]:
        """Every choice's pieces joined: its text and (None where not asked for) its logprobs."""
        texts: dict[int, list[str]] = {c.index: [] for c in self.choices}
        entries: dict[int, list[TokenLogprob]] = {c.index: [] for c in self.choices}
        async for piece in self.pieces():
            texts[piece.index].append(piece.text)
            entries[piece.index] += piece.logprobs or []
        asked = self.params.logprobs is not None
        return {i: "".join(t) for i, t in texts.items()}, {i: e if asked else None for i, e in entries.items()}

    async def response(self) -> dict[str, Any]:
        """The whole (non-streamed) response."""
        texts, entries = await self.collect()
        choices = [_choice(c.index, texts[c.index], entries[c.index], c.finish_reason) for c in self.choices]
        return {**self.envelope(choices), "usage": self.usage()}


def _choice(index: int, text: str, logprobs: list[TokenLogprob] | None, finish_reason: str | None) -> dict[str, Any]:
    return {
        "index": index,
        "text": text,
        "logprobs": to_json(logprobs) if logprobs is not None else None,
        "finish_reason": finish_reason,
    }


def error_chunk(error: ApiError) -> dict[str, Any]:
    """What a stream sends when it fails after its first chunk (the status line is gone)."""
    return error.body()
