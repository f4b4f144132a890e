"""Shared helpers for the tokenizer tests (no tests here): the data directory and tiktoken's GPT-2 encoding.

tiktoken cannot download here, so its GPT-2 encoding is built from ../shared/data/gpt2.tiktoken.
"""

from __future__ import annotations

from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def data_file(name: str) -> Path:
    path = DATA / name
    if not path.is_file():
        pytest.skip(f"{path} is not available")
    return path


def tiktoken_gpt2():
    pytest.importorskip("tiktoken")
    import tiktoken.load

    ranks = tiktoken.load.load_tiktoken_bpe(str(data_file("gpt2.tiktoken")))
    return tiktoken.Encoding(
        name="gpt2", pat_str=GPT2_PATTERN, mergeable_ranks=ranks, special_tokens={"<|endoftext|>": 50256}
    )
