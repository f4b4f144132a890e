"""Progress bars for the command line (the library itself never prints: it calls these
only when a command passes one in as its `progress` callback).

>>> import io
>>> out = io.StringIO()
>>> bar = DownloadBar(out, width=10)
>>> bar("model.safetensors", 50, 100); bar("model.safetensors", 100, 100)
>>> out.getvalue().splitlines()[-1].strip()[:32]
'model.safetensors [##########] 1'
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


class DownloadBar:
    """A `progress(filename, done, total)` callback drawing one line per file on `stream`."""

    def __init__(
        self,
        stream: TextIO | None = None,
        width: int = 30,
        min_interval_s: float = 0.1,
        amount: Callable[[int], str] = human_bytes,
    ) -> None:
        self.stream = stream or sys.stderr
        self.width = width
        self.min_interval_s = min_interval_s
        self.amount = amount  # how a count is shown: bytes by default
        self._last_draw = 0.0
        self._current: str | None = None

    def __call__(self, filename: str, done: int, total: int | None) -> None:
        finished = total is not None and done >= total
        now = time.monotonic()
        if not finished and filename == self._current and now - self._last_draw < self.min_interval_s:
            return
        self._current, self._last_draw = filename, now
        if total:
            filled = int(self.width * min(done, total) / total)
            bar = "#" * filled + "." * (self.width - filled)
            line = f"{filename} [{bar}] {self.amount(done)} / {self.amount(total)}"
        else:
            line = f"{filename} {self.amount(done)}"
        self.stream.write("\r" + line + ("\n" if finished else ""))
        self.stream.flush()


class BytesBar:
    """A `progress(done, total)` callback for one labelled job: writing a file (`gpt2
    convert`), or with `amount` set, counting anything else (`gpt2 eval`'s windows)."""

    def __init__(self, label: str, stream: TextIO | None = None, amount: Callable[[int], str] = human_bytes) -> None:
        self._bar = DownloadBar(stream, amount=amount)
        self.label = label

    def __call__(self, done: int, total: int) -> None:
        self._bar(self.label, done, total)
