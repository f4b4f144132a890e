"""Errors a client sees: OpenAI's error object with the right HTTP status.

Every refusal the server makes is an :class:`ApiError`; the app turns it into

    {"error": {"message": ..., "type": ..., "param": ..., "code": ...}}

with its status (and headers such as `Retry-After`), the shape OpenAI's API
answers with, so the stock `openai` client raises its own exception classes
(`BadRequestError` for 400, `AuthenticationError` for 401, `NotFoundError` for
404, `RateLimitError` for 429, `InternalServerError` for 5xx). Anything else
that escapes a route is a bug: the client gets a 500 with a fixed message and
the traceback goes to the server's log only.

What an error repeats of a request is bounded: every message is cut to
`MAX_MESSAGE_CHARS` characters (a client may send a megabyte of text to be
quoted back), and a lone surrogate in it (`"\\ud800"`, which JSON can carry
but UTF-8 cannot) is written as its escape, so that the error itself can
always be sent (`printable`). Both servers (`gpt2 serve`, `gpt2 explore`)
answer through here.

>>> err = bad_request("temperature must be a number in [0, 2], got 'hot'", "temperature")
>>> err.status, err.body()["error"]["param"]
(400, 'temperature')
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import Gpt2Error
from ..generation.errors import Overloaded, QueueFull, QueueTimeout, SchedulerFailed

__all__ = [
    "MAX_MESSAGE_CHARS",
    "ApiError",
    "ServerError",
    "bad_request",
    "context_length_exceeded",
    "internal_error",
    "not_found",
    "printable",
    "queue_full",
    "scheduler_error",
    "unavailable",
]

INVALID_REQUEST = "invalid_request_error"  # OpenAI's type for every 4xx
SERVER_ERROR = "server_error"  # and for 5xx
MAX_MESSAGE_CHARS = 500  # the longest error message sent (what a client sent is echoed at most this long)


def printable(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """`text` cut to `limit` characters, with lone surrogates written as escapes: safe to encode.

    >>> printable("a" * 600)[-45:]
    'aaa... (cut: the message is 600 characters)'
    >>> printable("bad \\ud800 name")
    'bad \\\\ud800 name'
    """
    if len(text) > limit:
        tail = f"... (cut: the message is {len(text)} characters)"
        text = text[: max(0, limit - len(tail))] + tail
    if not text.isascii():
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


class ServerError(Gpt2Error, ValueError):
    """A bad server setting (a limit out of range, a port that is not a number)."""


class ApiError(Gpt2Error):
    """A refusal with an HTTP status, in OpenAI's error format."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = INVALID_REQUEST,
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        message = printable(message)
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = printable(param, 100) if param is not None else None  # a field name the client made up
        self.code = code
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def __repr__(self) -> str:
        return f"ApiError({self.status}, {self.message!r}, param={self.param!r}, code={self.code!r})"


def bad_request(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    """400: the request itself is wrong; `param` names the field at fault."""
    return ApiError(400, message, param=param, code=code)


def context_length_exceeded(prompt_tokens: int, max_tokens: int, n_ctx: int) -> ApiError:
    """400 with OpenAI's code for a prompt and completion that do not fit the context window."""
    return ApiError(
        400,
        f"This model's maximum context length is {n_ctx} tokens, however you requested "
        f"{prompt_tokens + max_tokens} tokens ({prompt_tokens} in your prompt; {max_tokens} for the completion). "
        "Please reduce your prompt; or completion length.",
        param="prompt",
        code="context_length_exceeded",
    )


def not_found(message: str, code: str | None = None, param: str | None = None) -> ApiError:
    return ApiError(404, message, param=param, code=code)


def queue_full(retry_after: int) -> ApiError:
    """429 with `Retry-After` (seconds): every place in the batch and the queue is taken."""
    return ApiError(
        429,
        f"the server is at capacity (every batch row and queue place is taken); retry after {retry_after} s",
        type="requests",
        code="rate_limit_exceeded",
        headers={"Retry-After": str(retry_after)},
    )


def unavailable(message: str, retry_after: int | None = None, code: str | None = None) -> ApiError:
    """503: the model is not loaded (yet), the server is shutting down, or a request timed out in the queue."""
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return ApiError(503, message, type=SERVER_ERROR, code=code, headers=headers)


def internal_error() -> ApiError:
    """500 with a fixed message: what went wrong is in the server's log, never in the response."""
    return ApiError(500, "the server had an error while processing your request", type=SERVER_ERROR)


def scheduler_error(error: Gpt2Error) -> ApiError:
    """What the scheduler's refusal (`gpt2.generation.errors`) or a sequence's failure means over
    HTTP: a full queue 429, a wait past the time limit, a stopped scheduler 503 (with `Retry-After`
    where the scheduler knows one), a failed step 500 with the fixed message, a decoder's error
    (NaN logits) 500 with its message.

    >>> scheduler_error(QueueFull(retry_after=2)).status, scheduler_error(QueueTimeout()).code
    (429, 'timeout')
    """
    if isinstance(error, ApiError):
        return error
    if isinstance(error, QueueFull):
        return queue_full(error.retry_after or 1)
    if isinstance(error, QueueTimeout):
        return unavailable(str(error), retry_after=error.retry_after, code="timeout")
    if isinstance(error, Overloaded):  # ShuttingDown
        return unavailable("the server is shutting down", retry_after=error.retry_after)
    if isinstance(error, SchedulerFailed):
        return internal_error()
    return ApiError(500, str(error), type=SERVER_ERROR)
