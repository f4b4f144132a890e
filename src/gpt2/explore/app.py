"""The glue between the explorer and a running server: the one place that builds the app.

`gpt2 explore` must start the same app as `gpt2 serve`, with the explorer's router
mounted in it. Until the server's app factory is part of the project, `create_app`
builds a plain FastAPI app and includes the router; switching to the server's app is a
change to this function alone. `serve` runs an app with uvicorn on 127.0.0.1 only.

>>> from gpt2.config import Config
>>> from gpt2.params import init_params
>>> from gpt2.explore.explorer import Explorer
>>> cfg = Config(n_layer=1, n_embd=8, n_head=2, n_ctx=16)
>>> app = create_app(Explorer(cfg, init_params(cfg, seed=0), engine="pure"))
>>> from fastapi.testclient import TestClient
>>> TestClient(app).get("/api/info").json()["model"]["n_layer"]
1
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .api import explore_router
from .errors import ExploreError
from .explorer import Explorer

__all__ = ["HOST", "create_app", "serve"]

HOST = "127.0.0.1"  # the explorer listens on this machine only


def create_app(explorer: Explorer) -> Any:
    """A FastAPI app serving the explorer's page and API."""
    from fastapi import FastAPI

    app = FastAPI(title=f"gpt2 explore: {explorer.name}", docs_url=None, redoc_url=None, openapi_url=None)
    app.include_router(explore_router(explorer))
    return app


def serve(app: Any, port: int, *, on_ready: Callable[[str], None] | None = None) -> None:
    """Run `app` on http://127.0.0.1:port until interrupted. The socket is bound here first, so
    that a busy port is a clear error and port 0 picks a free one; `on_ready(url)` is called
    once it listens (a browser opened then waits in the queue until uvicorn accepts)."""
    import socket

    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((HOST, port))
    except OSError as exc:
        sock.close()
        raise ExploreError(f"cannot listen on {HOST}:{port}: {exc.strerror or exc}; choose another --port") from None
    sock.listen(128)
    url = f"http://{HOST}:{sock.getsockname()[1]}/"
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    if on_ready is not None:
        on_ready(url)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
