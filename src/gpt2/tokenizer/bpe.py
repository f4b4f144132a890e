"""Byte pair encoding of one pre-token: merge adjacent parts, lowest rank first.

Start from single bytes. Repeatedly find the adjacent pair whose concatenation
has the lowest merge rank (the leftmost pair on a tie), and merge it. Stop when
no adjacent pair is a known merge. This is tiktoken's formulation: the rank of
a merged byte string is its merge priority, which for GPT-2 is exactly the
token id (merge i of `vocab.bpe` makes token 256 + i).

>>> ranks = {b"a": 0, b"b": 1, b"c": 2, b"ab": 3, b"abc": 4, b"bc": 5}
>>> bpe_merge(b"abcab", ranks)
[b'abc', b'ab']

Three implementations give the same parts:
- `merge_short`: a list of pair ranks, rescanned with C-speed `min`/`index` after
  each merge; fastest for the short pieces of ordinary text.
- `merge_heap`: a heap of candidate pairs over a linked list of parts, O(n log n).
- `merge_long`: for a huge piece (10 MB of letters with no space is one pre-token):
  `merge_short` on windows of 32 bytes, joined where provably exact (below), with
  `merge_heap` as the fallback. Linear in practice, O(n log n) at worst.

Why windows may be joined. Write bpe(s) for the parts of s. Two facts hold for
this merge order (any ranks):
1. A boundary between two parts of bpe(s) splits s into u + v with
   bpe(s) = bpe(u) + bpe(v): no merge ever crossed it, and merges on either side
   happen in the same relative order as when that side is merged alone.
2. If x is the last part of bpe(u), y the first part of bpe(v), and
   bpe(x + y) == [x, y], then bpe(u + v) == bpe(u) + bpe(v). Suppose not, and
   take the first merge across the seam. Until then u and v, and (by fact 1)
   the spans of x and y within them, merge as when alone; so it joins x' (then
   the last part of u, a suffix of x) and y' (a prefix of y), with a key
   (rank, start) below the next merge of x's span and of y's span. Merging
   x + y alone interleaves the same merges of the two spans in the same order
   (of two pending merges the lower key goes first, and a pending merge stays a
   candidate until it happens), so it reaches x' and y' with that key below
   both spans' next merges, and merges across the seam too: a contradiction.
So bpe(s) is the concatenation of the windows' parts wherever each seam is
"compatible" (fact 2, checked with one small merge, cached); at a seam that is
not, the parts on each side of it are re-merged together (exact by fact 1) and
both new seams checked, widening until they hold.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Mapping
from itertools import repeat
from typing import Literal

# Above this many bytes a piece goes to merge_long; below it merge_short is faster.
LONG_PIECE = 128
# merge_long's windows: long enough to waste little on the margin, short enough that min() stays cheap;
# the margin is long enough that a cut in it is nearly always a boundary of the whole piece's merge too.
WINDOW = 32
MARGIN = 6
_BLOCK = 1 << 16  # merge_long prepares its per-byte lists this many bytes at a time
_MAX_CACHED = 1 << 14  # entries in merge_long's caches of windows and seams

_SINGLE_BYTES = [bytes((b,)) for b in range(256)]
_NO_MERGE = 1 << 62  # a rank larger than any real one
# How memoryview.cast("H") reads two bytes as one integer (see _pair_ranks).
_BYTE_ORDER: Literal["little", "big"] = "little" if memoryview(b"\x01\x00").cast("H")[0] == 1 else "big"

RankGetter = Callable[[bytes, int], int]


def bpe_merge(piece: bytes, ranks: Mapping[bytes, int]) -> list[bytes]:
    """Split piece into its BPE parts (each a key of ranks, unless it is an unmergeable byte)."""
    if len(piece) <= LONG_PIECE:
        return merge_short(piece, ranks)
    return merge_long(piece, ranks)


def merge_short(piece: bytes, ranks: Mapping[bytes, int]) -> list[bytes]:
    """Quadratic merge over a list of pair ranks, for short pieces."""
    get = ranks.get
    parts = [_SINGLE_BYTES[b] for b in piece]
    pair_ranks = [get(parts[i] + parts[i + 1], _NO_MERGE) for i in range(len(parts) - 1)]
    return _merge_parts(parts, pair_ranks, get)


def _merge_parts(parts: list[bytes], pair_ranks: list[int], get: RankGetter) -> list[bytes]:
    """Merge `parts` in place and return it; pair_ranks[i] is the rank of parts[i] + parts[i + 1]."""
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


def merge_heap(piece: bytes, ranks: Mapping[bytes, int]) -> list[bytes]:
    """O(n log n) merge: a min-heap of candidate pairs over a linked list of parts.

    A part is identified by the byte offset where it starts; next_start[s] is
    where the part after it starts (len(piece) for the last one), pair_rank[s]
    the rank of that part joined with the next (-1: no merge). A candidate is
    the integer rank << shift | start, so the heap orders by rank and then, on a
    tie, by position (leftmost first), exactly as the rescanning merge does. A
    merge makes older candidates stale; a popped candidate is still valid when
    pair_rank[start] still holds its rank (the pair starting there only grows,
    so an equal rank means the same bytes).
    """
    n = len(piece)
    shift = n.bit_length()
    mask = (1 << shift) - 1
    get = ranks.get
    next_start = list(range(1, n + 1))
    prev_start = list(range(-1, n - 1))
    pair_rank = _pair_ranks(piece, get, -1) + [-1]
    heap = [rank << shift | s for s, rank in enumerate(pair_rank) if rank >= 0]
    heapq.heapify(heap)
    while heap:
        key = heapq.heappop(heap)
        start = key & mask
        if pair_rank[start] != key >> shift:
            continue  # stale: one of its parts has merged with something else since
        # Merge the part after `start` into the part at `start`.
        middle = next_start[start]
        end = next_start[middle]
        next_start[start] = end
        pair_rank[middle] = -1
        if end < n:
            prev_start[end] = start
            rank = pair_rank[start] = get(piece[start : next_start[end]], -1)
            if rank >= 0:
                heapq.heappush(heap, rank << shift | start)
        else:
            pair_rank[start] = -1
        before = prev_start[start]
        if before >= 0:
            rank = pair_rank[before] = get(piece[before:end], -1)
            if rank >= 0:
                heapq.heappush(heap, rank << shift | before)
    parts = []
    s = 0
    while s < n:
        parts.append(piece[s : next_start[s]])
        s = next_start[s]
    return parts


def merge_long(piece: bytes, ranks: Mapping[bytes, int]) -> list[bytes]:
    """Merge a huge piece window by window, joining windows at compatible seams (see the module docstring).

    `parts` is exactly bpe(piece[:done]). Each window of WINDOW bytes from `done`
    is merged alone; its parts up to the last boundary at least MARGIN bytes
    before the window's end are kept (exact by fact 1) and the next window starts
    there. The kept part and the one after it were neighbours in an exact merge,
    so that seam is known compatible and costs nothing when the next window
    begins with the same part, which is nearly always. A seam that is not
    compatible is repaired: the k parts each side of it are merged together and
    the two seams around them checked, k = 1, 2, 4, ... Repairs re-merging more
    than len(piece) bytes in all (text built to defeat the windows) fall back to
    merge_heap, so the worst case stays O(n log n).
    """
    n = len(piece)
    get = ranks.get
    seams: dict[tuple[bytes, bytes], bool] = {}  # (left, right) -> bpe(left + right) == [left, right]
    windows: dict[bytes, list[bytes]] = {}  # repetitive text repeats its windows
    budget = n
    # singles and pair_ranks describe piece[base : base + len(singles)], a block at a time (bounded memory).
    base = 0
    singles: list[bytes] = []
    pair_ranks: list[int] = []

    def compatible(left: bytes, right: bytes) -> bool:
        ok = seams.get((left, right))
        if ok is None:
            ok = seams[left, right] = merge_short(left + right, ranks) == [left, right]
        return ok

    def exact(start: int, end: int) -> list[bytes]:
        if end - start > LONG_PIECE:
            return merge_heap(piece[start:end], ranks)
        if start < base:  # a repair reaching back into the previous block
            return merge_short(piece[start:end], ranks)
        return _merge_parts(singles[start - base : end - base], pair_ranks[start - base : end - base - 1], get)

    parts: list[bytes] = []
    done = 0
    while done < n:
        end = min(done + WINDOW, n)
        if end > base + len(singles):
            base = done
            block = piece[base : base + max(_BLOCK, 2 * WINDOW)]
            singles = list(map(_SINGLE_BYTES.__getitem__, block))
            pair_ranks = _pair_ranks(block, get, _NO_MERGE)
        key = piece[done:end]
        window = windows.get(key)
        if window is None:
            if len(windows) >= _MAX_CACHED:
                windows.clear()
            window = windows[key] = exact(done, end)
        cut, stop = len(window), end
        if end < n:  # keep the parts that end at least MARGIN bytes before the window does (at least one)
            while cut > 1 and stop > end - MARGIN:
                cut -= 1
                stop -= len(window[cut])
            if cut < len(window):
                if len(seams) >= _MAX_CACHED:
                    seams.clear()
                seams[window[cut - 1], window[cut]] = True
        if not parts or compatible(parts[-1], window[0]):
            parts += window[:cut]
            done = stop
            continue
        k = 1
        while True:
            left, right = min(k, len(parts)), min(k, cut)
            start = done - sum(map(len, parts[-left:]))
            middle_end = done + sum(map(len, window[:right]))
            budget -= middle_end - start
            if budget < 0:
                return merge_heap(piece, ranks)
            middle = exact(start, middle_end)
            if (left == len(parts) or compatible(parts[-left - 1], middle[0])) and (
                right == cut or compatible(middle[-1], window[right])
            ):
                break
            k *= 2
        del parts[len(parts) - left :]
        parts += middle
        parts += window[right:cut]
        done = stop
    return parts


def _pair_ranks(piece: bytes, get: RankGetter, missing: int) -> list[int]:
    """[rank of piece[i:i + 2] for each i], `missing` where it is no merge.

    When the piece uses few distinct bytes (letters: 26), a table of their pairs
    indexed by the two bytes read as one 16-bit integer turns this into C-speed
    `map` calls, about five times faster than slicing every pair.
    """
    n = len(piece)
    if n < 2:
        return []
    present = sorted(set(piece))
    if len(present) ** 2 > n:
        return list(map(get, map(piece.__getitem__, map(slice, range(n - 1), range(2, n + 1))), repeat(missing)))
    table = [missing] * 65536
    for first in present:
        for second in present:
            # index = the 16-bit unsigned integer `memoryview.cast("H")` reads, whatever the byte order
            table[int.from_bytes(bytes((first, second)), _BYTE_ORDER)] = get(bytes((first, second)), missing)
    lookup = table.__getitem__
    out = [missing] * (n - 1)
    out[0::2] = map(lookup, memoryview(piece[: n // 2 * 2]).cast("H"))
    out[1::2] = map(lookup, memoryview(piece[1 : 1 + (n - 1) // 2 * 2]).cast("H"))
    return out
