"""The explorer's long work, off the event loop and bounded: a request never holds up another.

A trace over 128 tokens on the pure engine takes seconds, and a comparison of
three engines longer. `WorkPool.run` runs such work in a worker thread, at most
`workers` at a time; up to `waiting` more wait for a thread, and a request beyond
that is answered 503 at once (`Retry-After: 1`) instead of queueing without end.
The event loop stays free, so `/api/info`, `/health` and the other requests are
answered meanwhile. Work for one engine is still done one request at a time (see
`Explorer.run_on_engine`).

A client that goes away cancels its work: not yet started, it never starts;
started, it stops at its next check (`check_cancelled`, called before each
engine's pass: a comparison stops between two engines). A pass already running
finishes, since plain Python cannot be interrupted safely.

>>> import asyncio
>>> pool = WorkPool(workers=1, waiting=0)
>>> asyncio.run(pool.run(lambda: 6 * 7))
42
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from .errors import ExploreError

__all__ = ["WorkPool", "Busy", "Cancelled", "check_cancelled"]

_CANCEL: contextvars.ContextVar[threading.Event | None] = contextvars.ContextVar("gpt2_explore_cancel", default=None)


class Busy(ExploreError):
    """Every worker and waiting place is taken (the API answers 503)."""


class Cancelled(ExploreError):
    """The client that asked for this work has gone."""


def check_cancelled() -> None:
    """Raise Cancelled if the request this thread works for was abandoned by its client."""
    event = _CANCEL.get()
    if event is not None and event.is_set():
        raise Cancelled("the client went away")


class WorkPool:
    """At most `workers` jobs in threads at once, `waiting` more queued, the rest refused (Busy)."""

    def __init__(self, workers: int = 2, waiting: int = 8) -> None:
        if workers < 1 or waiting < 0:
            raise ValueError(f"a work pool needs workers >= 1 and waiting >= 0, got {workers} and {waiting}")
        self.workers, self.waiting = workers, waiting
        self.pending = 0  # jobs running or waiting (touched on the event loop only)
        self._limiter: Any = None  # anyio's CapacityLimiter, made in the event loop on first use

    async def run(self, work: Callable[[], Any], gone: Callable[[], Awaitable[None]] | None = None) -> Any:
        """`work()` in a worker thread; its result. `gone`: awaitable that returns when the client
        disconnects; the work is then cancelled and `Cancelled` raised here."""
        import anyio.to_thread

        if self.pending >= self.workers + self.waiting:
            raise Busy(f"the explorer is busy with {self.pending} requests; retry in a moment")
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.workers)
        cancel = threading.Event()
        self.pending += 1

        async def job() -> Any:
            try:
                _CANCEL.set(cancel)  # the worker thread runs in a copy of this task's context
                return await anyio.to_thread.run_sync(_checked, work, limiter=self._limiter)
            finally:
                self.pending -= 1

        task = asyncio.ensure_future(job())
        task.add_done_callback(_quiet)
        if gone is None:
            return await task
        watcher = asyncio.ensure_future(gone())
        try:
            await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watcher.cancel()
        if task.done():
            return task.result()
        cancel.set()  # the thread stops at its next check; `pending` counts it until it does
        raise Cancelled("the client went away")


def _quiet(task: asyncio.Future[Any]) -> None:
    """Retrieve an abandoned job's outcome, so that asyncio does not log it as never retrieved."""
    if not task.cancelled():
        task.exception()


def _checked(work: Callable[[], Any]) -> Any:
    check_cancelled()  # abandoned while it waited for a thread: never start
    return work()
