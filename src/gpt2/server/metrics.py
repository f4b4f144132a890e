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

from collections import Counter
from collections.abc import Mapping

from ..generation.stats import RATE_WINDOW, SchedulerStats

__all__ = ["Metrics", "CONTENT_TYPE"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics(SchedulerStats):
    """The scheduler's counters (`SchedulerStats`) and the HTTP requests, as one page."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: Counter[tuple[str, int]] = Counter()

    def request(self, route: str, status: int) -> None:
        self.requests[(route, status)] += 1

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
