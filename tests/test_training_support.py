"""Shared helpers for the training tests (no tests here).

The tokenizer is the project's own `Tokenizer.gpt2()`; while that package is not
importable yet, a stand-in built from tiktoken and the shipped vocabulary takes
its place (same API: encode_ordinary, decode, eot_token).
"""

from __future__ import annotations

from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
VERDICT = DATA / "the-verdict.txt"

# Small enough that a step takes milliseconds; the 50257-token vocabulary stays.
SMALL = dict(n_layer=2, n_embd=32, n_head=2, n_ctx=64)
FAST = dict(
    batch_size=4,
    context_length=32,
    eval_interval=4,
    eval_batches=2,
    sample_tokens=4,
    checkpoint_interval=4,
    warmup_steps=2,
    lr=1e-3,
)


class TiktokenStandIn:
    def __init__(self) -> None:
        import tiktoken
        from tiktoken.load import load_tiktoken_bpe

        ranks = load_tiktoken_bpe(str(DATA / "gpt2.tiktoken"))
        pattern = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
        self._enc = tiktoken.Encoding(
            "gpt2-standin", pat_str=pattern, mergeable_ranks=ranks, special_tokens={"<|endoftext|>": 50256}
        )
        self.eot_token = 50256
        self.n_vocab = 50257

    def encode_ordinary(self, text: str) -> list[int]:
        return self._enc.encode_ordinary(text)

    def decode(self, ids) -> str:
        return self._enc.decode(list(ids))

    @classmethod
    def gpt2(cls) -> TiktokenStandIn:
        return cls()


def real_tokenizer_class():
    try:
        from gpt2.tokenizer import Tokenizer

        return Tokenizer
    except ImportError:
        return None


def make_tokenizer():
    cls = real_tokenizer_class()
    if cls is not None:
        return cls.gpt2()
    if not (DATA / "gpt2.tiktoken").is_file():
        pytest.skip("no tokenizer yet and no ../shared/data/gpt2.tiktoken for the stand-in")
    return TiktokenStandIn()


def need_verdict() -> Path:
    if not VERDICT.is_file():
        pytest.skip("../shared/data/the-verdict.txt is absent")
    return VERDICT
