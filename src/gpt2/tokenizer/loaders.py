"""Reading vocabularies: tiktoken files, OpenAI's encoder.json + vocab.bpe, Hugging Face's
vocab.json + merges.txt, and the compact file the package ships.

Every loader returns a `Vocabulary`: token bytes -> id, the merge ranks (for
GPT-2 the same dictionary: a token's id is its merge priority) and the special
tokens. The `Tokenizer` is built from one.
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path

from .bytes_unicode import CHAR_TO_BYTE, token_string_to_bytes
from .errors import TokenizerError

ENDOFTEXT = "<|endoftext|>"

# The shipped file: magic, token count, one length byte per token, then all token bytes
# concatenated in id order (ids 0 .. count-1). Loads in a few milliseconds.
COMPACT_MAGIC = b"GPT2BPE1"
_HEADER = struct.Struct("<8sI")


@dataclass(frozen=True)
class Vocabulary:
    encoder: Mapping[bytes, int]  # token bytes -> id
    merge_ranks: Mapping[bytes, int]  # merged bytes -> merge priority (lower merges first)
    special_tokens: Mapping[str, int]  # e.g. {"<|endoftext|>": 50256}


# --- the compact shipped format -------------------------------------------------------------


def write_compact(path: str | Path, encoder: Mapping[bytes, int]) -> None:
    """Write a vocabulary whose ids are exactly 0..n-1 in the compact format."""
    tokens = sorted(encoder, key=encoder.__getitem__)
    if [encoder[t] for t in tokens] != list(range(len(tokens))):
        raise TokenizerError("the compact format needs token ids 0..n-1 without gaps")
    if any(not 0 < len(t) < 256 for t in tokens):
        raise TokenizerError("the compact format stores tokens of 1 to 255 bytes")
    lengths = bytes(len(t) for t in tokens)
    Path(path).write_bytes(_HEADER.pack(COMPACT_MAGIC, len(tokens)) + lengths + b"".join(tokens))


def read_compact(path: str | Path) -> dict[bytes, int]:
    """Read a compact vocabulary: token bytes -> id."""
    data = Path(path).read_bytes()
    if len(data) < _HEADER.size:
        raise TokenizerError(f"{path}: not a compact vocabulary file (too short)")
    magic, count = _HEADER.unpack_from(data)
    if magic != COMPACT_MAGIC:
        raise TokenizerError(f"{path}: not a compact vocabulary file (bad magic {magic!r})")
    lengths = data[_HEADER.size : _HEADER.size + count]
    start = _HEADER.size + count
    if len(lengths) != count or start + sum(lengths) != len(data):
        raise TokenizerError(f"{path}: truncated compact vocabulary file")
    ends = list(accumulate(lengths, initial=start))  # ends[i] is where token i starts
    tokens = [data[a:b] for a, b in zip(ends, ends[1:])]
    return dict(zip(tokens, range(count)))


# --- tiktoken ---------------------------------------------------------------------------------


def read_tiktoken(path: str | Path) -> dict[bytes, int]:
    """A tiktoken file: one "<base64 token bytes> <rank>" per line."""
    ranks: dict[bytes, int] = {}
    try:
        with open(path, "rb") as f:
            for line_number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    token, rank = line.split()
                    ranks[base64.b64decode(token, validate=True)] = int(rank)
                except (ValueError, binascii.Error):
                    raise TokenizerError(
                        f"{path}:{line_number}: expected '<base64 token> <rank>', got {line[:60]!r}"
                    ) from None
    except OSError as exc:
        raise TokenizerError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not ranks:
        raise TokenizerError(f"{path}: empty tiktoken file")
    check_every_byte(ranks, path)
    return ranks


def check_every_byte(encoder: Mapping[bytes, int], where: str | Path) -> None:
    """Byte-level BPE can encode any text only if each of the 256 bytes is a token."""
    missing_bytes = [b for b in range(256) if bytes((b,)) not in encoder]
    if missing_bytes:
        raise TokenizerError(f"{where}: no token for byte(s) {missing_bytes[:8]}")


def default_special_tokens(encoder: Mapping[bytes, int]) -> dict[str, int]:
    """<|endoftext|> right after the ordinary tokens, as in GPT-2 (50256 after 0..50255)."""
    return {ENDOFTEXT: max(encoder.values()) + 1}


# --- OpenAI encoder.json + vocab.bpe, Hugging Face vocab.json + merges.txt --------------------


def read_merges(path: str | Path) -> list[tuple[str, str]]:
    """vocab.bpe / merges.txt: an optional "#version" line, then "left right" per line."""
    merges = []
    try:
        with open(path, encoding="utf-8") as f:
            for line_number, line in enumerate(f, 1):
                line = line.rstrip("\r\n")
                if not line or (line_number == 1 and line.startswith("#version")):
                    continue
                pair = line.split(" ")
                if len(pair) != 2 or not all(pair):
                    raise TokenizerError(
                        f"{path}:{line_number}: expected two tokens separated by one space, got {line[:60]!r}"
                    )
                merges.append((pair[0], pair[1]))
    except OSError as exc:
        raise TokenizerError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise TokenizerError(f"{path}: not UTF-8 text (invalid byte at offset {exc.start})") from None
    return merges


def read_byte_level_bpe(encoder_json: str | Path, merges_txt: str | Path) -> Vocabulary:
    """OpenAI's encoder.json + vocab.bpe (or Hugging Face's vocab.json + merges.txt: same format).

    Tokens are spelled with the byte-to-unicode map. A merge's rank is its line
    order; an entry of encoder.json that is neither one of the 256 bytes nor the
    result of a merge (GPT-2's "<|endoftext|>") is a special token.
    """
    try:
        with open(encoder_json, encoding="utf-8") as f:
            spelled = json.load(f)
    except OSError as exc:
        raise TokenizerError(f"cannot read {encoder_json}: {exc.strerror or exc}") from None
    except (ValueError, RecursionError) as exc:  # bad JSON, or bytes that are not UTF-8
        raise TokenizerError(f"{encoder_json}: not valid JSON ({exc})") from None
    if not isinstance(spelled, dict) or not all(isinstance(i, int) for i in spelled.values()):
        raise TokenizerError(f"{encoder_json}: expected a JSON object mapping token strings to integer ids")

    merge_ranks: dict[bytes, int] = {}
    for rank, (left, right) in enumerate(read_merges(merges_txt)):
        merge_ranks.setdefault(token_string_to_bytes(left) + token_string_to_bytes(right), rank)

    encoder: dict[bytes, int] = {}
    special_tokens: dict[str, int] = {}
    for text, token_id in spelled.items():
        is_byte = len(text) == 1 and text in CHAR_TO_BYTE
        data = token_string_to_bytes(text) if all(c in CHAR_TO_BYTE for c in text) else None
        if data is not None and (is_byte or data in merge_ranks):
            encoder[data] = token_id
        else:
            special_tokens[text] = token_id

    check_every_byte(encoder, encoder_json)
    missing = [m for m in merge_ranks if m not in encoder]
    if missing:
        raise TokenizerError(f"{merges_txt}: merge result {missing[0]!r} is not in {encoder_json}")
    return Vocabulary(encoder, merge_ranks, special_tokens)


def find_vocabulary_files(directory: str | Path) -> dict[str, Path]:
    """Which known vocabulary files a directory holds, best first.

    Returns {"kind": path, ...} with kinds "tiktoken", "encoder.json", "vocab.bpe",
    "vocab.json", "merges.txt" for the files present.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise TokenizerError(f"{directory}: not a directory")
    found = {
        name: directory / name
        for name in ("encoder.json", "vocab.bpe", "vocab.json", "merges.txt")
        if (directory / name).is_file()
    }
    tiktoken_files = sorted(directory.glob("*.tiktoken"))
    if tiktoken_files:
        found["tiktoken"] = tiktoken_files[0]
    return found
