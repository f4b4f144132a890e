"""The server's settings: where it listens, who may call it, and the limits that keep it up.

Every default is the safe one: the server listens on 127.0.0.1 only, request
bodies are capped at 1 MiB, the batch and the queue are bounded (a full queue
answers 429 with `Retry-After`, it never grows without end), and every request
has a time limit. Limits left at None follow the model: `max_tokens` and
`max_prompt_tokens` default to its context window. A connection must send its
request head within `header_timeout` seconds and its body within `body_timeout`,
and at most `max_connections` are open (`gpt2.server.connections`); requests must
name the server in `Host` (this machine's names, the bound host, `allowed_hosts`)
and browsers may not change anything from another origin (`gpt2.server.origins`).

>>> s = ServerSettings()
>>> s.host, s.port, s.max_batch, s.max_queue
('127.0.0.1', 8080, 16, 64)
>>> bind_warning("0.0.0.0", None) is not None, bind_warning("127.0.0.1", None)
(True, None)
"""

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass
from typing import Any

from .connections import ConnectionLimits
from .errors import ServerError
from .origins import check_allowed_hosts

__all__ = ["ServerSettings", "bind_warning", "is_loopback", "API_KEY_ENV"]

API_KEY_ENV = "GPT2_API_KEY"  # `gpt2 serve` reads the key from here when --api-key is not given


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8080  # gpt2 serve's; the explorer keeps 8000 (docs/index.md, "Defaults")
    api_key: str | None = None  # None: no key is asked for (fine on 127.0.0.1)
    max_body_bytes: int = 1 << 20  # larger request bodies: 413
    max_tokens: int | None = None  # the most a request may ask for (None: the context window)
    max_prompt_tokens: int | None = None  # the longest prompt accepted (None: the context window)
    max_batch: int = 16  # sequences decoded together in one forward pass (1 for engines without batches)
    max_queue: int = 64  # sequences waiting for a batch row; more: 429
    prefill_chunk: int = 256  # longer prompts are prefilled this many tokens a step, between decoding steps
    max_choices: int = 16  # prompts x n in one request
    request_timeout: float = 600.0  # seconds from arrival; then the completion ends ("length")
    log_prompts: bool = False  # put prompt text in the log (off: the log carries sizes only)
    public_paths: tuple[str, ...] = ("/health",)  # answered without the key
    allowed_hosts: tuple[str, ...] = ()  # Host names accepted beyond this machine's and the bound host
    header_timeout: float = 10.0  # seconds for a request's head (line and headers) to arrive
    body_timeout: float = 30.0  # seconds for its body, from the end of the head
    max_connections: int = 256  # open at once; one more closes the longest-waiting idle one
    chat_template: str | None = (
        None  # --chat-template: a built-in name or a Jinja file (None: the model's own, else plain)
    )

    def __post_init__(self) -> None:
        for name in ("port", "max_body_bytes", "max_batch", "max_queue", "max_choices", "prefill_chunk"):
            _check_int(name, getattr(self, name), 0 if name == "port" else 1)
        if self.port > 65535:
            raise ServerError(f"port must be in [0, 65535], got {self.port}")
        for name in ("max_tokens", "max_prompt_tokens"):
            if getattr(self, name) is not None:
                _check_int(name, getattr(self, name), 1)
        t = self.request_timeout
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not t > 0 or t != t:
            raise ServerError(f"request_timeout must be a number of seconds > 0, got {t!r}")
        if self.max_queue < self.max_choices:
            raise ServerError(
                f"max_queue ({self.max_queue}) must be at least max_choices ({self.max_choices}), "
                "or a request of max_choices sequences could never be queued"
            )
        if self.api_key is not None and (not isinstance(self.api_key, str) or not self.api_key.strip()):
            raise ServerError("the API key must be a non-empty string")
        object.__setattr__(self, "public_paths", tuple(self.public_paths))
        object.__setattr__(self, "allowed_hosts", check_allowed_hosts(self.allowed_hosts))
        self.connection_limits()  # checks the timeouts and max_connections

    def connection_limits(self) -> ConnectionLimits:
        return ConnectionLimits(self.header_timeout, self.body_timeout, self.max_connections)

    def replace(self, **changes: Any) -> ServerSettings:
        return dataclasses.replace(self, **changes)


def _check_int(name: str, value: object, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ServerError(f"{name} must be an integer >= {low}, got {value!r}")


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach: 127.0.0.0/8, ::1, "localhost"."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def bind_warning(host: str, api_key: str | None) -> str | None:
    """The warning to log when the server listens beyond this machine without a key (else None)."""
    if is_loopback(host) or api_key:
        return None
    return (
        f"listening on {host} without an API key: anyone who can reach this address can use the model "
        "(set --api-key or GPT2_API_KEY, or listen on 127.0.0.1)"
    )
