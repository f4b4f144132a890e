"""The Tokenizer: text <-> GPT-2 token ids, with tiktoken's API.

>>> tok = Tokenizer.gpt2()
>>> tok.encode("Hello world")
[15496, 995]
>>> tok.decode([15496, 995])
'Hello world'

Encoding is: pre-tokenise the text (`pretokenize.py`), turn each piece into
UTF-8 bytes, BPE-merge the bytes (`bpe.py`) and look up each part's id. Text
repeats its words, so the ids of each piece are cached (a dictionary, cleared
when it reaches `cache_size` entries); most pieces of ordinary text then cost one
dictionary look-up.
"""

from __future__ import annotations

import functools
import operator
import re
from collections.abc import Collection, Iterable, Mapping
from collections.abc import Set as AbstractSet
from itertools import chain
from pathlib import Path
from types import MappingProxyType
from typing import Literal

from .bpe import bpe_merge
from .errors import TokenizerError
from .loaders import (
    ENDOFTEXT,
    Vocabulary,
    default_special_tokens,
    find_vocabulary_files,
    read_byte_level_bpe,
    read_compact,
    read_tiktoken,
)
from .pretokenize import gpt2_pattern

# GPT-2's vocabulary, OpenAI's (https://github.com/openai/gpt-2), shipped under OpenAI's modified
# MIT licence: see src/gpt2/data/LICENSE-gpt2-vocab. Format: loaders.read_compact.
SHIPPED_VOCABULARY = Path(__file__).resolve().parent.parent / "data" / "gpt2-vocab.bin"

# Pieces longer than this (characters) are not cached: they are rare and would pin memory.
_MAX_CACHED_PIECE = 64


class Tokenizer:
    """A byte-level BPE tokenizer with GPT-2's pre-tokenisation.

    encoder maps token bytes to ids; merge_ranks maps merged bytes to merge
    priority (defaults to encoder, tiktoken's convention, right for GPT-2);
    special_tokens maps strings such as "<|endoftext|>" to ids.
    """

    def __init__(
        self,
        encoder: Mapping[bytes, int],
        special_tokens: Mapping[str, int] | None = None,
        *,
        merge_ranks: Mapping[bytes, int] | None = None,
        name: str = "bpe",
        cache_size: int = 100_000,
    ) -> None:
        if isinstance(cache_size, bool) or not isinstance(cache_size, int) or cache_size < 0:
            raise TokenizerError(f"cache_size must be a non-negative integer, got {cache_size!r}")
        self.name = name
        self._encoder = dict(encoder)
        self._merge_ranks = self._encoder if merge_ranks is None else dict(merge_ranks)
        self._special_tokens = dict(special_tokens or {})
        self._decoder = _build_decoder(self._encoder, self._special_tokens)
        self._split = gpt2_pattern().findall
        self._cache: dict[str, tuple[int, ...]] = {}
        self._cache_size = cache_size

    # --- construction -----------------------------------------------------------------------

    @classmethod
    def gpt2(cls) -> Tokenizer:
        """GPT-2's tokenizer from the vocabulary shipped in the package (loaded once, then shared)."""
        return _shipped_gpt2()

    @classmethod
    def from_vocabulary(cls, vocab: Vocabulary, *, name: str = "bpe") -> Tokenizer:
        merge_ranks = None if vocab.merge_ranks is vocab.encoder else vocab.merge_ranks
        return cls(vocab.encoder, vocab.special_tokens, merge_ranks=merge_ranks, name=name)

    @classmethod
    def from_tiktoken_file(cls, path: str | Path, special_tokens: Mapping[str, int] | None = None) -> Tokenizer:
        """A tiktoken file (e.g. gpt2.tiktoken); special tokens default to <|endoftext|> after the last rank."""
        ranks = read_tiktoken(path)
        specials = default_special_tokens(ranks) if special_tokens is None else special_tokens
        return cls(ranks, specials, name=Path(path).stem)

    @classmethod
    def from_encoder_json(cls, encoder_json: str | Path, vocab_bpe: str | Path) -> Tokenizer:
        """OpenAI's GPT-2 release files encoder.json + vocab.bpe."""
        return cls.from_vocabulary(read_byte_level_bpe(encoder_json, vocab_bpe), name="gpt2")

    @classmethod
    def from_hf_files(cls, vocab_json: str | Path, merges_txt: str | Path) -> Tokenizer:
        """Hugging Face's vocab.json + merges.txt (the same format as OpenAI's files)."""
        return cls.from_vocabulary(read_byte_level_bpe(vocab_json, merges_txt), name="gpt2")

    @classmethod
    def from_directory(cls, directory: str | Path) -> Tokenizer:
        """Whatever the directory holds: encoder.json + vocab.bpe, vocab.json + merges.txt, or a .tiktoken file."""
        found = find_vocabulary_files(directory)
        if "encoder.json" in found and "vocab.bpe" in found:
            return cls.from_encoder_json(found["encoder.json"], found["vocab.bpe"])
        if "vocab.json" in found and "merges.txt" in found:
            return cls.from_hf_files(found["vocab.json"], found["merges.txt"])
        if "tiktoken" in found:
            return cls.from_tiktoken_file(found["tiktoken"])
        raise TokenizerError(
            f"{directory}: no vocabulary found (expected encoder.json + vocab.bpe, vocab.json + merges.txt, "
            "or a .tiktoken file)"
        )

    @classmethod
    def load(cls, vocab: str | Path | None = None) -> Tokenizer:
        """The shipped GPT-2 tokenizer (None), or one read from a directory (see
        `from_directory`) or a .tiktoken file."""
        if vocab is None:
            return cls.gpt2()
        path = Path(vocab)
        if path.is_dir():
            return cls.from_directory(path)
        if path.is_file():
            return cls.from_tiktoken_file(path)
        raise TokenizerError(f"{vocab}: no such file or directory")

    @classmethod
    def for_model(cls, model: str | Path) -> Tokenizer:
        """The tokenizer of a model: the vocabulary files in its directory (or beside its weights
        file) when there are any, else GPT-2's, which every published GPT-2 uses."""
        path = Path(model).expanduser()
        directory = path if path.is_dir() else path.parent if path.is_file() else None
        if directory is not None and find_vocabulary_files(directory):
            return cls.from_directory(directory)
        return cls.gpt2()

    # --- facts ------------------------------------------------------------------------------

    @property
    def n_vocab(self) -> int:
        """One more than the largest id (50257 for GPT-2)."""
        return len(self._decoder)

    @property
    def eot_token(self) -> int | None:
        """The id of <|endoftext|> (50256 for GPT-2), or None if the vocabulary has none."""
        return self._special_tokens.get(ENDOFTEXT)

    @property
    def special_tokens_set(self) -> frozenset[str]:
        return frozenset(self._special_tokens)

    @property
    def encoder(self) -> Mapping[bytes, int]:
        """The ordinary tokens: byte string -> id (a read-only view)."""
        return MappingProxyType(self._encoder)

    @property
    def special_tokens(self) -> Mapping[str, int]:
        """The special tokens: text -> id (a read-only view)."""
        return MappingProxyType(self._special_tokens)

    def __repr__(self) -> str:
        return f"<Tokenizer {self.name!r} n_vocab={self.n_vocab}>"

    # --- encoding ---------------------------------------------------------------------------

    def encode_ordinary(self, text: str) -> list[int]:
        """Text -> ids, treating special-token text like any other text."""
        return self._encode_text(_checked_text(text))

    def encode(
        self,
        text: str,
        *,
        allowed_special: Literal["all"] | AbstractSet[str] = frozenset(),
        disallowed_special: Literal["all"] | Collection[str] = "all",
    ) -> list[int]:
        """Text -> ids. Special-token text raises TokenizerError unless allowed (then it is one id).

        >>> Tokenizer.gpt2().encode("hi<|endoftext|>", allowed_special="all")
        [5303, 50256]

        As in tiktoken: allowed_special="all" or a set of special tokens to encode
        as their id; disallowed_special="all" (every special token not allowed) or
        the set to refuse; disallowed_special=() encodes them as ordinary text.
        """
        text = _checked_text(text)
        allowed = self._special_set(allowed_special, "allowed_special", everything=self.special_tokens_set)
        disallowed = self._special_set(
            disallowed_special, "disallowed_special", everything=self.special_tokens_set - allowed
        )
        if disallowed:
            found = _special_regex(frozenset(disallowed)).search(text)
            if found:
                raise TokenizerError(
                    f"the text contains the special token {found.group()!r}, refused by default: pass "
                    f"allowed_special={{{found.group()!r}}} to encode it as that token, "
                    "or disallowed_special=() to encode it as plain text"
                )
        if not allowed:
            return self._encode_text(text)
        ids: list[int] = []
        start = 0
        for match in _special_regex(frozenset(allowed)).finditer(text):
            ids += self._encode_text(text[start : match.start()])
            ids.append(self._special_tokens[match.group()])
            start = match.end()
        ids += self._encode_text(text[start:])
        return ids

    def _special_set(self, value: object, argument: str, *, everything: frozenset[str]) -> frozenset[str]:
        if value == "all":
            return everything
        if isinstance(value, str) or not all(isinstance(t, str) for t in value):  # type: ignore[union-attr]
            raise TokenizerError(f"{argument} must be 'all' or a collection of special-token strings, got {value!r}")
        unknown = set(value) - self.special_tokens_set  # type: ignore[arg-type]
        if unknown:
            raise TokenizerError(
                f"{argument}: {sorted(unknown)} not special tokens of this tokenizer "
                f"({sorted(self.special_tokens_set)})"
            )
        return frozenset(value)  # type: ignore[arg-type]

    def _encode_text(self, text: str) -> list[int]:
        """Pre-tokenise, then ids per piece from the cache, BPE-encoding the pieces it lacks."""
        pieces = self._split(text)
        cached = list(map(self._cache.get, pieces))
        if None in cached:  # a cold cache: fill the gaps (a piece may repeat among them)
            cache_get = self._cache.get
            for i, ids in enumerate(cached):
                if ids is None:
                    cached[i] = cache_get(pieces[i]) or self._encode_piece(pieces[i])
        return list(chain.from_iterable(cached))  # type: ignore[arg-type]

    def _encode_piece(self, piece: str) -> tuple[int, ...]:
        data = piece.encode("utf-8")
        token = self._encoder.get(data)
        if token is not None:
            ids: tuple[int, ...] = (token,)
        else:
            ids = tuple(map(self._encoder.__getitem__, bpe_merge(data, self._merge_ranks)))
        if len(piece) <= _MAX_CACHED_PIECE and self._cache_size:
            if len(self._cache) >= self._cache_size:
                self._cache.clear()  # bounded memory; the common pieces come back at once
            self._cache[piece] = ids
        return ids

    def clear_cache(self) -> None:
        """Forget the cached ids of pieces (only useful to measure a cold start)."""
        self._cache.clear()

    # --- decoding ---------------------------------------------------------------------------

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """Ids -> the bytes they stand for."""
        return b"".join(self.decode_tokens_bytes(ids))

    def decode(self, ids: Iterable[int], errors: str = "replace") -> str:
        """Ids -> text; bytes that are not valid UTF-8 become U+FFFD (errors="strict" raises instead)."""
        return self.decode_bytes(ids).decode("utf-8", errors=errors)

    def decode_single_token_bytes(self, token: int) -> bytes:
        """One id -> its bytes: 995 -> b' world'."""
        return self._decoder[self._checked_id(token)]

    def decode_tokens_bytes(self, ids: Iterable[int]) -> list[bytes]:
        """Ids -> one bytes object per id (the piece each token stands for)."""
        ids = list(ids) if not isinstance(ids, (list, tuple)) else ids
        if not all(type(i) is int for i in ids) or (ids and (min(ids) < 0 or max(ids) >= len(self._decoder))):
            ids = [self._checked_id(i) for i in ids]
        decoder = self._decoder
        pieces = [decoder[i] for i in ids]
        if None in pieces:
            self._checked_id(ids[pieces.index(None)])  # raises, naming the id
        return pieces  # type: ignore[return-value]

    def decode_pieces(self, ids: Iterable[int], errors: str = "backslashreplace") -> list[str]:
        """Ids -> one string per id; bytes of a character split across tokens shown as \\x escapes."""
        return [piece.decode("utf-8", errors=errors) for piece in self.decode_tokens_bytes(ids)]

    def _checked_id(self, token: object) -> int:
        if isinstance(token, bool) or isinstance(token, (str, bytes, float)):
            raise TokenizerError(f"token ids must be integers, got {token!r}")
        try:
            value = operator.index(token)  # accepts NumPy and PyTorch integer scalars too
        except TypeError:
            raise TokenizerError(f"token ids must be integers, got {token!r}") from None
        if not 0 <= value < len(self._decoder) or self._decoder[value] is None:
            raise TokenizerError(f"token id {value} is not in the vocabulary (valid ids: 0..{len(self._decoder) - 1})")
        return value


def _build_decoder(encoder: Mapping[bytes, int], special_tokens: Mapping[str, int]) -> list[bytes | None]:
    """id -> bytes as a list (None where no token has that id)."""
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


def _checked_text(text: object) -> str:
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


@functools.lru_cache(maxsize=64)
def _special_regex(tokens: frozenset[str]) -> re.Pattern[str]:
    # Longest first, so a special token that extends another wins.
    return re.compile("|".join(re.escape(t) for t in sorted(tokens, key=len, reverse=True)))


@functools.lru_cache(maxsize=1)
def _shipped_gpt2() -> Tokenizer:
    if not SHIPPED_VOCABULARY.is_file():
        raise TokenizerError(f"the shipped GPT-2 vocabulary is missing: {SHIPPED_VOCABULARY}")
    return Tokenizer(read_compact(SHIPPED_VOCABULARY), {ENDOFTEXT: 50256}, name="gpt2")
