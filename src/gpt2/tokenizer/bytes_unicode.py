"""GPT-2's reversible map between the 256 byte values and 256 printable characters.

OpenAI's vocabulary files (`encoder.json`, `vocab.bpe`) and Hugging Face's
(`vocab.json`, `merges.txt`) store each token's *bytes* as a text string. Bytes
that are printable Latin-1 characters stand for themselves; the other 68 (control
characters, space, 0x7F-0xA0, 0xAD) are shifted up to U+0100 and beyond, in byte
order. So a space is stored as "Ġ" (U+0120) and a newline as "Ċ" (U+010A):

>>> BYTE_TO_CHAR[ord(" ")], BYTE_TO_CHAR[ord("\\n")]
('Ġ', 'Ċ')
>>> token_string_to_bytes("Ġworld")
b' world'

The tokenizer itself works on raw bytes; this map is only needed to read those
files and to show a token the way the files spell it.
"""

from __future__ import annotations

from .errors import TokenizerError


def _printable_bytes() -> list[int]:
    """Bytes that stand for themselves: '!'..'~', '¡'..'¬', '®'..'ÿ'."""
    return [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]


def bytes_to_unicode() -> dict[int, str]:
    """The byte -> character table, built exactly as GPT-2's `encoder.py` defines it."""
    printable = _printable_bytes()
    table = {b: chr(b) for b in printable}
    shift = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + shift)  # the next unused character past Latin-1
            shift += 1
    return table


BYTE_TO_CHAR: dict[int, str] = bytes_to_unicode()
CHAR_TO_BYTE: dict[str, int] = {c: b for b, c in BYTE_TO_CHAR.items()}


def bytes_to_token_string(data: bytes) -> str:
    """b' world' -> 'Ġworld' (the spelling used in encoder.json and vocab.bpe)."""
    return "".join(BYTE_TO_CHAR[b] for b in data)


def token_string_to_bytes(text: str) -> bytes:
    """'Ġworld' -> b' world'. Raises TokenizerError for a character outside the 256-character alphabet."""
    try:
        return bytes(CHAR_TO_BYTE[c] for c in text)
    except KeyError as exc:
        raise TokenizerError(
            f"{text!r} is not a byte-level token string: {exc.args[0]!r} is not one of GPT-2's 256 byte characters"
        ) from None
