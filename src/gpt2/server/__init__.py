"""`gpt2 serve`: GPT-2 behind OpenAI's completions API, many streams sharing one model.

    settings    ServerSettings: where to listen, the key, every limit (safe defaults)
    errors      ApiError: OpenAI's error object with its HTTP status
    schemas     request bodies checked field by field (400 naming the field)
    completions a request's choices on the scheduler (`gpt2.generation.scheduler`), back as
                OpenAI's responses or stream chunks; the scheduler's refusals as 429/503
    logprobs    OpenAI's logprobs object; echo scores the prompt itself
    state       ModelHolder: the model (loading -> ready), shared by every router
    metrics     Prometheus counters for /metrics
    middleware  the request log, the API key, the body limit (plain ASGI)
    routes      OpenAI's routes and the server's own      (FastAPI)
    app         create_app(holder, settings, routers=..., static=...)  (FastAPI)
    run         serve() in the foreground, BackgroundServer in a thread  (uvicorn)

Only `routes`, `app` and `run` need FastAPI and uvicorn (`pip install -e ".[serve]"`);
`create_app` is importable from here and imports them when called. See docs/server.md.

>>> from gpt2.server import ServerSettings
>>> ServerSettings().host
'127.0.0.1'
"""

from __future__ import annotations

from typing import Any

from .errors import ApiError, ServerError
from .settings import ServerSettings
from .state import ModelHolder

__all__ = ["ApiError", "ServerError", "ServerSettings", "ModelHolder", "create_app"]


def create_app(*args: Any, **kwargs: Any) -> Any:
    """`gpt2.server.app.create_app` (imported on first use: it needs FastAPI)."""
    from .app import create_app as create

    return create(*args, **kwargs)
