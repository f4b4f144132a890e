"""What the continuous-batching scheduler refuses with, in the library's words.

The scheduler (`gpt2.generation.scheduler`) knows nothing of HTTP: it raises
(or hands a sequence's sink) one of these, and whoever drives it decides what
they mean. The server answers `Overloaded` errors with 503 or 429 and a
`Retry-After` (`gpt2.server.errors.scheduler_error`); the command line prints
the message, as for any `Gpt2Error`.

    SchedulerError        the family
      Overloaded          no place now; `retry_after` seconds until one is likely
        QueueFull         every batch row and queue place is taken (429)
        QueueTimeout      a sequence reached its time limit still waiting (503)
        ShuttingDown      the scheduler was stopped (503)
      SchedulerFailed     a step failed (an engine error, a bug): details in the log (500)

>>> err = QueueFull(retry_after=3)
>>> isinstance(err, Overloaded), err.retry_after
(True, 3)
>>> str(err)
'every batch row and queue place is taken; retry after 3 s'
"""

from __future__ import annotations

from ..errors import Gpt2Error

__all__ = ["SchedulerError", "Overloaded", "QueueFull", "QueueTimeout", "ShuttingDown", "SchedulerFailed"]


class SchedulerError(Gpt2Error):
    """Base class of the scheduler's refusals."""


class Overloaded(SchedulerError):
    """No place for the work now; `retry_after`: seconds until one is likely (None: unknown)."""

    def __init__(self, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class QueueFull(Overloaded):
    """Every row of the batch and every place in the queue is taken."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            f"every batch row and queue place is taken; retry after {retry_after} s", retry_after=retry_after
        )


class QueueTimeout(Overloaded):
    """A sequence reached its time limit while it waited for a place in the batch."""

    def __init__(self, retry_after: int | None = None) -> None:
        super().__init__("the request reached its time limit while waiting for a place in the batch", retry_after)


class ShuttingDown(Overloaded):
    """The scheduler has stopped (or is stopping): nothing more runs."""

    def __init__(self, message: str = "the scheduler is shutting down") -> None:
        super().__init__(message)


class SchedulerFailed(SchedulerError):
    """A step failed (an engine error or a bug); the details go to the log, not to the caller."""

    def __init__(self, message: str = "the scheduler had an error while generating") -> None:
        super().__init__(message)
