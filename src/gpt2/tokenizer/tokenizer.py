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

Every argument is checked first, as tiktoken checks it (`checks.py`): texts, ids,
batches and the special-token rules.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Iterable, Mapping
from collections.abc import Set as AbstractSet
from itertools import chain
from pathlib import Path
from types import MappingProxyType
from typing import Literal, cast

from .bpe import bpe_merge
from .checks import (
    allowed_special_tokens,
    build_decoder,
    check_threads,
    checked_batch,
    checked_id,
    checked_text,
    is_ids,
    is_text,
    special_regex,
)
from .errors import TokenizerError, UnknownTokenError
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
        self._decoder = build_decoder(self._encoder, self._special_tokens)
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
    def max_token_value(self) -> int:
        """The largest id (50256 for GPT-2)."""
        return len(self._decoder) - 1

    @property
    def special_tokens_set(self) -> frozenset[str]:
        return frozenset(self._special_tokens)

    def is_special_token(self, token: int) -> bool:
        """Whether the id is a special token's (50256 for GPT-2): True for <|endoftext|>."""
        return checked_id(token, self._decoder) in self._special_tokens.values()

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
        return self._encode_text(checked_text(text))

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
        text = checked_text(text)
        allowed = allowed_special_tokens(text, allowed_special, disallowed_special, self.special_tokens_set)
        if not allowed:
            return self._encode_text(text)
        ids: list[int] = []
        start = 0
        for match in special_regex(allowed).finditer(text):
            ids += self._encode_text(text[start : match.start()])
            ids.append(self._special_tokens[match.group()])
            start = match.end()
        ids += self._encode_text(text[start:])
        return ids

    def encode_batch(
        self,
        text: Iterable[str],
        *,
        num_threads: int = 8,
        allowed_special: Literal["all"] | AbstractSet[str] = frozenset(),
        disallowed_special: Literal["all"] | Collection[str] = "all",
    ) -> list[list[int]]:
        """Each text -> its ids, as `encode` (tiktoken's encode_batch).

        >>> Tokenizer.gpt2().encode_batch(["hello world", "goodbye world"])
        [[31373, 995], [11274, 16390, 995]]

        num_threads is checked but, this being pure Python under the GIL where threads would
        only add overhead, the texts are encoded one after another.
        """
        texts = checked_batch(text, "encode_batch", "texts (strings)", is_text)
        check_threads(num_threads)
        return [self.encode(t, allowed_special=allowed_special, disallowed_special=disallowed_special) for t in texts]

    def encode_ordinary_batch(self, text: Iterable[str], *, num_threads: int = 8) -> list[list[int]]:
        """Each text -> its ids, as `encode_ordinary` (tiktoken's encode_ordinary_batch)."""
        texts = checked_batch(text, "encode_ordinary_batch", "texts (strings)", is_text)
        check_threads(num_threads)
        return [self.encode_ordinary(t) for t in texts]

    def encode_single_token(self, text_or_bytes: str | bytes) -> int:
        """The id of text (or bytes) that is exactly one token, special tokens included.

        >>> tok = Tokenizer.gpt2()
        >>> tok.encode_single_token("hello"), tok.encode_single_token(b" world")
        (31373, 995)
        >>> tok.encode_single_token("<|endoftext|>")
        50256

        Anything else raises UnknownTokenError, which is a KeyError too, as in tiktoken.
        """
        if isinstance(text_or_bytes, str):
            try:
                data = text_or_bytes.encode("utf-8")
            except UnicodeEncodeError:  # a lone surrogate: no UTF-8, so no token
                raise UnknownTokenError(f"{text_or_bytes!r} is not a single token of this vocabulary") from None
        elif isinstance(text_or_bytes, (bytes, bytearray)):
            data = bytes(text_or_bytes)
        else:
            raise TokenizerError(f"encode_single_token takes str or bytes, got {type(text_or_bytes).__name__}")
        token = self._encoder.get(data)
        if token is None:
            token = {text.encode("utf-8"): i for text, i in self._special_tokens.items()}.get(data)
        if token is None:
            raise UnknownTokenError(f"{text_or_bytes!r} is not a single token of this vocabulary")
        return token

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

    def decode_batch(
        self, batch: Iterable[Iterable[int]], *, errors: str = "replace", num_threads: int = 8
    ) -> list[str]:
        """Each id list -> its text, as `decode` (tiktoken's decode_batch)."""
        sequences = checked_batch(batch, "decode_batch", "id lists", is_ids)
        check_threads(num_threads)
        return [self.decode(ids, errors=errors) for ids in sequences]

    def decode_bytes_batch(self, batch: Iterable[Iterable[int]], *, num_threads: int = 8) -> list[bytes]:
        """Each id list -> its bytes, as `decode_bytes` (tiktoken's decode_bytes_batch)."""
        sequences = checked_batch(batch, "decode_bytes_batch", "id lists", is_ids)
        check_threads(num_threads)
        return [self.decode_bytes(ids) for ids in sequences]

    def decode_with_offsets(self, tokens: Iterable[int]) -> tuple[str, list[int]]:
        """Ids -> (text, the index in text where each token starts), as tiktoken's decode_with_offsets.

        >>> Tokenizer.gpt2().decode_with_offsets([31373, 995])
        ('hello world', [0, 5])

        A token that starts inside a character (🙂 is two tokens) gets that character's index.
        Ids whose bytes are not valid UTF-8 (a character cut at the end) raise TokenizerError.
        """
        pieces = self.decode_tokens_bytes(tokens)
        offsets = []
        characters = 0
        for piece in pieces:
            # a UTF-8 continuation byte (0x80..0xBF) never starts a character
            offsets.append(characters - 1 if piece and 0x80 <= piece[0] < 0xC0 and characters else characters)
            characters += len(piece.translate(None, _CONTINUATION_BYTES))
        try:
            return b"".join(pieces).decode("utf-8"), offsets
        except UnicodeDecodeError as error:
            raise TokenizerError(
                f"the ids do not decode to valid UTF-8 ({error.reason} at byte {error.start}); "
                "decode(ids) replaces such bytes, decode_tokens_bytes(ids) shows them"
            ) from None

    def decode_single_token_bytes(self, token: int) -> bytes:
        """One id -> its bytes: 995 -> b' world'."""
        return cast(bytes, self._decoder[checked_id(token, self._decoder)])  # a checked id has bytes

    def decode_tokens_bytes(self, ids: Iterable[int]) -> list[bytes]:
        """Ids -> one bytes object per id (the piece each token stands for)."""
        ids = list(ids) if not isinstance(ids, (list, tuple)) else ids
        if not all(type(i) is int for i in ids) or (ids and (min(ids) < 0 or max(ids) >= len(self._decoder))):
            ids = [checked_id(i, self._decoder) for i in ids]
        decoder = self._decoder
        pieces = [decoder[i] for i in ids]
        if None in pieces:
            checked_id(ids[pieces.index(None)], self._decoder)  # raises, naming the id
        return pieces  # type: ignore[return-value]

    def decode_pieces(self, ids: Iterable[int], errors: str = "backslashreplace") -> list[str]:
        """Ids -> one string per id; bytes of a character split across tokens shown as \\x escapes."""
        return [piece.decode("utf-8", errors=errors) for piece in self.decode_tokens_bytes(ids)]


_CONTINUATION_BYTES = bytes(range(0x80, 0xC0))


@functools.lru_cache(maxsize=1)
def _shipped_gpt2() -> Tokenizer:
    if not SHIPPED_VOCABULARY.is_file():
        raise TokenizerError(f"the shipped GPT-2 vocabulary is missing: {SHIPPED_VOCABULARY}")
    return Tokenizer(read_compact(SHIPPED_VOCABULARY), {ENDOFTEXT: 50256}, name="gpt2")
