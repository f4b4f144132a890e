"""What every request passes through before a route sees it: the log line, the key, the size limit.

Plain ASGI middleware (the standard library is enough), outermost first:

- `RequestLog`: one log line per request when its response ends (method,
  path, status, seconds, and what the route adds: completion id, token
  counts; the prompt's text only when the server was told to log prompts),
  and the request counters of /metrics;
- `ApiKeyAuth`: with a key set, every path but the public ones (/health)
  needs `Authorization: Bearer KEY` or `X-Api-Key: KEY`, compared in constant
  time; otherwise 401 in OpenAI's format;
- `BodyLimit`: a body larger than the limit is refused with 413, from its
  Content-Length before it is read, or as it arrives when it is chunked.

Routes add to the log line through `scope["gpt2.log"]`, a dict.
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from .errors import ApiError
from .metrics import Metrics

__all__ = ["RequestLog", "ApiKeyAuth", "BodyLimit", "send_error", "LOG_KEY"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger("gpt2.server")
LOG_KEY = "gpt2.log"
MAX_LOGGED_PROMPT = 1000  # characters of a prompt in the log, when prompts are logged at all


async def send_error(send: Send, error: ApiError) -> None:
    """An ApiError as a complete JSON response."""
    body = json.dumps(error.body()).encode("utf-8")
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in error.headers.items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value)
    return None


class RequestLog:
    def __init__(self, app: ASGIApp, metrics: Metrics, log_prompts: bool = False) -> None:
        self.app = app
        self.metrics = metrics
        self.log_prompts = log_prompts

    @staticmethod
    def route_of(scope: Scope) -> str:
        """The template of the route that answered (the router leaves it in the scope), or
        "other": the request counters never grow a label per path a client invents."""
        path = getattr(scope.get("route"), "path", None)
        return path if isinstance(path, str) and path else "other"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        extra: dict[str, Any] = {}
        scope[LOG_KEY] = extra
        status = 500  # what the client got if the app raised before answering

        async def logged_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, logged_send)
        finally:
            self.metrics.request(self.route_of(scope), status)
            log.info(self._line(scope, status, time.perf_counter() - start, extra))

    def _line(self, scope: Scope, status: int, seconds: float, extra: dict[str, Any]) -> str:
        client = scope.get("client")
        who = f"{client[0]}:{client[1]}" if client else "-"
        parts = [who, scope.get("method", "-"), scope.get("path", "-"), str(status), f"{seconds:.3f}s"]
        prompt = extra.pop("prompt", None)
        parts += [f"{k}={v}" for k, v in extra.items()]
        if self.log_prompts and prompt is not None:
            text = repr(prompt)
            parts.append("prompt=" + (text if len(text) <= MAX_LOGGED_PROMPT else text[:MAX_LOGGED_PROMPT] + "..."))
        return " ".join(parts)


class ApiKeyAuth:
    def __init__(self, app: ASGIApp, api_key: str | None, public_paths: tuple[str, ...] = ("/health",)) -> None:
        self.app = app
        self.key = api_key.encode("utf-8") if api_key else None
        self.public = frozenset(public_paths)

    def allowed(self, scope: Scope) -> bool:
        if self.key is None or scope.get("path") in self.public:
            return True
        offered = _header(scope, b"x-api-key")
        authorization = _header(scope, b"authorization")
        if authorization is not None and authorization[:7].lower() == b"bearer ":
            offered = authorization[7:].strip()
        # compare_digest takes as long for every wrong key of a given length: no timing hints
        return offered is not None and hmac.compare_digest(offered, self.key)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or self.allowed(scope):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        offered = _header(scope, b"authorization") or _header(scope, b"x-api-key")
        message = (
            "Incorrect API key provided."
            if offered
            else "You didn't provide an API key: send it as 'Authorization: Bearer KEY' or 'X-Api-Key: KEY'."
        )
        error = ApiError(401, message, code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})
        await send_error(send, error)


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def too_large(self) -> ApiError:
        return ApiError(
            413,
            f"the request body is larger than this server accepts ({self.max_bytes} bytes)",
            code="request_too_large",
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                await send_error(send, ApiError(400, "the Content-Length header is not a number"))
                return
            if int(declared) > self.max_bytes:
                await send_error(send, self.too_large())
                return
        received = 0

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:  # a chunked body, or one longer than it declared
                    raise self.too_large()
            return message

        await self.app(scope, counted_receive, send)
