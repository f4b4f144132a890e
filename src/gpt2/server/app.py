"""The app factory: the FastAPI application `gpt2 serve` runs, and others can extend.

    holder = ModelHolder("gpt2")                       # the model: loading -> ready
    app = create_app(holder, ServerSettings(api_key="secret"))
    holder.load("gpt2", "numpy", settings=settings)   # in a thread: /health answers 503 meanwhile

`create_app` includes OpenAI's routes and the server's own (see
`gpt2.server.routes`), then any `routers` given (FastAPI `APIRouter`s: the
web explorer's `/api/...`), then `static`, a directory served at a path
(`("/", directory)` serves its index.html at `/`; routes win over files).
Every route, mounted ones included, goes through the same middleware: the
request log, the Host and Origin rules (`gpt2.server.origins`), the API key (all
paths but `settings.public_paths`) and the body limit; every error leaves in
OpenAI's format. The model is
`request.app.state.holder`, the settings `request.app.state.settings`.
Shutting the app down (uvicorn's lifespan) stops the scheduler and closes
the engine.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import cast

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.staticfiles import StaticFiles

from ..errors import Gpt2Error
from .errors import ApiError, bad_request, internal_error
from .middleware import ApiKeyAuth, BodyLimit, RequestLog
from .origins import RequestGuard
from .routes import openai_router, service_router
from .settings import ServerSettings
from .state import ModelHolder

__all__ = ["create_app"]

log = logging.getLogger("gpt2.server")


def create_app(
    holder: ModelHolder,
    settings: ServerSettings | None = None,
    *,
    routers: Sequence[APIRouter] = (),
    static: tuple[str, str | Path] | None = None,
    title: str = "gpt2",
) -> FastAPI:
    """The server's app over `holder` (see the module docstring)."""
    settings = settings or ServerSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        holder.close()

    # No /docs or /openapi.json: the interactive docs load scripts from a CDN, and a model
    # server has no business sending a browser elsewhere.
    app = FastAPI(title=title, docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.holder = holder
    app.state.settings = settings
    for router in (openai_router, service_router, *routers):
        app.include_router(router)
    if static is not None:
        path, directory = static
        app.mount(path, StaticFiles(directory=str(directory), html=True), name="static")
    _add_error_handlers(app)
    # add_middleware puts each one outside the ones before it: the log sees everything.
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(ApiKeyAuth, api_key=settings.api_key, public_paths=settings.public_paths)
    app.add_middleware(RequestGuard, bound_host=settings.host, allowed_hosts=settings.allowed_hosts)
    app.add_middleware(RequestLog, metrics=holder.metrics, log_prompts=settings.log_prompts)
    return app


def _json_error(error: ApiError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: Exception) -> JSONResponse:
        return _json_error(cast(ApiError, exc))  # registered for ApiError: it is one

    @app.exception_handler(Gpt2Error)
    async def library_error(request: Request, exc: Exception) -> JSONResponse:
        # The library's typed errors are about what it was given: the client's input.
        return _json_error(bad_request(str(exc)))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        exc = cast(StarletteHTTPException, exc)
        if exc.status_code == 404:
            message = f"Invalid URL ({request.method} {request.url.path})"
        elif exc.status_code == 405:
            message = f"Method {request.method} is not allowed for {request.url.path}"
        else:
            message = str(exc.detail)
        error = ApiError(
            exc.status_code, message, type="invalid_request_error" if exc.status_code < 500 else "server_error"
        )
        error.headers.update(exc.headers or {})
        return _json_error(error)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: Exception) -> JSONResponse:
        return _json_error(bad_request(f"the request is not valid: {exc}"))

    @app.exception_handler(ClientDisconnect)
    async def client_gone(request: Request, exc: Exception) -> Response:
        # The client left (or was closed for being too slow) while its body was read: no one to answer.
        return Response(status_code=499)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("error while answering %s %s", request.method, request.url.path, exc_info=exc)
        return _json_error(internal_error())
