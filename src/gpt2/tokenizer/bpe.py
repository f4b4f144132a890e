"""Byte pair encoding of one pre-token: merge adjacent parts, lowest rank first.

Start from single bytes. Repeatedly find the adjacent pair whose concatenation
has the lowest merge rank (the leftmost pair on a tie), and merge it. Stop when
no adjacent pair is a known merge. This is tiktoken's formulation: the rank of
a merged byte string is its merge priority, which for GPT-2 is exactly the
token id (merge i of `vocab.bpe` makes token 256 + i).

>>> ranks = {b"a": 0, b"b": 1, b"c": 2, b"ab": 3, b"abc": 4, b"bc": 5}
>>> bpe_merge(b"abcab", ranks)
[b'abc', b'ab']

Two implementations give the same parts:
- `merge_short`: a list of pair ranks, rescanned with C-speed `min`/`index` after
  each merge; fastest for the short pieces of ordinary text.
- `merge_long`: a heap of candidate pairs over a linked list of parts,
  O(n log n), so a pre-token of 100 000 bytes (`"a" * 100_000`) takes a fraction
  of a second instead of minutes.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping

# Above this many bytes a piece goes to the heap merge; below it the list merge is faster.
LONG_PIECE = 128

_SINGLE_BYTES = [bytes((b,)) for b in range(256)]
_NO_MERGE = 1 << 62  # a rank larger than any real one


def bpe_merge(piece: bytes, ranks: Mapping[bytes, int]) -> list[bytes]:
    """Split piece into its BPE parts (each a key of ranks, unless it is an unmergeable byte)."""
    if len(piece) <= LONG_PIECE:
        return merge_short(piece, ranks)
    return merge_long(piece, ranks)


def merge_short(piece: bytes, ranks: Mapping[bytes, int]) -> list[bytes]:
    """Quadratic merge over a list of pair ranks; pair_ranks[i] is the rank of parts[i] + parts[i + 1]."""
    get = ranks.get
    parts = [_SINGLE_BYTES[b] for b in piece]
    pair_ranks = [get(parts[i] + parts[i + 1], _NO_MERGE) for i in range(len(parts) - 1)]
    while pair_ranks:
        best = min(pair_ranks)
        if best == _NO_MERGE:
            break
        i = pair_ranks.index(best)  # the leftmost pair of that rank
        parts[i] += parts.pop(i + 1)
        del pair_ranks[i]
        # Only the pairs touching the new part changed.
        if i < len(pair_ranks):
            pair_ranks[i] = get(parts[i] + parts[i + 1], _NO_MERGE)
        if i > 0:
            pair_ranks[i - 1] = get(parts[i - 1] + parts[i], _NO_MERGE)
    return parts


def merge_long(piece: bytes, ranks: Mapping[bytes, int]) -> list[bytes]:
    """O(n log n) merge: a min-heap of (rank, start, end) candidates over a linked list of parts.

    A part is identified by the byte offset where it starts; next_start[s] is
    where the part after it starts (len(piece) for the last one). Ordering the
    heap by (rank, start) picks the lowest rank and, on a tie, the leftmost
    pair, exactly as the rescanning merge does. Merging makes old candidates
    stale; a candidate is still valid if its two parts still span
    piece[start:end], which we check when it is popped.
    """
    n = len(piece)
    next_start = list(range(1, n + 1))
    prev_start = list(range(-1, n - 1))
    alive = [True] * n
    get = ranks.get
    heap = []
    for s in range(n - 1):
        rank = get(piece[s : s + 2])
        if rank is not None:
            heap.append((rank, s, s + 2))
    heapq.heapify(heap)

    def push(start: int, end: int) -> None:
        rank = get(piece[start:end])
        if rank is not None:
            heapq.heappush(heap, (rank, start, end))

    while heap:
        _, start, end = heapq.heappop(heap)
        middle = next_start[start] if alive[start] else n
        if middle >= n or next_start[middle] != end:
            continue  # stale: one of its parts has merged with something else since
        # Merge the part at `middle` into the part at `start`.
        alive[middle] = False
        next_start[start] = end
        if end < n:
            prev_start[end] = start
            push(start, next_start[end])
        if prev_start[start] >= 0:
            push(prev_start[start], end)

    parts = []
    s = 0
    while s < n:
        parts.append(piece[s : next_start[s]])
        s = next_start[s]
    return parts
