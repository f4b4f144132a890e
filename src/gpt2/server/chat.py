"""`/v1/chat/completions`: a conversation rendered by the chat template, then a completion.

A chat request is checked (`parse_chat`: OpenAI's chat fields, with `max_tokens`
or `max_completion_tokens`, `logprobs` true with `top_logprobs` 0-20), its
messages rendered into one prompt by the model's chat template
(`gpt2.chat_template`), and that prompt's ids go through exactly what a
`/v1/completions` request goes through (`completions.prepare`, a `Completion`
on the scheduler): same sampling, batching, limits and seeds. The template's
stop strings join the request's own. Only the shapes differ: `ChatCompletion`
answers with `chat.completion` objects (a message, log-probabilities as
`logprobs.content[]`) and streams `chat.completion.chunk`s (each choice's
`delta.role` first, then `delta.content`).

>>> p = parse_chat({"model": "m", "messages": [{"role": "user", "content": "Hi"}], "max_completion_tokens": 5})
>>> p.params.max_tokens, p.params.logprobs, p.messages
(5, None, [{'role': 'user', 'content': 'Hi'}])
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..chat_template import ChatMessageError, ChatTemplate, ChatTemplateError, normalize_messages
from ..config import Config
from ..tokenizer import Tokenizer, TokenizerError
from .completions import Completion, Piece, Prepared, prepare
from .errors import ApiError, bad_request
from .logprobs import TokenLogprob
from .schemas import CompletionParams, check_model, parse_completion
from .settings import ServerSettings

__all__ = ["ChatParams", "parse_chat", "prepare_chat", "ChatCompletion", "MAX_TOP_LOGPROBS"]

MAX_TOP_LOGPROBS = 20  # OpenAI's limit for chat
# Fields with the same meaning in both APIs, checked by the completions parser.
SHARED = (
    "model",
    "n",
    "stop",
    "temperature",
    "top_p",
    "seed",
    "stream",
    "stream_options",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "user",
    "top_k",
    "repetition_penalty",
    "ignore_eos",
)
# Fields clients send with their "off" value; anything else in them is refused (GPT-2 has no tools).
OFF_VALUES: dict[str, tuple[Any, ...]] = {
    "tools": (None, []),
    "tool_choice": (None, "none", "auto"),
    "functions": (None, []),
    "function_call": (None, "none", "auto"),
    "parallel_tool_calls": (None, True, False),
    "response_format": (None, {"type": "text"}),
    "store": (None, False),
    "metadata": (None,),
    "service_tier": (None, "auto", "default"),
}


@dataclass(frozen=True)
class ChatParams:
    """A checked chat request: the completion it becomes (its prompt not rendered yet) and the messages."""

    params: CompletionParams
    messages: list[dict[str, str]]


def parse_chat(body: Any) -> ChatParams:
    """A `/v1/chat/completions` body (parsed JSON) -> ChatParams, or a 400 naming the field."""
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object")
    for name, value in body.items():
        if name in SHARED or name in ("messages", "max_tokens", "max_completion_tokens", "logprobs", "top_logprobs"):
            continue
        if name not in OFF_VALUES:
            raise bad_request(f"Unrecognized request argument supplied: {name}", name)
        if value not in OFF_VALUES[name]:
            raise bad_request(f"{name} is not supported by this server (GPT-2 writes plain text)", name)
    try:
        messages = normalize_messages(body.get("messages"))
    except ChatMessageError as exc:
        raise bad_request(str(exc), exc.param) from None
    shared = {k: body[k] for k in SHARED if k in body}
    limits = {k: body[k] for k in ("max_tokens", "max_completion_tokens") if body.get(k) is not None}
    if len(set(map(repr, limits.values()))) > 1:
        raise bad_request("max_tokens and max_completion_tokens differ; send one of them", "max_completion_tokens")
    if limits:  # chat's default (neither sent) is as many tokens as fit the window
        shared["max_tokens"] = next(iter(limits.values()))
    params = parse_completion({**shared, "prompt": ""})
    if "max_tokens" not in shared:
        params = dataclasses.replace(params, max_tokens=None)
    logprobs = body.get("logprobs")
    if logprobs is not None and not isinstance(logprobs, bool):
        raise bad_request(f"logprobs must be true or false in chat, got {logprobs!r}", "logprobs")
    top = body.get("top_logprobs")
    if top is not None:
        if isinstance(top, bool) or not isinstance(top, int) or not 0 <= top <= MAX_TOP_LOGPROBS:
            raise bad_request(f"top_logprobs must be an integer in [0, {MAX_TOP_LOGPROBS}]", "top_logprobs")
        if not logprobs:
            raise bad_request("top_logprobs needs logprobs set to true", "top_logprobs")
    params = dataclasses.replace(params, logprobs=(top or 0) if logprobs else None)
    return ChatParams(params, messages)


def prepare_chat(
    chat: ChatParams,
    model_name: str,
    template: ChatTemplate,
    tokenizer: Tokenizer,
    config: Config,
    settings: ServerSettings,
) -> Prepared:
    """Render the conversation, check that it fits the context, and prepare it as a completion."""
    check_model(chat.params.model, model_name)
    try:
        prompt = template.render(chat.messages, add_generation_prompt=True)
    except ChatMessageError as exc:
        raise bad_request(str(exc), exc.param) from None
    except ChatTemplateError as exc:
        raise bad_request(str(exc), "messages", code="chat_template_error") from None
    try:
        ids = tokenizer.encode(prompt, allowed_special="all")
    except TokenizerError as exc:
        raise bad_request(str(exc), "messages") from None
    n_ctx, wanted = config.n_ctx, chat.params.max_tokens
    needed = len(ids) + (wanted if wanted is not None else 1)  # room for at least one token of reply
    if needed > n_ctx:
        reply = f"max_tokens={wanted}" if wanted is not None else "at least 1 token of reply"
        raise ApiError(
            400,
            f"This model's maximum context length is {n_ctx} tokens; the conversation is {len(ids)} tokens "
            f"as the {template.name} chat template writes it, and with {reply} that is {needed - n_ctx} tokens "
            "too many: drop earlier messages or ask for fewer tokens.",
            param="messages",
            code="context_length_exceeded",
        )
    stops = tuple(dict.fromkeys((*chat.params.stop, *template.stops_for(tokenizer.eot_token is not None))))
    params = dataclasses.replace(chat.params, prompts=(tuple(ids),), stop=stops)
    try:
        return prepare(params, model_name, tokenizer, config, settings)
    except ApiError as exc:  # the completion's "prompt" is the conversation here
        if exc.param == "prompt":
            exc.param = "messages"
        raise


class ChatCompletion(Completion):
    """A `Completion` that answers in chat's shapes (see the module docstring)."""

    ID_PREFIX = "chatcmpl-"

    def __init__(self, prepared: Prepared, model_name: str, tokenizer: Tokenizer, *args: Any, **kw: Any) -> None:
        super().__init__(prepared, model_name, tokenizer, *args, **kw)
        self.tokenizer = tokenizer

    def envelope(self, choices: list[dict[str, Any]], *, chunk: bool = False) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk" if chunk else "chat.completion",
            "created": self.created,
            "model": self.model_name,
            "system_fingerprint": None,
            "choices": choices,
        }

    def opening_chunks(self) -> list[dict[str, Any]]:
        """Each choice's first chunk: the role, as OpenAI streams it."""
        out = []
        for choice in self.choices:
            delta = {"index": choice.index, "delta": {"role": "assistant", "content": ""}}
            out.append(
                self._with_usage(self.envelope([{**delta, "logprobs": None, "finish_reason": None}], chunk=True))
            )
        return out

    def chunk(self, piece: Piece) -> dict[str, Any] | None:
        if not piece.text and not piece.logprobs and piece.finish_reason is None:
            return None
        choice = {
            "index": piece.index,
            "delta": {"content": piece.text} if piece.text else {},
            "logprobs": self._logprobs(piece.logprobs),
            "finish_reason": piece.finish_reason,
        }
        return self._with_usage(self.envelope([choice], chunk=True))

    def usage_chunk(self) -> dict[str, Any]:
        return {**self.envelope([], chunk=True), "usage": self.usage()}

    async def response(self) -> dict[str, Any]:
        texts, entries = await self.collect()
        choices = [
            {
                "index": c.index,
                "message": {"role": "assistant", "content": texts[c.index]},
                "logprobs": self._logprobs(entries[c.index]),
                "finish_reason": c.finish_reason,
            }
            for c in self.choices
        ]
        return {**self.envelope(choices), "usage": self.usage()}

    def _with_usage(self, out: dict[str, Any]) -> dict[str, Any]:
        if self.params.include_usage:
            out["usage"] = None
        return out

    def _logprobs(self, entries: list[TokenLogprob] | None) -> dict[str, Any] | None:
        """Chat's shape: {"content": [{token, logprob, bytes, top_logprobs: [{token, logprob, bytes}]}]}."""
        if entries is None:
            return None
        content = []
        for e in entries:
            tops = [{"token": t, "logprob": lp, "bytes": _bytes_of(t)} for t, lp in (e.top or {}).items()]
            token_bytes = list(self.tokenizer.decode_single_token_bytes(e.token))
            content.append({"token": e.text, "logprob": e.logprob, "bytes": token_bytes, "top_logprobs": tops})
        return {"content": content, "refusal": None}


def _bytes_of(text: str) -> list[int]:
    """A token's bytes from its text as `logprobs.token_text` writes it ("bytes:\\xc3" for a partial character)."""
    if text.startswith("bytes:\\x"):
        return list(bytes.fromhex(text[len("bytes:") :].replace("\\x", "")))
    return list(text.encode("utf-8"))
