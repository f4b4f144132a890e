"""The routes: OpenAI's (`openai_router`) and the server's own (`service_router`).

    GET  /v1/models              the served model, in OpenAI's list format
    GET  /v1/models/{id}         one model, or 404 model_not_found
    POST /v1/completions         completions, streamed (server-sent events) or not
    POST /v1/chat/completions    chat: the conversation rendered by the chat template, then as completions
    GET  /health                 public: 200 when the model is ready, 503 while it loads
    GET  /metrics                Prometheus text
    POST /tokenize               {"content": text} -> {"tokens": [...], "count", "max_model_len"}
    POST /detokenize             {"tokens": [...]} -> {"content": text, "prompt": text}

Routes find the model and the settings in `request.app.state.holder` and
`request.app.state.settings` (see `gpt2.server.app.create_app`), so other
routers mounted into the same app can do the same.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from .chat import ChatCompletion, parse_chat, prepare_chat
from .completions import Completion, prepare
from .errors import ApiError
from .metrics import CONTENT_TYPE
from .middleware import LOG_KEY
from .schemas import check_model, parse_completion, parse_detokenize, parse_json, parse_tokenize
from .settings import ServerSettings
from .state import ModelHolder

__all__ = ["openai_router", "service_router", "holder_of", "settings_of", "read_json"]

openai_router = APIRouter()
service_router = APIRouter()
T = TypeVar("T")
CLIENT_CLOSED = 499  # nginx's status for "the client closed the connection first", in the log only
STARTED = int(time.time())


def holder_of(request: Request) -> ModelHolder:
    holder: ModelHolder = request.app.state.holder
    return holder


def settings_of(request: Request) -> ServerSettings:
    settings: ServerSettings = request.app.state.settings
    return settings


async def read_json(request: Request) -> Any:
    """The body as strict JSON (see `gpt2.server.schemas.parse_json`); 400 or 413 otherwise."""
    return parse_json(await request.body())


def _log(request: Request) -> dict[str, Any]:
    extra: dict[str, Any] = request.scope.setdefault(LOG_KEY, {})
    return extra


class ClientGone(Exception):
    """The client closed the connection before its answer was ready."""


async def _until_disconnect(request: Request, work: Awaitable[T]) -> T:
    """`work`'s result, unless the client disconnects first (then the work is cancelled)."""
    task = asyncio.ensure_future(work)

    async def disconnected() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(disconnected())
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if task in done:
        return task.result()
    task.cancel()
    raise ClientGone


def model_card(holder: ModelHolder) -> dict[str, Any]:
    """OpenAI's model object, plus the chat template in force once the model is loaded."""
    card: dict[str, Any] = {"id": holder.name, "object": "model", "created": STARTED, "owned_by": "gpt2"}
    if holder.ready:
        template = holder.require().chat_template
        card["chat_template"] = {"name": template.name, "from": template.origin, "stop": list(template.stop)}
    return card


# --- OpenAI's routes --------------------------------------------------------------------------


@openai_router.get("/v1/models")
async def list_models(request: Request) -> dict[str, Any]:
    return {"object": "list", "data": [model_card(holder_of(request))]}


@openai_router.get("/v1/models/{model_id:path}")
async def retrieve_model(request: Request, model_id: str) -> dict[str, Any]:
    holder = holder_of(request)
    check_model(model_id, holder.name)
    return model_card(holder)


class SSEResponse(StreamingResponse):
    """A stream of server-sent events that calls `on_close` however it ends (finished, client
    gone, or the connection failing mid-send)."""

    media_type = "text/event-stream"

    def __init__(self, content: AsyncIterator[str], on_close: Callable[[], None]) -> None:
        super().__init__(content, headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self.on_close = on_close

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.on_close()


def _sse(data: dict[str, Any] | str) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)}\n\n"


@openai_router.post("/v1/completions")
async def completions(request: Request) -> Response:
    settings = settings_of(request)
    params = parse_completion(await read_json(request))
    loaded = holder_of(request).require()
    prepared = await run_in_threadpool(prepare, params, loaded.name, loaded.tokenizer, loaded.config, settings)
    completion = Completion(
        prepared,
        loaded.name,
        loaded.tokenizer,
        loaded.scheduler,
        deadline=time.monotonic() + settings.request_timeout,
    )
    prompt = params.prompts if len(params.prompts) > 1 else params.prompts[0]
    return await _answer(request, completion, prompt)


@openai_router.post("/v1/chat/completions")
async def chat_completions(request: Request) -> Response:
    settings = settings_of(request)
    chat = parse_chat(await read_json(request))
    loaded = holder_of(request).require()
    prepared = await run_in_threadpool(
        prepare_chat, chat, loaded.name, loaded.chat_template, loaded.tokenizer, loaded.config, settings
    )
    completion = ChatCompletion(
        prepared,
        loaded.name,
        loaded.tokenizer,
        loaded.scheduler,
        deadline=time.monotonic() + settings.request_timeout,
    )
    return await _answer(request, completion, chat.messages)


async def _answer(request: Request, completion: Completion, prompt: Any) -> Response:
    """Run a prepared completion (text or chat) on the scheduler and answer: the whole response,
    or a stream of server-sent events."""
    params = completion.params
    extra = _log(request)
    extra.update(id=completion.id, prompt_tokens=completion.prepared.prompt_tokens, n=len(completion.choices))
    if settings_of(request).log_prompts:
        extra["prompt"] = prompt
    completion.start()
    if not params.stream:
        try:
            result = await _until_disconnect(request, completion.response())
        except ClientGone:
            return Response(status_code=CLIENT_CLOSED)
        finally:
            extra["completion_tokens"] = completion.completion_tokens
        return JSONResponse(result)

    # Wait for the first piece before the status line goes out, so that a failure before any
    # text (the time limit reached in the queue) is still a proper HTTP error.
    pieces = completion.pieces()
    try:
        first = await _until_disconnect(request, pieces.__anext__())
    except ClientGone:
        return Response(status_code=CLIENT_CLOSED)
    except StopAsyncIteration:  # cannot happen: every choice ends with a piece
        first = None

    async def events() -> AsyncIterator[str]:
        try:
            for opening in completion.opening_chunks():
                yield _sse(opening)
            if first is not None and (chunk := completion.chunk(first)) is not None:
                yield _sse(chunk)
            async for piece in pieces:
                if (chunk := completion.chunk(piece)) is not None:
                    yield _sse(chunk)
            if params.include_usage:
                yield _sse(completion.usage_chunk())
        except ApiError as error:  # after the first chunk: the error travels in the stream
            yield _sse(error.body())
        finally:
            extra["completion_tokens"] = completion.completion_tokens
        yield _sse("[DONE]")

    return SSEResponse(events(), on_close=completion.cancel)


# --- the server's own routes ------------------------------------------------------------------


@service_router.get("/health")
async def health(request: Request) -> dict[str, Any]:
    holder = holder_of(request)
    holder.require()  # 503 while loading or failed
    return {"status": "ok", "model": holder.name}


@service_router.get("/metrics")
async def metrics(request: Request) -> Response:
    holder = holder_of(request)
    loaded = holder.require() if holder.ready else None
    scheduler = loaded.scheduler if loaded is not None else None
    gauges = {
        "gpt2_model_ready": ("1 when the model is loaded and serving", 1 if loaded else 0),
        "gpt2_queue_depth": ("sequences waiting for a batch row", scheduler.queue_depth if scheduler else 0),
        "gpt2_batch_size": ("sequences in the running batch", scheduler.batch_size if scheduler else 0),
        "gpt2_batch_capacity": ("the most sequences one step runs", scheduler.capacity if scheduler else 0),
    }
    return Response(holder.metrics.render(gauges), media_type=CONTENT_TYPE)


@service_router.post("/tokenize")
async def tokenize(request: Request) -> dict[str, Any]:
    text, with_pieces = parse_tokenize(await read_json(request))
    loaded = holder_of(request).require()
    tokenizer = loaded.tokenizer
    ids = await run_in_threadpool(tokenizer.encode, text, allowed_special="all")
    tokens: list[Any] = ids
    if with_pieces:
        tokens = [{"id": i, "piece": p} for i, p in zip(ids, tokenizer.decode_pieces(ids))]
    return {"tokens": tokens, "count": len(ids), "max_model_len": loaded.config.n_ctx}


@service_router.post("/detokenize")
async def detokenize(request: Request) -> dict[str, Any]:
    loaded = holder_of(request).require()
    ids = parse_detokenize(await read_json(request), loaded.config.vocab_size)
    text = loaded.tokenizer.decode(ids)
    return {"content": text, "prompt": text}  # llama-server's name, and vLLM's
