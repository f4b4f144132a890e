"""Counters for `GET /metrics`, in Prometheus' text format.

The scheduler's thread and the event loop both update these; each number has
one writer (the loop counts requests, the scheduler counts steps and tokens),
so plain integers are enough. Gauges (queue depth, batch size) are read from
the scheduler when the page is rendered.

>>> m = Metrics()
>>> m.request("/v1/completions", 200)
>>> m.tokens(prompt=5, generated=16)
>>> text = m.render({"gpt2_queue_depth": ("sequences waiting for a batch row", 0)})
>>> 'gpt2_requests_total{route="/v1/completions",status="200"} 1' in text
True
>>> "gpt2_generation_tokens_total 16" in text
True
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Mapping

__all__ = ["Metrics", "CONTENT_TYPE"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
RATE_WINDOW = 10.0  # seconds over which tokens/s is measured


class Metrics:
    def __init__(self) -> None:
        self.requests: Counter[tuple[str, int]] = Counter()
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

    def request(self, route: str, status: int) -> None:
        self.requests[(route, status)] += 1

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

    def render(self, gauges: Mapping[str, tuple[str, float]]) -> str:
        """The exposition text; `gauges` maps a name to (help, value)."""
        lines: list[str] = []

        def metric(name: str, kind: str, help: str, samples: list[tuple[str, float]]) -> None:
            lines.append(f"# HELP {name} {help}")
            lines.append(f"# TYPE {name} {kind}")
            lines.extend(f"{name}{labels} {_number(value)}" for labels, value in samples)

        requests = sorted(self.requests.items())
        metric(
            "gpt2_requests_total",
            "counter",
            "HTTP requests answered, by route and status",
            [(f'{{route="{_label(r)}",status="{s}"}}', n) for (r, s), n in requests],
        )
        metric("gpt2_prompt_tokens_total", "counter", "prompt tokens processed", [("", self.prompt_tokens)])
        metric("gpt2_generation_tokens_total", "counter", "tokens generated", [("", self.generation_tokens)])
        metric("gpt2_steps_total", "counter", "batched decoding steps", [("", self.steps)])
        metric("gpt2_step_rows_total", "counter", "sequences over all decoding steps", [("", self.step_rows)])
        metric("gpt2_step_seconds_total", "counter", "engine time in decoding steps", [("", self.step_seconds)])
        metric("gpt2_prefills_total", "counter", "prompt prefills (forward passes)", [("", self.prefills)])
        metric("gpt2_prefill_seconds_total", "counter", "engine time in prefills", [("", self.prefill_seconds)])
        metric(
            "gpt2_scheduler_busy_seconds_total",
            "counter",
            "scheduler time: engine passes plus sampling and bookkeeping",
            [("", self.busy_seconds)],
        )
        metric("gpt2_sequences_cancelled_total", "counter", "sequences whose client went away", [("", self.cancelled)])
        metric("gpt2_sequences_timed_out_total", "counter", "sequences ended by the time limit", [("", self.timed_out)])
        metric(
            "gpt2_tokens_per_second",
            "gauge",
            f"tokens decoded per second over the last {RATE_WINDOW:g} s",
            [("", self.tokens_per_second())],
        )
        for name, (help, value) in gauges.items():
            metric(name, "gauge", help, [("", value)])
        return "\n".join(lines) + "\n"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))
