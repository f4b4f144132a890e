"""Stop strings: end generation where the text contains one, even when it spans tokens.

Text arrives a piece at a time (each new token's text). `StopStrings.feed`
returns the part that is safe to show: text that might still turn out to be the
start of a stop string is held back until the next piece settles it. Generation
stops where a stop string is first complete (the one that ends first; of two
ending at the same character, the longer); everything before it is released,
the stop string itself and anything after it are cut. That point does not
depend on how the text was split into pieces, so streamed output equals
non-streamed output.

>>> stops = StopStrings(["\\n\\n", "THE END"])
>>> stops.feed("Once upon"), stops.feed(" a time.\\n"), stops.feed("\\nMore")
('Once upon', ' a time.', '')
>>> stops.stopped, stops.matched
(True, '\\n\\n')
"""

from __future__ import annotations

from collections.abc import Iterable

from ..errors import GenerationError

__all__ = ["StopStrings", "check_stop_strings"]

MAX_STOP_STRINGS = 16  # OpenAI takes up to 4; a generous bound keeps matching cheap


def check_stop_strings(stops: Iterable[str]) -> tuple[str, ...]:
    """The stop strings as a tuple: each a non-empty str, at most MAX_STOP_STRINGS of them."""
    if isinstance(stops, str):
        stops = (stops,)
    out = tuple(stops)
    if len(out) > MAX_STOP_STRINGS:
        raise GenerationError(f"at most {MAX_STOP_STRINGS} stop strings, got {len(out)}")
    for s in out:
        if not isinstance(s, str) or not s:
            raise GenerationError(f"a stop string must be non-empty text, got {s!r}")
    return out


class StopStrings:
    """Finds the first stop string in text that arrives in pieces (see the module docstring)."""

    def __init__(self, stops: Iterable[str]) -> None:
        self.stops = check_stop_strings(stops)
        self.held = ""  # text released by nobody yet: it may be the start of a stop string
        self.matched: str | None = None  # the stop string found, once found

    @property
    def stopped(self) -> bool:
        return self.matched is not None

    def feed(self, piece: str) -> str:
        """The text that can be released now that `piece` has arrived ("" once stopped)."""
        if self.stopped:
            return ""
        text = self.held + piece
        # (end, start, stop) of each stop string's first occurrence; the held text holds none
        found = [(i + len(s), i, s) for s in self.stops if (i := text.find(s)) >= 0]
        if found:
            _, start, self.matched = min(found)
            self.held = ""
            return text[:start]
        keep = self._undecided_suffix(text)
        self.held = text[len(text) - keep :]
        return text[: len(text) - keep]

    def flush(self) -> str:
        """At the end of generation: what was held back is plain text after all."""
        out, self.held = ("" if self.stopped else self.held), ""
        return out

    def _undecided_suffix(self, text: str) -> int:
        """The length of the longest end of `text` that is the start of some stop string."""
        longest = 0
        for s in self.stops:
            for n in range(min(len(s) - 1, len(text)), longest, -1):
                if text.endswith(s[:n]):
                    longest = n
                    break
        return longest
