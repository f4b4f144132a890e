"""Progress for the command line (the library itself never prints: it calls these only
when a command passes one in as its `progress` callback).

On a terminal a bar is redrawn in place (at most ten times a second); anywhere else
(a log file, CI) the same text becomes a line at every 5% and at the end, so a log
shows the job moving without thousands of carriage returns (a job done within two
seconds writes only its last line there). Every bar shows how much
is done, the rate, the elapsed time and, once it is known, the time left.

>>> import io
>>> out = io.StringIO()                      # not a terminal: a line every 5%
>>> bar = DownloadBar(out, width=10, log_after_s=0)
>>> bar("model.safetensors", 50, 100); bar("model.safetensors", 100, 100)
>>> out.getvalue().splitlines()[-1][:44]
'model.safetensors [##########] 100 B / 100 B'
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO


def human_bytes(n: float) -> str:
    """Decimal units, as download sizes are usually quoted.

    >>> human_bytes(1536), human_bytes(548_118_077)
    ('1.5 KB', '548.1 MB')
    """
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def duration(seconds: float) -> str:
    """m:ss, or h:mm:ss from an hour.

    >>> duration(5.2), duration(65), duration(3725)
    ('0:05', '1:05', '1:02:05')
    """
    s = int(seconds + 0.5)
    h, rest = divmod(s, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


def is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


LOG_EVERY = 0.05  # off a terminal: one line per 5% of the job ...
LOG_AFTER_S = 2.0  # ... once it has run this long: a job of a second leaves one line in a log


class Bar:
    """One job of `total` units: `update(done)` redraws (terminal) or logs (elsewhere).

    `amount` shows a count (bytes by default), `rate_unit` names the rate; a total of
    None (a download with no length) shows the count and rate only.
    """

    def __init__(
        self,
        label: str,
        total: int | None,
        stream: TextIO | None = None,
        *,
        width: int = 30,
        amount: Callable[[int], str] = human_bytes,
        rate_unit: str = "/s",
        min_interval_s: float = 0.1,
        log_after_s: float | None = None,
        tty: bool | None = None,
    ) -> None:
        self.label, self.total = label, total
        self.log_after_s = LOG_AFTER_S if log_after_s is None else log_after_s
        self.stream = stream or sys.stderr
        self.width, self.amount, self.rate_unit = width, amount, rate_unit
        self.min_interval_s = min_interval_s
        self.tty = is_terminal(self.stream) if tty is None else tty
        self.started = time.monotonic()
        self._last_draw = 0.0
        self._logged = 0  # the last 5% step written to a log (the first line comes at 5%)
        self.finished = False
        self.shown = False  # a half-drawn line is on the terminal

    def text(self, done: int, now: float) -> str:
        """'label [####......] done / total  rate  elapsed  ETA left'."""
        elapsed = now - self.started
        rate = done / elapsed if elapsed > 0 else 0.0
        if self.total:
            filled = int(self.width * min(done, self.total) / self.total)
            head = f"{self.label} [{'#' * filled}{'.' * (self.width - filled)}] "
            head += f"{self.amount(done)} / {self.amount(self.total)}"
        else:
            head = f"{self.label} {self.amount(done)}"
        tail = []
        if elapsed >= 0.5 and int(rate):
            tail.append(f"{self.amount(int(rate))}{self.rate_unit}")
        tail.append(duration(elapsed))
        if self.total and 0 < done < self.total and elapsed >= 1.0 and rate > 0:
            tail.append(f"ETA {duration((self.total - done) / rate)}")
        return "  ".join([head, *tail])

    def update(self, done: int, total: int | None = None) -> None:
        if total is not None:
            self.total = total
        if self.finished:
            return
        now = time.monotonic()
        finished = self.total is not None and done >= self.total
        if self.tty:
            if not finished and now - self._last_draw < self.min_interval_s:
                return
            self._last_draw = now
            self.stream.write("\r\033[K" + self.text(done, now) + ("\n" if finished else ""))
            self.shown = not finished
        else:
            step = int(done / self.total / LOG_EVERY) if self.total else -1
            if not finished and (step <= self._logged or not self.total):
                return
            if now - self.started < self.log_after_s and not finished:
                return
            self._logged = step
            self.stream.write(self.text(done, now) + "\n")
        self.finished = finished
        self.stream.flush()

    def close(self) -> None:
        """End a half-drawn terminal line (before an error message, or when a job stops early)."""
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()
            self.shown = False
        self.finished = True


class DownloadBar:
    """A `progress(filename, done, total)` callback: one bar per file, with speed and ETA."""

    def __init__(
        self,
        stream: TextIO | None = None,
        width: int = 30,
        min_interval_s: float = 0.1,
        amount: Callable[[int], str] = human_bytes,
        log_after_s: float | None = None,
    ) -> None:
        self.stream = stream or sys.stderr
        self.width, self.min_interval_s, self.amount = width, min_interval_s, amount
        self.log_after_s = log_after_s
        self._bar: Bar | None = None

    def __call__(self, filename: str, done: int, total: int | None) -> None:
        if self._bar is None or self._bar.label != filename or (self._bar.finished and done < (total or 0)):
            self.close()
            self._bar = Bar(
                filename,
                total,
                self.stream,
                width=self.width,
                amount=self.amount,
                min_interval_s=self.min_interval_s,
                log_after_s=self.log_after_s,
            )
        self._bar.update(done, total)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


class BytesBar:
    """A `progress(done, total)` callback for one labelled job: writing a file (`gpt2
    convert`), or with `amount` and `rate_unit` set, counting anything else."""

    def __init__(
        self,
        label: str,
        stream: TextIO | None = None,
        amount: Callable[[int], str] = human_bytes,
        rate_unit: str = "/s",
    ) -> None:
        self.label, self.stream, self.amount, self.rate_unit = label, stream or sys.stderr, amount, rate_unit
        self._bar: Bar | None = None

    def __call__(self, done: int, total: int) -> None:
        if self._bar is None:
            self._bar = Bar(self.label, total, self.stream, amount=self.amount, rate_unit=self.rate_unit)
        self._bar.update(done, total)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
