"""The tokenizer's work on a text, step by step: pre-tokens, bytes, then every BPE merge in rank order.

`gpt2.tokenizer.bpe.merge_short` merges the adjacent pair of lowest rank until none is
left; `merge_steps` does the same and writes down each merge as it happens, so a reader
sees "Ġ" + "t" -> "Ġt" (rank 262), then "Ġt" + "he" -> "Ġthe" ... The parts are spelled as
GPT-2's vocabulary files spell them (`gpt2.tokenizer.bytes_unicode`: a space is "Ġ").
The tests check that the last step's parts are exactly what the tokenizer produces.

>>> ranks = {b"a": 0, b"b": 1, b"c": 2, b"ab": 3, b"abc": 4}
>>> [(s["left"], s["right"], s["rank"]) for s in merge_steps(b"abc", ranks)]
[('a', 'b', 3), ('ab', 'c', 4)]
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..tokenizer import Tokenizer
from ..tokenizer.bpe import bpe_merge
from ..tokenizer.bytes_unicode import bytes_to_token_string
from ..tokenizer.pretokenize import pretokenize
from .errors import ExploreError

__all__ = ["MAX_BPE_CHARS", "merge_steps", "explain_text"]

# A longer text is refused: every merge of every piece is listed.
MAX_BPE_CHARS = 400


def merge_steps(piece: bytes, ranks: Mapping[bytes, int]) -> list[dict[str, Any]]:
    """Each merge of `piece` in the order BPE makes it: the lowest rank first, the leftmost on a
    tie. A step is {"rank", "at" (the index of the left part), "left", "right", "merged",
    "parts" (after the merge)}, parts in the vocabulary files' spelling."""
    parts = [bytes((b,)) for b in piece]
    steps: list[dict[str, Any]] = []
    while len(parts) > 1:
        pair_ranks = [ranks.get(parts[i] + parts[i + 1]) for i in range(len(parts) - 1)]
        known = [(r, i) for i, r in enumerate(pair_ranks) if r is not None]
        if not known:
            break
        rank, i = min(known)  # lowest rank, then leftmost
        left, right = parts[i], parts[i + 1]
        parts[i : i + 2] = [left + right]
        steps.append(
            {
                "rank": rank,
                "at": i,
                "left": bytes_to_token_string(left),
                "right": bytes_to_token_string(right),
                "merged": bytes_to_token_string(left + right),
                "parts": [bytes_to_token_string(p) for p in parts],
            }
        )
    return steps


def explain_text(tokenizer: Tokenizer, text: str) -> dict[str, Any]:
    """The whole story of encoding `text`: its pre-tokens, and for each its UTF-8 bytes, the
    byte symbols BPE starts from, every merge, and the ids of the final parts."""
    if not isinstance(text, str) or not text:
        raise ExploreError("the text is empty: give a word or a few")
    if len(text) > MAX_BPE_CHARS:
        raise ExploreError(
            f"the text is {len(text)} characters long; the merges are listed for at most {MAX_BPE_CHARS}"
        )
    ranks = tokenizer.encoder  # GPT-2's merge rank is the merged token's id (tiktoken's convention)
    pieces = []
    for piece in pretokenize(text):
        data = piece.encode("utf-8")
        steps = merge_steps(data, ranks)
        final = bpe_merge(data, ranks)
        pieces.append(
            {
                "text": piece,
                "bytes": list(data),
                "symbols": [bytes_to_token_string(bytes((b,))) for b in data],
                "merges": steps,
                "parts": [bytes_to_token_string(p) for p in final],
                "ids": [ranks[p] for p in final],
            }
        )
    return {"text": text, "pieces": pieces, "ids": [i for p in pieces for i in p["ids"]]}
