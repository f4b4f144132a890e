"""Chapter 1, text to tokens."""

from __future__ import annotations

from collections.abc import Iterable

from gpt2.tokenizer import Tokenizer


def single_token_spellings(words: Iterable[str], tok: Tokenizer | None = None) -> list[str]:
    """Exercise 1: the spellings that are one token each."""
    tok = tok or Tokenizer.gpt2()
    return [w for w in words if len(tok.encode(w)) == 1]


def longest_token(tok: Tokenizer | None = None) -> tuple[int, bytes]:
    """Exercise 2: the id and bytes of the longest token (the first of them, by id, on a tie)."""
    tok = tok or Tokenizer.gpt2()
    data, token = max(((b, i) for b, i in tok.encoder.items()), key=lambda item: (len(item[0]), -item[1]))
    return token, data


def safe_cuts(text: str, tok: Tokenizer | None = None) -> list[int]:
    """Exercise 3: positions where cutting the text and tokenising both halves changes nothing."""
    tok = tok or Tokenizer.gpt2()
    whole = tok.encode(text)
    return [i for i in range(1, len(text)) if tok.encode(text[:i]) + tok.encode(text[i:]) == whole]
