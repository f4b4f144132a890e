"""Writing a byte-level BPE vocabulary in the formats the other tools read.

    tiktoken_bytes(encoder)      gpt2.tiktoken: "base64(token) rank" a line (tiktoken)
    encoder_json_bytes(encoder)  encoder.json = Hugging Face's vocab.json (token string -> id)
    merges_bytes(encoder)        vocab.bpe = Hugging Face's merges.txt (one merge a line)
    write_hf_tokenizer(dir, tok) vocab.json + merges.txt + tokenizer_config.json, so that
                                 `transformers.AutoTokenizer.from_pretrained(dir)` works offline
                                 (with `chat_template=`: its apply_chat_template too)

For GPT-2's vocabulary the first three give OpenAI's released files byte for byte
(the tests pin their sha256). The merges are not stored: a token of rank r was
made by merging the two parts that BPE over the ranks below r splits it into.

>>> from gpt2.tokenizer import Tokenizer
>>> merges_bytes(Tokenizer.gpt2().encoder).splitlines()[:3]
[b'#version: 0.2', b'\\xc4\\xa0 t', b'\\xc4\\xa0 a']
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from ..atomic import atomic_write_bytes
from .bpe import bpe_merge
from .bytes_unicode import bytes_to_token_string
from .errors import TokenizerError

if TYPE_CHECKING:
    from .tokenizer import Tokenizer

__all__ = [
    "tiktoken_bytes",
    "encoder_json_bytes",
    "merges",
    "merges_bytes",
    "hf_tokenizer_files",
    "tokenizer_config_bytes",
    "write_hf_tokenizer",
]


def tiktoken_bytes(encoder: Mapping[bytes, int]) -> bytes:
    """The tiktoken file of a vocabulary: one "base64(token) rank" line per token, by rank."""
    return b"".join(base64.b64encode(t) + b" %d\n" % r for t, r in sorted(encoder.items(), key=lambda kv: kv[1]))


def encoder_json_bytes(encoder: Mapping[bytes, int], special_tokens: Mapping[str, int] | None = None) -> bytes:
    """encoder.json / vocab.json: each token as its printable string (see `bytes_unicode`) -> id."""
    table = {bytes_to_token_string(t): r for t, r in sorted(encoder.items(), key=lambda kv: kv[1])}
    table.update(special_tokens or {})
    return json.dumps(table, ensure_ascii=False).encode("utf-8")


def merges(encoder: Mapping[bytes, int]) -> list[tuple[bytes, bytes]]:
    """The merge that made each multi-byte token, in rank order."""
    out: list[tuple[bytes, bytes]] = []
    below: dict[bytes, int] = {}
    for token, rank in sorted(encoder.items(), key=lambda kv: kv[1]):
        if len(token) > 1:
            parts = bpe_merge(token, below)
            if len(parts) != 2:
                raise TokenizerError(f"token {token!r} (rank {rank}) is not one merge of two lower-ranked tokens")
            out.append((parts[0], parts[1]))
        below[token] = rank
    return out


def merges_bytes(encoder: Mapping[bytes, int]) -> bytes:
    """vocab.bpe / merges.txt: a version line, then "left right" (printable strings) a line."""
    lines = ["#version: 0.2"] + [f"{bytes_to_token_string(a)} {bytes_to_token_string(b)}" for a, b in merges(encoder)]
    return ("\n".join(lines) + "\n").encode("utf-8")


def tokenizer_config_bytes(*, model_max_length: int = 1024, chat_template: str | None = None) -> bytes:
    """tokenizer_config.json: GPT2Tokenizer with <|endoftext|> as the bos, eos and unk token, and
    `chat_template` (Jinja, as Hugging Face stores it) when the model was taught one."""
    eot = "<|endoftext|>"
    config: dict[str, object] = {
        "tokenizer_class": "GPT2Tokenizer",
        "model_max_length": model_max_length,
        "bos_token": eot,
        "eos_token": eot,
        "unk_token": eot,
        "add_prefix_space": False,
        "clean_up_tokenization_spaces": False,
    }
    if chat_template is not None:
        config["chat_template"] = chat_template
    return (json.dumps(config, indent=2) + "\n").encode("utf-8")


def hf_tokenizer_files(
    tokenizer: Tokenizer, *, model_max_length: int = 1024, chat_template: str | None = None
) -> dict[str, bytes]:
    """vocab.json, merges.txt and tokenizer_config.json (see `tokenizer_config_bytes`), by file name."""
    return {
        "vocab.json": encoder_json_bytes(tokenizer.encoder, tokenizer.special_tokens),
        "merges.txt": merges_bytes(tokenizer.encoder),
        "tokenizer_config.json": tokenizer_config_bytes(model_max_length=model_max_length, chat_template=chat_template),
    }


def write_hf_tokenizer(
    directory: str | Path, tokenizer: Tokenizer, *, model_max_length: int = 1024, chat_template: str | None = None
) -> list[Path]:
    """Write `hf_tokenizer_files` into `directory`, each atomically. Returns the paths."""
    directory = Path(directory)
    files = hf_tokenizer_files(tokenizer, model_max_length=model_max_length, chat_template=chat_template)
    for name, data in files.items():
        atomic_write_bytes(directory / name, data)
    return [directory / name for name in files]
