"""Property-based checks with hypothesis: random text gives tiktoken's ids and decodes back to itself."""

from __future__ import annotations

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from gpt2.tokenizer import StreamDecoder, Tokenizer  # noqa: E402
from gpt2.tokenizer.bpe import merge_long, merge_short  # noqa: E402
from gpt2.tokenizer.pretokenize import letter_and_number_ranges  # noqa: E402

TOK = Tokenizer.gpt2()

# Characters that exercise the pre-tokenisation rules most: contractions, spaces of every kind, numbers
# of other scripts, combining marks, emoji with joiners, control characters.
TRICKY = list("'sStTrRvVmMlLdD aZ09²½Ⅻ٣\n\r\t\x0b\x0c\x1c\x1f\x85\xa0\u2028\u3000!?.,-_é\u0301😀\u200d👍🏽日本") + [
    "<|endoftext|>"
]

# Every assigned code point. Unassigned ones are left out: a character assigned after the running
# Python's Unicode version (14.0 on 3.11) is a letter to tiktoken's newer tables but not to ours
# (see docs/tokenizer.md), so its pre-token split may differ.
any_text = st.text(st.characters(exclude_categories=["Cs", "Cn"]), max_size=200)
tricky_text = st.lists(st.sampled_from(TRICKY), max_size=60).map("".join)


@settings(max_examples=300, deadline=None)
@given(st.one_of(any_text, tricky_text))
def test_same_ids_as_tiktoken_and_round_trip(tiktoken_gpt2, text):
    ids = TOK.encode_ordinary(text)
    assert ids == tiktoken_gpt2.encode_ordinary(text)
    assert TOK.decode(ids) == text


@settings(max_examples=100, deadline=None)
@given(tricky_text)
def test_special_tokens_like_tiktoken(tiktoken_gpt2, text):
    assert TOK.encode(text, allowed_special="all") == tiktoken_gpt2.encode(text, allowed_special="all")
    assert TOK.encode(text, disallowed_special=()) == tiktoken_gpt2.encode(text, disallowed_special=())


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=80))
def test_stream_decoder_reassembles_text(text):
    stream = StreamDecoder(TOK)
    pieces = [stream.feed(i) for i in TOK.encode_ordinary(text)]
    assert "".join(pieces) + stream.flush() == text
    assert all("\ufffd" not in p for p in pieces) or "\ufffd" in text


@settings(max_examples=200, deadline=None)
@given(
    st.binary(max_size=400)
    | st.lists(st.sampled_from([b"a", b"b", b" ", b"\n", b"!", b"ab", b"\xc3\xa9"]), max_size=300).map(b"".join)
)
def test_heap_merge_equals_list_merge(piece):
    assert merge_long(piece, TOK._merge_ranks) == merge_short(piece, TOK._merge_ranks)


def test_fast_character_classes_equal_a_full_scan():
    """The shortcut in letter_and_number_ranges misses nothing a scan of every code point finds."""
    import sys
    import unicodedata

    letters, numbers = [], []
    for code_point in range(sys.maxunicode + 1):
        kind = unicodedata.category(chr(code_point))[0]
        if kind == "L":
            letters.append(code_point)
        elif kind == "N":
            numbers.append(code_point)
    fast_letters, fast_numbers = letter_and_number_ranges()
    assert [c for a, b in fast_letters for c in range(a, b + 1)] == letters
    assert [c for a, b in fast_numbers for c in range(a, b + 1)] == numbers
