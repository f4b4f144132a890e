"""GPT-2's pre-tokenisation: split text into words, numbers, punctuation runs and whitespace.

BPE never merges across these pieces. OpenAI wrote the rule as one regular
expression for the third-party `regex` module:

    's|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+

Python's `re` has no `\\p{L}` (any letter) or `\\p{N}` (any number), so we spell
those two classes out: every code point whose general category starts with "L"
or "N", which makes "²", "½", "Ⅻ" and "٣" numbers, as they are for OpenAI. The
categories come from a table shipped in the package (`unicode_classes.py`) for
Unicode 16.0, the version tiktoken's regex uses, not from the running Python's
`unicodedata` (13.0 to 15.1 on Python 3.10 to 3.13): a character assigned since
then, followed by "'s", would otherwise split, and encode, differently. `\\s`
must not be `re`'s either: `re` also counts U+001C..U+001F as space, the `regex`
module and tiktoken use Unicode's White_Space property, spelled out below. The
contractions are case-sensitive, as in GPT-2 ("'S" is not one).

>>> pretokenize("Hello world's  2½ apples!!\\n")
['Hello', ' world', "'s", ' ', ' 2½', ' apples', '!!', '\\n']
>>> pretokenize("\\U000105c0's") == ["\\U000105c0", "'s"]  # TODHRI LETTER A (Unicode 16.0) is a letter
True
"""

from __future__ import annotations

import functools
import re

from . import unicode_classes

# Unicode's White_Space property (PropList.txt; unchanged since Unicode 6.3).
WHITESPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
UNICODE_VERSION = unicode_classes.UNICODE_VERSION

Ranges = list[tuple[int, int]]  # inclusive (first, last) code point ranges, in order


def parse_ranges(spec: str) -> Ranges:
    """'41-5A 61-7A AA' -> [(65, 90), (97, 122), (170, 170)] (the format of unicode_classes.py)."""
    ranges = []
    for item in spec.split():
        first, _, last = item.partition("-")
        ranges.append((int(first, 16), int(last or first, 16)))
    return ranges


def letter_and_number_ranges() -> tuple[Ranges, Ranges]:
    """Code point ranges of general category L* (letters) and N* (numbers), Unicode 16.0."""
    return parse_ranges(unicode_classes.LETTERS), parse_ranges(unicode_classes.NUMBERS)


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
    """The compiled pattern, built once per process on first use (about 25 ms)."""
    return re.compile(gpt2_pattern_source())


def pretokenize(text: str) -> list[str]:
    """Split text into the pieces BPE works on; "".join(pieces) == text."""
    return gpt2_pattern().findall(text)
