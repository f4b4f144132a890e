"""The explorer's HTTP face: a FastAPI router with the JSON API and the page, mountable in any app.

    GET  /                            the page (static HTML, CSS and JavaScript from the package)
    GET  /explore/static/{name}       its files (the page's script is ES modules: text/javascript)
    GET  /guide/{chapter}             the guide's chapters (docs/learn), where the guide is (a clone)
    GET  /api/info                    the model, the engines, the limits, the functions with source
    POST /api/trace                   {"text" | "ids", ...} -> tokens, attention, logit lens, next token, norms
    POST /api/next                    the next-token distribution alone (for the sliders)
    POST /api/step                    append a chosen token, or sample one (seed + draw)
    POST /api/embeddings/neighbours   a token's nearest neighbours in wte
    POST /api/embeddings/positions    the wpe cosine-similarity matrix
    POST /api/bpe                     the tokenizer's work on a word, merge by merge
    POST /api/compare                 the same trace from several engines, and their differences
    GET  /api/source?name=...         the source of one of the functions the page names

Every answer is JSON (schemas in `gpt2/explore/schema.json`, documented in
docs/explorer.md). A request the explorer refuses is a 400 with
`{"error": {"message": ..., "type": "invalid_request_error"}}` (the message cut to a
few hundred characters); any body that reads as bytes gets such an answer, never a
500. The checks live in `gpt2.explore.requests`, not in framework validation, so the
router needs no app-level exception handler and mounts into `gpt2 serve`'s app as
into any other. The work runs in a bounded pool of threads (`gpt2.explore.work`):
503 when it is full, cancelled when the client goes.

>>> from gpt2.config import Config
>>> from gpt2.params import init_params
>>> from gpt2.explore.explorer import Explorer
>>> cfg = Config(n_layer=1, n_embd=8, n_head=2, n_ctx=16)
>>> router = explore_router(Explorer(cfg, init_params(cfg, seed=0), engine="pure"))
>>> sorted(r.path for r in router.routes)[:3]
['/', '/api/bpe', '/api/compare']
"""

from __future__ import annotations

import json
import mimetypes
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ..errors import Gpt2Error
from ..server.errors import ApiError, printable
from ..server.schemas import parse_json
from .explorer import Explorer
from .guide import add_guide_routes
from .requests import (
    parse_bpe,
    parse_compare,
    parse_neighbours,
    parse_next,
    parse_positions,
    parse_step,
    parse_trace,
)
from .work import Busy, Cancelled, WorkPool

__all__ = ["explore_router", "STATIC", "json_response", "error_response"]

STATIC = Path(__file__).resolve().parent / "static"
STATIC_PREFIX = "/explore/static"
# By name, not from the platform's table (which may call .js text/plain): browsers refuse to run an
# ES module served with a type that is not JavaScript's.
MEDIA_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html", ".md": "text/plain"}
CLIENT_CLOSED = 499  # in the log only: the client closed the connection before its answer
# The page never loads anything from elsewhere; the browser is told so too.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'"
)


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """Compact JSON, encoded once (the trace is large: no framework re-encoding pass)."""
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return Response(body.encode("utf-8"), status_code=status, media_type="application/json", headers=headers)


def error_response(message: str, status: int = 400, headers: dict[str, str] | None = None) -> Response:
    """The explorer's error answer; the message bounded and encodable (`gpt2.server.errors.printable`)."""
    kind = "invalid_request_error" if status < 500 else "server_error"
    return json_response({"error": {"message": printable(message), "type": kind}}, status, headers)


def explore_router(explorer: Explorer, pool: WorkPool | None = None) -> APIRouter:
    """The API and the page over `explorer`, as a router to include in a FastAPI app. The work
    runs in `pool`'s threads (default: 2 at a time, 8 waiting), off the event loop."""
    router = APIRouter()
    pool = pool or WorkPool()

    async def run(request: Request, work: Callable[[], Any]) -> Response:
        async def gone() -> None:  # the body has been read: the next message is the client leaving
            while (await request.receive())["type"] != "http.disconnect":
                pass

        try:
            return json_response(await pool.run(work, gone))
        except Busy as exc:
            return error_response(str(exc), 503, {"Retry-After": "1"})
        except Cancelled:
            return Response(status_code=CLIENT_CLOSED)
        except ApiError as exc:  # the model's server refused (shutting down)
            return error_response(exc.message, exc.status, exc.headers)
        except Gpt2Error as exc:
            return error_response(str(exc))

    async def answer(request: Request, parse: Callable[[Any], Any], work: Callable[[Any], Any]) -> Response:
        try:
            parsed = parse(parse_json(await request.body()))  # strict JSON: depth, digits, UTF-8
        except ApiError as exc:
            return error_response(exc.message, exc.status)
        except Gpt2Error as exc:
            return error_response(str(exc))
        return await run(request, lambda: work(parsed))

    @router.get("/api/info")
    async def info(request: Request) -> Response:
        return json_response(explorer.info())  # a few fields: no work to move off the loop

    @router.post("/api/trace")
    async def trace(request: Request) -> Response:
        return await answer(request, parse_trace, explorer.trace)

    @router.post("/api/next")
    async def next_token(request: Request) -> Response:
        return await answer(request, parse_next, explorer.next_token)

    @router.post("/api/step")
    async def step(request: Request) -> Response:
        return await answer(request, parse_step, explorer.step)

    @router.post("/api/embeddings/neighbours")
    async def neighbours(request: Request) -> Response:
        return await answer(request, parse_neighbours, explorer.neighbours)

    @router.post("/api/embeddings/positions")
    async def positions(request: Request) -> Response:
        return await answer(request, parse_positions, explorer.positions)

    @router.post("/api/bpe")
    async def bpe(request: Request) -> Response:
        return await answer(request, parse_bpe, explorer.bpe)

    @router.post("/api/compare")
    async def compare(request: Request) -> Response:
        return await answer(request, parse_compare, explorer.compare)

    @router.get("/api/source")
    async def source(name: str = "") -> Response:
        try:
            return json_response(explorer.source(name))
        except Gpt2Error as exc:
            return error_response(str(exc), 404)

    @router.get("/")
    async def page() -> Response:
        return static_file("index.html")

    @router.get(STATIC_PREFIX + "/{name}")
    async def static(name: str) -> Response:
        return static_file(name)

    add_guide_routes(router, {"Content-Security-Policy": CONTENT_SECURITY_POLICY, "Cache-Control": "no-cache"})

    return router


def static_file(name: str) -> Response:
    """A file of the page, from the package; only the files there, never a path outside it."""
    files = {p.name: p for p in STATIC.iterdir() if p.is_file()}
    if name not in files:
        return error_response(f"no such file: {name}", 404)
    media_type = MEDIA_TYPES.get(Path(name).suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"
    if media_type.startswith("text/") or media_type == "application/javascript":
        media_type += "; charset=utf-8"
    return Response(
        files[name].read_bytes(),
        media_type=media_type,
        headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY, "Cache-Control": "no-cache"},
    )
