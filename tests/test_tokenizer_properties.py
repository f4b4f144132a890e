"""Property-based checks with hypothesis: random text gives tiktoken's ids and decodes back to itself."""

from __future__ import annotations

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from gpt2.tokenizer import StreamDecoder, Tokenizer, bpe  # noqa: E402
from gpt2.tokenizer.bpe import merge_heap, merge_long, merge_short  # noqa: E402

TOK = Tokenizer.gpt2()

# Characters that exercise the pre-tokenisation rules most: contractions, spaces of every kind, numbers
# of other scripts, combining marks, emoji with joiners, control characters.
TRICKY = list("'sStTrRvVmMlLdD aZ09²½Ⅻ٣\n\r\t\x0b\x0c\x1c\x1f\x85\xa0\u2028\u3000!?.,-_é\u0301😀\u200d👍🏽日本") + [
    "<|endoftext|>"
]

# Any code point but surrogates (which a str can hold but UTF-8 cannot; tested elsewhere), including
# those the running Python calls unassigned: the shipped Unicode 16.0 classes are tiktoken's.
any_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=200)
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
    | st.lists(st.sampled_from([b"a", b"b", b" ", b"\n", b"!", b"ab", b"\xc3\xa9"]), max_size=300).map(b"".join),
    st.integers(2, 40),
    st.integers(0, 8),
)
def test_heap_and_window_merges_equal_list_merge(piece, window, margin):
    """The three merges agree; merge_long with small windows and margins repairs many seams."""
    ranks = TOK._merge_ranks
    expected = merge_short(piece, ranks)
    assert merge_heap(piece, ranks) == expected
    saved = bpe.WINDOW, bpe.MARGIN
    bpe.WINDOW, bpe.MARGIN = window, margin
    try:
        assert merge_long(piece, ranks) == expected
    finally:
        bpe.WINDOW, bpe.MARGIN = saved


@settings(max_examples=200, deadline=None)
@given(st.one_of(any_text, tricky_text), st.data())
def test_offsets_and_batches_like_tiktoken(tiktoken_gpt2, text, data):
    ids = TOK.encode(text, allowed_special="all")
    assert TOK.decode_with_offsets(ids) == tiktoken_gpt2.decode_with_offsets(ids)
    # any run of ids: the same offsets, or both refuse bytes that are not UTF-8
    start = data.draw(st.integers(0, len(ids)))
    part = ids[start : data.draw(st.integers(start, len(ids)))]
    try:
        expected = tiktoken_gpt2.decode_with_offsets(part)
    except UnicodeDecodeError:
        with pytest.raises(ValueError):
            TOK.decode_with_offsets(part)
    else:
        assert TOK.decode_with_offsets(part) == expected
    batch = [text, text[: len(text) // 2]]
    assert TOK.encode_ordinary_batch(batch) == tiktoken_gpt2.encode_ordinary_batch(batch)
    assert TOK.decode_batch([ids, part]) == tiktoken_gpt2.decode_batch([ids, part])
