"""What a scheduler counts as it runs: steps, rows, tokens, prefills and the time each took.

One writer (the scheduler's thread) updates the plain numbers; `tokens_per_second`
reads a window of recent steps under a lock, so another thread (the server's
`/metrics` page, which renders these through `gpt2.server.metrics.Metrics`, a
subclass) may ask at any time.

>>> stats = SchedulerStats()
>>> stats.tokens(prompt=5, generated=2)
>>> stats.step(rows=2, seconds=0.01, now=100.0)
>>> stats.steps, stats.step_rows, stats.generation_tokens, stats.tokens_per_second(now=100.0)
(1, 2, 2, 0.2)
"""

from __future__ import annotations

import threading
import time
from collections import deque

__all__ = ["SchedulerStats", "RATE_WINDOW"]

RATE_WINDOW = 10.0  # seconds over which tokens/s is measured


class SchedulerStats:
    def __init__(self) -> None:
        self.prompt_tokens = 0
        self.generation_tokens = 0
        self.steps = 0  # batched decoding steps
        self.step_rows = 0  # rows over all steps: step_rows / steps is the mean batch size
        self.step_seconds = 0.0  # in the engine's batched forward passes of decoding steps
        self.prefills = 0
        self.prefill_seconds = 0.0  # in the engine's prefill passes
        self.busy_seconds = 0.0  # in the scheduler's iterations: the above, plus sampling and bookkeeping
        self.cancelled = 0  # sequences dropped because their client went away
        self.timed_out = 0  # sequences ended by the request time limit
        self._recent: deque[tuple[float, int]] = deque()  # (time, tokens) of recent steps
        self._lock = threading.Lock()

    def tokens(self, *, prompt: int = 0, generated: int = 0) -> None:
        self.prompt_tokens += prompt
        self.generation_tokens += generated

    def step(self, rows: int, seconds: float, now: float | None = None) -> None:
        """One decoding step of `rows` sequences (each made one token)."""
        now = time.monotonic() if now is None else now
        self.steps += 1
        self.step_rows += rows
        self.step_seconds += seconds
        with self._lock:
            self._recent.append((now, rows))
            while self._recent and self._recent[0][0] < now - RATE_WINDOW:
                self._recent.popleft()

    def tokens_per_second(self, now: float | None = None) -> float:
        """Tokens decoded per second over the last RATE_WINDOW seconds."""
        now = time.monotonic() if now is None else now
        with self._lock:
            return sum(n for t, n in self._recent if t >= now - RATE_WINDOW) / RATE_WINDOW
