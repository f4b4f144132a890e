"""Connections: how long a client may take to send a request, and how many may be open at once.

uvicorn closes a keep-alive connection that sits idle between requests (5 s), but
it does not time a request while it arrives: a connection that never finishes its
head (slowloris) stays open for ever, and a few hundred of them use up the
process's descriptors until `/health` times out for everyone. `guarded_protocol`
gives uvicorn an HTTP/1.1 protocol (its h11 one, subclassed) with three rules:

- a request's head (request line and headers, at most 16 KiB: h11's limit) must
  arrive within `header_timeout` seconds of the connection opening or of the
  previous response ending, and its body within `body_timeout` seconds of its
  head; otherwise the server answers 408 and closes the connection;
- at most `max_connections` connections are open: one more closes the connection
  that has waited longest for a request head (a slow or idle client) with a 408,
  or, when every open connection is busy with a request, is answered 503 itself.
  A new client is therefore never locked out by clients that send nothing.

Time the application takes (a long completion) is not counted: that is the
server's `request_timeout`.

>>> limits = ConnectionLimits(header_timeout=10, body_timeout=30, max_connections=256)
>>> protocol = guarded_protocol(limits)
>>> protocol.connection_limits.max_connections, protocol.__name__
(256, 'GuardedH11Protocol')
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, ClassVar

from .errors import ApiError, ServerError

__all__ = ["ConnectionLimits", "guarded_protocol", "raw_error"]


@dataclass(frozen=True)
class ConnectionLimits:
    header_timeout: float = 10.0  # seconds for a request's head to arrive
    body_timeout: float = 30.0  # seconds for its body to arrive, from the end of its head
    max_connections: int = 256  # open at once; one more closes the longest-waiting idle one

    def __post_init__(self) -> None:
        for name in ("header_timeout", "body_timeout"):
            t = getattr(self, name)
            if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 < t < math.inf:
                raise ServerError(f"{name} must be a number of seconds > 0, got {t!r}")
        n = self.max_connections
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ServerError(f"max_connections must be an integer >= 1, got {n!r}")


def raw_error(status: int, reason: str, message: str) -> bytes:
    """A complete HTTP/1.1 error response that closes the connection, in OpenAI's error shape
    (written straight to the socket, where no request exists to answer through the app)."""
    body = json.dumps(ApiError(status, message, type="invalid_request_error").body()).encode()
    head = f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
    return (head + "connection: close\r\n\r\n").encode("ascii") + body


def guarded_protocol(limits: ConnectionLimits) -> type[Any]:
    """uvicorn's h11 protocol with the timeouts and the connection limit of `limits` (pass it
    to `uvicorn.Config(http=...)`)."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    slow_head = raw_error(408, "Request Timeout", f"the request head did not arrive within {limits.header_timeout:g} s")
    slow_body = raw_error(408, "Request Timeout", f"the request body did not arrive within {limits.body_timeout:g} s")
    evicted = raw_error(408, "Request Timeout", "the request head was too slow while the server needed the connection")
    full = raw_error(503, "Service Unavailable", "the server has too many open connections; retry")

    class GuardedH11Protocol(H11Protocol):
        connection_limits: ClassVar[ConnectionLimits] = limits

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.phase = "new"  # "head": waiting for a request head; "body": for its body; "busy"; "closed"
            self.phase_since = 0.0
            self.phase_timer: Any = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self.enter("head")
            if sum(1 for c in self.connections if getattr(c, "phase", None) != "closed") > limits.max_connections:
                self.make_room()

        def connection_lost(self, exc: Exception | None) -> None:
            self.enter("closed")
            super().connection_lost(exc)

        def handle_events(self) -> None:
            super().handle_events()
            self.follow()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self.follow()

        # --- the rules ---------------------------------------------------------------------

        def follow(self) -> None:
            """The phase h11's state says the connection is in (it moves as data arrives)."""
            if self.phase == "closed":
                return
            if self.transport is None or self.transport.is_closing():
                self.enter("closed")
            elif self.conn.their_state is h11.IDLE:
                self.enter("head")
            elif self.conn.their_state is h11.SEND_BODY:
                self.enter("body")
            else:  # the request is in: the app's time is not the client's
                self.enter("busy")

        def enter(self, phase: str) -> None:
            if phase == self.phase:
                return
            if self.phase_timer is not None:
                self.phase_timer.cancel()
                self.phase_timer = None
            self.phase, self.phase_since = phase, self.loop.time()
            if phase == "head":
                self.phase_timer = self.loop.call_later(limits.header_timeout, self.expire, slow_head)
            elif phase == "body":
                self.phase_timer = self.loop.call_later(limits.body_timeout, self.expire, slow_body)

        def expire(self, response: bytes) -> None:
            """Answer `response` (unless an answer has begun) and close."""
            self.phase_timer = None
            if self.phase == "closed":
                return
            self.enter("closed")
            if self.transport.is_closing():
                return
            if self.cycle is None or not self.cycle.response_started:
                self.transport.write(response)
            self.transport.close()  # the app, if it waits for the body, sees the client go

        def make_room(self) -> None:
            waiting: list[Any] = [c for c in self.connections if c is not self and getattr(c, "phase", None) == "head"]
            if waiting:
                min(waiting, key=lambda c: c.phase_since).expire(evicted)
            else:
                self.expire(full)

    return GuardedH11Protocol
