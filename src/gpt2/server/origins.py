"""Who may talk to a local server: the `Host` it is called by, and the web pages that may write to it.

A server on 127.0.0.1 without a key is safe from other machines, not from the
web pages open in this machine's browser. Two rules close that door, as local
development servers do:

- **Host** (DNS rebinding: a page at `evil.example` whose name is made to
  resolve to 127.0.0.1 talks to the server as if it were its own site). A
  request must name the server in `Host`: an IP address (a page cannot rebind an
  address), `localhost` or a name under `.localhost`, the host the server is
  bound to (or the address the connection came in on), or a name the user allows (`--allowed-host NAME`; `.example.com`
  allows the domain and every name under it; `*` turns the check off). Anything
  else is refused with 421.
- **Origin** (cross-site requests: any page may POST `text/plain` to any
  address without asking first). A request that may change something (every
  method but GET, HEAD and OPTIONS) is refused with 403 when the browser says it
  comes from another origin: an `Origin` header that is not the server's own
  (`scheme://host:port` of the `Host` it was sent to, on this scheme; `null`
  included), or
  `Sec-Fetch-Site: cross-site|same-site`. Programs (curl, the `openai` client)
  send neither header and are not affected; nor are the server's own pages.

No CORS headers are ever sent, so other origins cannot read answers either.

>>> rules = HostRules("127.0.0.1", check_allowed_hosts(["box.lan", ".corp.example"]))
>>> [rules.allows(h) for h in ("localhost", "10.1.2.3", "box.lan", "a.corp.example", "evil.example")]
[True, True, True, True, False]
>>> same_origin("http://127.0.0.1:8000", "127.0.0.1:8000"), same_origin("http://evil.example", "127.0.0.1:8000")
(True, False)
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from .errors import ApiError, ServerError
from .middleware import send_error

__all__ = ["HostRules", "RequestGuard", "check_allowed_hosts", "split_host", "same_origin", "SAFE_METHODS"]

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})  # what a request that changes nothing uses
WILDCARD_ADDRESSES = frozenset({"0.0.0.0", "::", ""})  # bound to every interface: no one name
DEFAULT_PORTS = {"http": 80, "https": 443}


def check_allowed_hosts(names: Iterable[str]) -> tuple[str, ...]:
    """The names of `--allowed-host`, lowercased; a name with a scheme, port or path is refused."""
    if isinstance(names, str):
        names = [names]
    out = []
    for name in names:
        if not isinstance(name, str):
            raise ServerError(f"an allowed host must be a host name such as box.lan, got {name!r}")
        clean = name.strip().lower().rstrip(".")
        if not clean.strip(".") or any(c in clean for c in "/: \t@") or (clean != "*" and "*" in clean):
            raise ServerError(
                f"an allowed host is a name without scheme or port (box.lan, .example.com for a domain, "
                f"* for any), got {name!r}"
            )
        out.append(clean)
    return tuple(dict.fromkeys(out))


def split_host(value: str) -> tuple[str, int | None] | None:
    """A Host header's (name, port): lowercased, `[v6]` without brackets; None if malformed.

    >>> split_host("LocalHost:8000"), split_host("[::1]:80"), split_host("box"), split_host("a:b")
    (('localhost', 8000), ('::1', 80), ('box', None), None)
    """
    value = value.strip().lower()
    if value.startswith("["):
        name, _, rest = value[1:].partition("]")
        if rest and not rest.startswith(":"):
            return None
        port = rest[1:]
    else:
        name, _, port = value.partition(":") if value.count(":") == 1 else (value, "", "")
    if port and not (port.isascii() and port.isdigit() and int(port) < 65536):
        return None
    name = name.rstrip(".")
    return (name, int(port) if port else None) if name else None


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class HostRules:
    """Which `Host` names a server bound to `bound` answers to (see the module docstring)."""

    def __init__(self, bound: str, allowed: tuple[str, ...] = ()) -> None:
        bound = bound.strip("[]").lower().rstrip(".")
        self.names = frozenset({*(n for n in allowed if not n.startswith(".")), bound} - WILDCARD_ADDRESSES)
        self.domains = tuple(n for n in allowed if n.startswith("."))
        self.anything = "*" in allowed

    def allows(self, name: str) -> bool:
        return (
            self.anything
            or name in self.names
            or _is_address(name)
            or name == "localhost"
            or name.endswith(".localhost")
            or any(name.endswith(d) or name == d[1:] for d in self.domains)
        )


def same_origin(origin: str, host: str, scheme: str = "http") -> bool:
    """True when the `Origin` header names the site the request was sent to (its `Host`, by `scheme`)."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return False
    if parts.scheme != scheme or scheme not in DEFAULT_PORTS or not parts.hostname or parts.path not in ("", "/"):
        return False
    target = split_host(host)
    if target is None:
        return False
    default = DEFAULT_PORTS[parts.scheme]
    return (parts.hostname.rstrip("."), port or default) == (target[0], target[1] or default)


def _header(scope: Any, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


class RequestGuard:
    """ASGI middleware: the Host rule on every request, the Origin rule on those that may write."""

    def __init__(self, app: Any, bound_host: str, allowed_hosts: tuple[str, ...] = ()) -> None:
        self.app = app
        self.rules = HostRules(bound_host, allowed_hosts)

    def refusal(self, scope: Any) -> ApiError | None:
        host = _header(scope, b"host")
        if host is not None:  # HTTP/1.0 may leave it out: no browser does
            name = split_host(host)
            server = scope.get("server") or ("",)  # the address the connection came in on (an in-process
            # client such as Starlette's TestClient names its own: "testserver")
            if name is None or not (self.rules.allows(name[0]) or name[0] == str(server[0]).lower()):
                return ApiError(
                    421,
                    f"this server does not answer to the name {host!r} (a web page may be trying to reach it by "
                    "DNS rebinding); call it by its address or localhost, or allow the name with --allowed-host",
                    code="host_not_allowed",
                )
        if scope.get("method", "GET") in SAFE_METHODS:
            return None
        origin = _header(scope, b"origin")
        site = (_header(scope, b"sec-fetch-site") or "").strip().lower()
        foreign = origin is not None and not same_origin(origin, host or "", scope.get("scheme", "http"))
        if foreign or site in ("cross-site", "same-site"):
            return ApiError(
                403,
                f"a web page from another origin ({origin or site}) may not send {scope.get('method')} requests "
                "to this server; call it from a program, or from the pages it serves",
                code="cross_origin_request",
            )
        return None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        error = self.refusal(scope) if scope["type"] in ("http", "websocket") else None
        if error is None:
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
        else:
            await send_error(send, error)
