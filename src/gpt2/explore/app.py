"""The explorer inside `gpt2 serve`'s app: the same server, with the page and `/api/...` added.

`create_app` attaches the explorer's default engine to a `gpt2.server.ModelHolder`,
so the app also answers OpenAI's `/v1/completions` (and `/health`, `/metrics`,
`/tokenize`) over the model being explored, with the server's middleware (request
log, Host and Origin rules, body limit, connection limits, OpenAI-shaped errors).
The holder's scheduler thread owns the default engine: the explorer's passes on it
run there too, between two decoding steps, so a trace and a completion never use it
at once; the other engines run in the explorer's worker threads. `serve` runs the
app on 127.0.0.1 only.

>>> from gpt2.config import Config
>>> from gpt2.params import init_params
>>> from gpt2.explore.explorer import Explorer
>>> cfg = Config(n_layer=1, n_embd=8, n_head=2, n_ctx=16)
>>> app = create_app(Explorer(cfg, init_params(cfg, seed=0), engine="pure"))
>>> from fastapi.testclient import TestClient
>>> with TestClient(app) as client:
...     client.get("/api/info").json()["model"]["n_layer"], client.get("/health").status_code
(1, 200)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..server.errors import ServerError
from .api import explore_router
from .errors import ExploreError
from .explorer import Explorer

__all__ = ["HOST", "create_app", "serve"]

HOST = "127.0.0.1"  # the explorer listens on this machine only


def create_app(explorer: Explorer, *, allowed_hosts: tuple[str, ...] = ()) -> Any:
    """`gpt2 serve`'s app over the explorer's default engine, with the explorer's router.
    `allowed_hosts`: Host names answered beyond this machine's (`--allowed-host`)."""
    from ..generation.errors import SchedulerError
    from ..server.app import create_app as server_app
    from ..server.errors import scheduler_error
    from ..server.settings import ServerSettings
    from ..server.state import ModelHolder

    holder = ModelHolder(explorer.name)
    holder.attach(explorer.engine(), explorer.tokenizer)
    run_locked = explorer.run_locked

    def run_on_engine(name: str, work: Callable[[Any], Any]) -> Any:
        # Called from a worker thread: the default engine is the scheduler's, so its passes run on
        # the scheduler's thread between two decoding steps; the other engines under their own locks.
        if name != explorer.default_engine:
            return run_locked(name, work)
        try:
            return holder.require().scheduler.call(work).result()
        except SchedulerError as exc:  # stopped (shutting down): 503, as for a completion
            raise scheduler_error(exc) from None

    explorer.run_on_engine = run_on_engine
    settings = ServerSettings(host=HOST, allowed_hosts=allowed_hosts)
    return server_app(holder, settings, routers=[explore_router(explorer)], title=f"gpt2 explore: {explorer.name}")


def serve(app: Any, port: int, *, on_ready: Callable[[str], None] | None = None) -> None:
    """Run `app` on http://127.0.0.1:port until interrupted (its shutdown stops the engines'
    thread). The socket is bound first, so that a busy port is a clear error and port 0 picks a
    free one; `on_ready(url)` is called once it listens."""
    from ..server.run import listen, make_server, url_of

    try:
        sock = listen(HOST, port)
    except ServerError as exc:
        raise ExploreError(f"{exc}; choose another --port") from None
    server = make_server(app, sock)
    if on_ready is not None:
        on_ready(url_of(sock) + "/")
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
