"""The model a server serves, and whether it is ready: the object every router shares.

A `ModelHolder` starts "loading" (the server already answers: `/health` says
503 until the weights are in), becomes "ready" when an engine is attached (its
scheduler thread starts then), or "failed" with the reason. Routes call
`holder.require()` to get the loaded model or a 503 in OpenAI's format.
Other routers mounted into the same app (the web explorer) reach it as
`request.app.state.holder`, and run their own work on the engine through
`await holder.run_on_engine(fn)`: in the scheduler's thread, between steps.

>>> from gpt2.config import Config
>>> from gpt2.params import init_params
>>> from gpt2.engines import load_engine
>>> from gpt2.tokenizer import Tokenizer
>>> holder = ModelHolder("tiny")
>>> holder.status
'loading'
>>> cfg = Config(n_layer=1, n_embd=8, n_head=2, n_ctx=16)
>>> _ = holder.attach(load_engine("pure", cfg, init_params(cfg, seed=0)), Tokenizer.gpt2())
>>> holder.status, holder.require().config.n_ctx
('ready', 16)
>>> holder.close()
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..chat_template import ChatTemplate, builtin_template, model_directory, resolve_template
from ..config import Config
from ..engines.base import Engine
from ..errors import Gpt2Error
from ..generation.errors import SchedulerError
from ..generation.scheduler import Scheduler
from ..tokenizer import Tokenizer
from .errors import scheduler_error, unavailable
from .logprobs import prompt_logprobs
from .metrics import Metrics
from .settings import ServerSettings

__all__ = ["ModelHolder", "Loaded", "default_model_name"]


@dataclass(frozen=True)
class Loaded:
    """A ready model: what the routes work with."""

    name: str
    engine: Engine
    tokenizer: Tokenizer
    config: Config
    scheduler: Scheduler
    chat_template: ChatTemplate = dataclasses.field(default_factory=lambda: builtin_template("plain", "default"))


def default_model_name(model: str) -> str:
    """The name clients use for a model: a hub name as given, a directory (or a weights file's
    directory) by its base name: `gpt2 serve -m runs/tiny` serves "tiny".

    >>> default_model_name("gpt2-medium")
    'gpt2-medium'
    """
    path = Path(model).expanduser()
    if path.exists():
        return (path if path.is_dir() else path.parent).resolve().name or model
    return model


class ModelHolder:
    def __init__(self, name: str, metrics: Metrics | None = None) -> None:
        if not isinstance(name, str) or not name:
            raise Gpt2Error("a served model needs a non-empty name")
        self.name = name
        self.metrics = metrics or Metrics()
        self.status = "loading"  # -> "ready" or "failed"
        self.error: str | None = None
        self._loaded: Loaded | None = None
        self._lock = threading.Lock()

    @property
    def ready(self) -> bool:
        return self._loaded is not None

    def attach(
        self,
        engine: Engine,
        tokenizer: Tokenizer,
        *,
        settings: ServerSettings | None = None,
        chat_template: ChatTemplate | None = None,
    ) -> Loaded:
        """Serve `engine`: its scheduler starts now (its own thread) with the settings' batch, queue
        and prefill chunk. Chat uses `chat_template`, else the settings' (--chat-template), else plain."""
        settings = settings or ServerSettings()
        template = chat_template or resolve_template(None, settings.chat_template)
        scheduler = Scheduler(
            engine,
            functools.partial(prompt_logprobs, tokenizer),
            max_batch=settings.max_batch,
            max_queue=settings.max_queue,
            metrics=self.metrics,
            prefill_chunk=settings.prefill_chunk,
        )
        scheduler.start()
        with self._lock:
            self._loaded = Loaded(self.name, engine, tokenizer, engine.config, scheduler, template)
            self.status, self.error = "ready", None
        return self._loaded

    def load(
        self,
        model: str,
        engine_name: str,
        options: Mapping[str, Any] | None = None,
        *,
        settings: ServerSettings | None = None,
        progress: Any = None,
    ) -> Loaded:
        """Read the weights, build the engine and attach it (blocking: run it in a thread to keep
        serving /health meanwhile). A failure is kept (`status` "failed", `error`) and raised.
        The engine is planned for serving (`plan_engine(..., serving=True)`: the torch engine takes
        the kernel made for many rows a step unless `options` name one)."""
        from ..engines import build_engine, plan_engine
        from ..weights import load_model

        try:
            plan = plan_engine(engine_name, serving=True, **(options or {}))
            template = resolve_template(model_directory(model), (settings or ServerSettings()).chat_template)
            config, params = load_model(model, progress=progress)
            engine = build_engine(plan, config, params)
            tokenizer = Tokenizer.for_model(model)
        except Gpt2Error as exc:
            self.fail(str(exc))
            raise
        return self.attach(engine, tokenizer, settings=settings, chat_template=template)

    def fail(self, message: str) -> None:
        with self._lock:
            self.status, self.error = "failed", message

    def require(self) -> Loaded:
        """The loaded model, or 503 (loading, failed) in OpenAI's format."""
        loaded = self._loaded
        if loaded is not None:
            return loaded
        if self.status == "failed":
            raise unavailable(f"the model failed to load: {self.error}", code="model_failed")
        raise unavailable("the model is loading; retry shortly", retry_after=5, code="model_loading")

    async def run_on_engine(self, fn: Callable[[Engine], Any]) -> Any:
        """`fn(engine)` in the scheduler's thread between two decoding steps; its result (503 when
        the scheduler has stopped)."""
        try:
            return await asyncio.wrap_future(self.require().scheduler.call(fn))
        except SchedulerError as exc:
            raise scheduler_error(exc) from None

    def close(self) -> None:
        """Stop the scheduler (requests still running get 503) and release the engine."""
        with self._lock:
            loaded, self._loaded = self._loaded, None
            if self.status == "ready":
                self.status = "loading"
        if loaded is not None:
            loaded.scheduler.stop()
            loaded.engine.close()
