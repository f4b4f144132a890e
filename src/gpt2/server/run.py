"""Running the app with uvicorn: in the foreground (`serve`, what `gpt2 serve` runs) or in a
background thread (`BackgroundServer`).

    with BackgroundServer(app) as server:          # 127.0.0.1, a free port
        print(server.url)                          # http://127.0.0.1:53211
    # stopped: the app's shutdown closed the scheduler and the engine

The socket is bound before uvicorn starts, so a port in use is a clear error
at once, and port 0 gives a free port whose number is known. uvicorn speaks
HTTP/1.1 through `gpt2.server.connections`' protocol: request heads and bodies
have time limits and the open connections are bounded (the app's settings say
how much). uvicorn's own
access log is off: `gpt2.server.middleware.RequestLog` writes one line per
request to the `gpt2.server` logger instead (configure logging to see it).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from ..errors import Gpt2Error
from .errors import ServerError
from .settings import ServerSettings, bind_warning

__all__ = ["listen", "make_server", "serve", "url_of", "BackgroundServer"]

log = logging.getLogger("gpt2.server")


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on (host, port); an address in use or not ours is a ServerError."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ServerError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise ServerError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def make_server(app: Any, sock: socket.socket, *, graceful_seconds: int = 5) -> Any:
    """A uvicorn.Server for `app` on an already bound socket (its logging left to the caller), with
    the connection limits of the app's settings (`app.state.settings`; the defaults otherwise)."""
    import uvicorn

    from .connections import guarded_protocol

    settings = getattr(getattr(app, "state", None), "settings", None)
    if not isinstance(settings, ServerSettings):
        settings = ServerSettings()
    host, port = sock.getsockname()[:2]
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        http=guarded_protocol(settings.connection_limits()),
        access_log=False,
        log_config=None,  # do not reconfigure the process's logging
        lifespan="on",
        timeout_graceful_shutdown=graceful_seconds,
    )
    return uvicorn.Server(config)


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{f'[{host}]' if ':' in host else host}:{port}"


class BackgroundServer:
    """uvicorn serving `app` in a daemon thread (tests, benchmarks, notebooks)."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, *, start_timeout: float = 30.0) -> None:
        self.sock = listen(host, port)
        self.url = url_of(self.sock)
        self.server = make_server(app, self.sock)
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self._start_timeout = start_timeout

    def start(self) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + self._start_timeout
        while not self.server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)  # uvicorn sets `started` once it accepts connections
        if not self.server.started:
            self.stop()
            raise ServerError(f"the server did not start within {self._start_timeout:g} s")
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self.server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout)
        self.sock.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()


def serve(
    model: str,
    engine: str,
    settings: ServerSettings,
    *,
    name: str | None = None,
    options: Mapping[str, Any] | None = None,
    routers: Sequence[Any] = (),
    static: tuple[str, str | Path] | None = None,
    progress: Any = None,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """`gpt2 serve`: listen on settings.host:port at once, load the model in a thread (/health
    answers 503 until it is in), then serve until interrupted (Ctrl-C, SIGTERM). A model that
    fails to load stops the server, and its error is raised here. `routers` and `static` go to
    `create_app`; `on_ready(url)` is called once the model serves."""
    from .app import create_app
    from .state import ModelHolder, default_model_name

    sock = listen(settings.host, settings.port)
    url = url_of(sock)
    warning = bind_warning(settings.host, settings.api_key)
    if warning:  # only once listening: a bind error is the one thing said then
        log.warning(warning)
    holder = ModelHolder(name or default_model_name(model))
    app = create_app(holder, settings, routers=routers, static=static)
    server = make_server(app, sock)

    failures: list[Gpt2Error] = []

    def load() -> None:
        try:
            holder.load(model, engine, options, settings=settings, progress=progress)
        except Gpt2Error as exc:
            failures.append(exc)  # raised below as the cause (what the command line reads hints from)
            server.should_exit = True  # the error is kept in holder and raised below
            return
        except Exception as exc:  # a bug: say so in the log, stop, and report it
            log.exception("loading the model failed")
            holder.fail(f"{type(exc).__name__}: {exc}")
            server.should_exit = True
            return
        log.info("chat template: %s", holder.require().chat_template.describe())
        log.info("serving %s (%s engine) at %s", holder.name, engine, url)
        if on_ready is not None:
            on_ready(url)

    log.info("listening at %s; loading %s ...", url, model)
    loader = threading.Thread(target=load, name="gpt2-load", daemon=True)
    loader.start()
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    if holder.status == "failed":
        raise Gpt2Error(f"cannot serve {model}: {holder.error}") from (failures[0] if failures else None)
