"""What the Tokenizer accepts: its arguments checked (and texts normalised) as tiktoken takes them.

Every user mistake becomes a TokenizerError naming it, never a TypeError from deep inside:

>>> checked_text("caf\\u00e9 \\ud83d")  # a lone surrogate becomes U+FFFD, as in tiktoken
'café �'
>>> checked_id(995, [b"a"] * 1000)
995
>>> checked_id(2.0, [b"a"] * 1000)
Traceback (most recent call last):
...
gpt2.tokenizer.errors.TokenizerError: token ids must be integers, got 2.0
>>> checked_batch("hello", "encode_batch", "texts (strings)", is_text)
Traceback (most recent call last):
...
gpt2.tokenizer.errors.TokenizerError: encode_batch takes a list of texts (strings), got str

`build_decoder` checks the vocabulary itself as it builds the id -> bytes table.
"""

from __future__ import annotations

import functools
import operator
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, SupportsIndex, cast

from .errors import TokenizerError


def checked_text(text: object) -> str:
    """Refuse non-strings; replace lone surrogates as tiktoken does (so the ids stay identical)."""
    if not isinstance(text, str):
        raise TokenizerError(f"can only tokenize str, got {type(text).__name__}")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            # A surrogate pair becomes its character, a lone surrogate U+FFFD.
            text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def checked_id(token: object, decoder: list[bytes | None]) -> int:
    """`token` as an int if it is an id of `decoder` (the id -> bytes table), else a TokenizerError."""
    if isinstance(token, bool) or isinstance(token, (str, bytes, float)):
        raise TokenizerError(f"token ids must be integers, got {token!r}")
    try:
        value = operator.index(cast(SupportsIndex, token))  # accepts NumPy and PyTorch integer scalars too
    except TypeError:
        raise TokenizerError(f"token ids must be integers, got {token!r}") from None
    if not 0 <= value < len(decoder) or decoder[value] is None:
        raise TokenizerError(f"token id {value} is not in the vocabulary (valid ids: 0..{len(decoder) - 1})")
    return value


def special_set(value: object, argument: str, *, known: frozenset[str], everything: frozenset[str]) -> frozenset[str]:
    """allowed_special or disallowed_special as a set: `everything` for "all", else a collection of
    the `known` special tokens."""
    if value == "all":
        return everything
    try:
        tokens = frozenset(value) if isinstance(value, Iterable) and not isinstance(value, str) else None
    except TypeError:  # unhashable items
        tokens = None
    if tokens is None or not all(isinstance(t, str) for t in tokens):
        raise TokenizerError(f"{argument} must be 'all' or a collection of special-token strings, got {value!r}")
    unknown = tokens - known
    if unknown:
        raise TokenizerError(f"{argument}: {sorted(unknown)} not special tokens of this tokenizer ({sorted(known)})")
    return tokens


def allowed_special_tokens(
    text: str, allowed_special: object, disallowed_special: object, known: frozenset[str]
) -> frozenset[str]:
    """The special tokens `encode` turns into their ids, by tiktoken's rules; text holding one
    that is disallowed is refused.

    >>> known = frozenset({"<|endoftext|>"})
    >>> sorted(allowed_special_tokens("hi<|endoftext|>", "all", "all", known))
    ['<|endoftext|>']
    >>> allowed_special_tokens("hi<|endoftext|>", frozenset(), (), known)  # encoded as plain text
    frozenset()
    >>> allowed_special_tokens("hi<|endoftext|>", frozenset(), "all", known)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    gpt2.tokenizer.errors.TokenizerError: the text contains the special token '<|endoftext|>', refused by default: ...
    """
    allowed = special_set(allowed_special, "allowed_special", known=known, everything=known)
    disallowed = special_set(disallowed_special, "disallowed_special", known=known, everything=known - allowed)
    if disallowed:
        found = special_regex(frozenset(disallowed)).search(text)
        if found:
            raise TokenizerError(
                f"the text contains the special token {found.group()!r}, refused by default: pass "
                f"allowed_special={{{found.group()!r}}} to encode it as that token, "
                "or disallowed_special=() to encode it as plain text"
            )
    return allowed


@functools.lru_cache(maxsize=64)
def special_regex(tokens: frozenset[str]) -> re.Pattern[str]:
    """A pattern matching any of the special tokens."""
    # Longest first, so a special token that extends another wins.
    return re.compile("|".join(re.escape(t) for t in sorted(tokens, key=len, reverse=True)))


def checked_batch(items: object, method: str, what: str, is_item: Callable[[object], bool]) -> list[Any]:
    """The items of a batch as a list, refusing a lone text or id list where a list of them is due."""
    if isinstance(items, (str, bytes)) or not isinstance(items, Iterable):
        raise TokenizerError(f"{method} takes a list of {what}, got {type(items).__name__}")
    items = list(items)
    for item in items:
        if not is_item(item):
            raise TokenizerError(f"{method} takes a list of {what}, got an item of type {type(item).__name__}")
    return items


def is_text(item: object) -> bool:
    return isinstance(item, str)


def is_ids(item: object) -> bool:
    return isinstance(item, Iterable) and not isinstance(item, (str, bytes))


def check_threads(num_threads: object) -> None:
    if isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 1:
        raise TokenizerError(f"num_threads must be a positive integer, got {num_threads!r}")


def build_decoder(encoder: Mapping[bytes, int], special_tokens: Mapping[str, int]) -> list[bytes | None]:
    """id -> bytes as a list (None where no token has that id), refusing a vocabulary whose ids
    are negative or shared."""
    all_ids = list(encoder.values()) + list(special_tokens.values())
    if not all_ids:
        raise TokenizerError("empty vocabulary")
    if min(all_ids) < 0:
        raise TokenizerError("token ids must be non-negative")
    decoder: list[bytes | None] = [None] * (max(all_ids) + 1)
    for data, token_id in encoder.items():
        decoder[token_id] = data
    for text, token_id in special_tokens.items():
        if decoder[token_id] is not None:
            raise TokenizerError(f"special token {text!r} reuses id {token_id}")
        decoder[token_id] = text.encode("utf-8")
    if len(set(encoder.values())) != len(encoder):
        raise TokenizerError("two tokens share an id")
    return decoder
