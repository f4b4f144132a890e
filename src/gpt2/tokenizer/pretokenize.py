"""GPT-2's pre-tokenisation: split text into words, numbers, punctuation runs and whitespace.

BPE never merges across these pieces. OpenAI wrote the rule as one regular
expression for the third-party `regex` module:

    's|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+

Python's `re` has no `\\p{L}` (any letter) or `\\p{N}` (any number), so we build
those two classes from `unicodedata`: every code point whose general category
starts with "L" or "N". That makes "²", "½", "Ⅻ" and "٣" numbers, as they are for
OpenAI. `\\s` must not be `re`'s either: `re` also counts U+001C..U+001F as space,
the `regex` module and tiktoken use Unicode's White_Space property, spelled out
below. The contractions are case-sensitive, as in GPT-2 ("'S" is not one).

>>> pretokenize("Hello world's  2½ apples!!\\n")
['Hello', ' world', "'s", ' ', ' 2½', ' apples', '!!', '\\n']

The classes follow the Unicode version of the running Python (`unicodedata.unidata_version`);
a character newer than that is neither letter nor number here.
"""

from __future__ import annotations

import functools
import re
import sys
import unicodedata

# Unicode's White_Space property (PropList.txt; unchanged since Unicode 6.3).
WHITESPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"


def _all_code_points() -> str:
    """Every code point U+0000..U+10FFFF as one string (surrogates included), in a few milliseconds.

    We write its UTF-32-LE bytes column by column with C-speed slice assignment
    (byte 0 is the low 8 bits of the code point, byte 1 the next 8, byte 2 the
    plane, byte 3 zero) instead of looping over 1.1 million integers.
    """
    n = sys.maxunicode + 1  # 17 planes of 65536 code points
    utf32 = bytearray(4 * n)
    utf32[0::4] = bytes(range(256)) * (n // 256)
    utf32[1::4] = b"".join(bytes((b,)) * 256 for b in range(256)) * (n // 65536)
    utf32[2::4] = b"".join(bytes((plane,)) * 65536 for plane in range(n // 65536))
    return utf32.decode("utf-32-le", "surrogatepass")


Ranges = list[tuple[int, int]]  # inclusive (first, last) code point ranges, in order


def _add(ranges: Ranges, first: int, last: int) -> None:
    """Append first..last to ranges, extending the last range when they touch."""
    if ranges and ranges[-1][1] + 1 == first:
        ranges[-1] = (ranges[-1][0], last)
    else:
        ranges.append((first, last))


def letter_and_number_ranges() -> tuple[Ranges, Ranges]:
    """Code point ranges of general category L* (letters) and N* (numbers).

    Asking `unicodedata.category` about all 1.1 million code points takes a
    quarter of a second, so we only ask about the candidates: `re`'s `\\w`
    without "_" is `str.isalnum`, which includes every letter and every number
    (checked against the full scan in the tests), and a run that is all letters
    (the CJK and Hangul blocks) needs no per-character look-up at all.
    """
    letters: Ranges = []
    numbers: Ranges = []
    category = unicodedata.category
    for run in re.finditer(r"[^\W_]+", _all_code_points()):
        start, text = run.start(), run.group()
        if text.isalpha():  # str.isalpha is exactly categories Lu Ll Lt Lm Lo
            _add(letters, start, run.end() - 1)
            continue
        for offset, char in enumerate(text):
            kind = category(char)[0]
            if kind == "L":
                _add(letters, start + offset, start + offset)
            elif kind == "N":
                _add(numbers, start + offset, start + offset)
    return letters, numbers


def character_class(ranges: Ranges) -> str:
    """[(65, 67), (97, 97)] -> 'A-Ca' (the inside of a `re` character class)."""
    return "".join(
        re.escape(chr(first)) if first == last else f"{re.escape(chr(first))}-{re.escape(chr(last))}"
        for first, last in ranges
    )


def gpt2_pattern_source() -> str:
    """GPT-2's pattern with \\p{L}, \\p{N}, \\s and \\S spelled out as explicit classes."""
    letters, numbers = letter_and_number_ranges()
    L, N, S = character_class(letters), character_class(numbers), WHITESPACE
    return (
        r"'s|'t|'re|'ve|'m|'ll|'d"
        rf"| ?[{L}]+| ?[{N}]+| ?[^{S}{L}{N}]+"
        rf"|[{S}]+(?![^{S}])|[{S}]+"
    )


@functools.cache
def gpt2_pattern() -> re.Pattern[str]:
    """The compiled pattern, built once per process on first use (about 50 ms)."""
    return re.compile(gpt2_pattern_source())


def pretokenize(text: str) -> list[str]:
    """Split text into the pieces BPE works on; "".join(pieces) == text."""
    return gpt2_pattern().findall(text)
