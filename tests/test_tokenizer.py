"""The tokenizer against tiktoken's GPT-2 encoding: same ids on real text and on edge cases."""

from __future__ import annotations

import random

import pytest

from gpt2.errors import Gpt2Error
from gpt2.tokenizer import Tokenizer, TokenizerError, bpe
from gpt2.tokenizer.bpe import merge_heap, merge_long, merge_short
from gpt2.tokenizer.loaders import read_compact, read_tiktoken
from gpt2.tokenizer.pretokenize import pretokenize
from gpt2.tokenizer.tokenizer import SHIPPED_VOCABULARY


@pytest.fixture(scope="module")
def tok():
    return Tokenizer.gpt2()


@pytest.fixture(scope="module")
def enc(tiktoken_gpt2):
    return tiktoken_gpt2


EDGE_CASES = [
    "",
    "Hello world",
    "hello world's  2½ apples!!\n",
    # contractions: lower case only in GPT-2
    "I'm, you're, we've, they'll, he'd, it's, don't",
    "I'M, YOU'RE, WE'VE, THEY'LL, HE'D, IT'S, DON'T 'S 'LL 'Ll",
    "''s '''t 's's' 'x 'st",
    # whitespace runs
    "a  b   c    d",
    "   leading and trailing   ",
    "line\n\nline\n\n\n\nline\r\n\r\nend\n",
    "\t\ttabs\tand\t \tspaces \t",
    " \n \n  \n",
    "trailing spaces   ",
    "x" + " " * 40 + "y",
    "\u00a0nbsp\u00a0 \u2028line sep\u2029para\u3000ideographic\u0085next\u1680ogham",
    "file\x1cgroup\x1drecord\x1eunit\x1f and \x1c \x1c",
    "\x00\x01\x07\x08\x0b\x0c\x7f\x9f control",
    # other scripts, numbers
    "日本語のテキストと中文文本，한국어 텍스트",
    "Ελληνικά και русский текст и עברית ועربية",
    "x² + y³ = ½ · Ⅻ and ٣٤ and १२३ and ①②",
    "12345678901234567890 3.14159 1,000,000",
    # combining marks and emoji
    "e\u0301 a\u0308 cafe\u0301 naïve n\u0303",
    "😀 👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈 🇫🇷 ❤️",
    "mixed😀emoji😀without😀spaces",
    "𝐀𝐁𝐂 math letters and 𝟘𝟙 digits",
    "<|endoftext",
    "endoftext|>",
    "\ufeffBOM and \ufffd replacement",
]


def test_shipped_vocabulary_is_openais(enc, vocab_dir):
    """The compact file in the package holds exactly the ranks of gpt2.tiktoken."""
    shipped = read_compact(SHIPPED_VOCABULARY)
    assert shipped == read_tiktoken(vocab_dir / "gpt2.tiktoken")
    assert len(shipped) == 50256
    assert SHIPPED_VOCABULARY.stat().st_size < 1_000_000


def test_facts(tok):
    assert tok.n_vocab == 50257
    assert tok.eot_token == 50256
    assert tok.special_tokens_set == {"<|endoftext|>"}
    assert tok.encode("Hello world") == [15496, 995]
    assert Tokenizer.gpt2() is tok  # loaded once


@pytest.mark.parametrize("name", ["verdict", "shakespeare"])
def test_files_match_tiktoken(tok, enc, name, request):
    text = request.getfixturevalue(name).read_text(encoding="utf-8")
    ids = tok.encode(text)
    assert ids == enc.encode(text)
    assert tok.decode(ids) == text


@pytest.mark.parametrize("text", EDGE_CASES)
def test_edge_cases_match_tiktoken(tok, enc, text):
    ids = tok.encode_ordinary(text)
    assert ids == enc.encode_ordinary(text)
    assert tok.decode(ids) == text


@pytest.mark.parametrize(
    "text",
    [
        "a" * 100_000,
        "!" * 50_000,
        "\n" * 50_000,
        " " * 50_000,
        "é" * 30_000,
        "ab" * 40_000,
        "1" * 30_000,
        "\t \t" * 10_000 + "x",
    ],
)
def test_long_pieces_match_tiktoken(tok, enc, text):
    """One huge pre-token goes through the O(n log n) heap merge, with the same ids."""
    assert tok.encode_ordinary(text) == enc.encode_ordinary(text)


def test_uppercase_contractions_are_not_contractions():
    assert pretokenize("it's IT'S") == ["it", "'s", " IT", "'", "S"]


def test_numbers_from_other_scripts_are_numbers():
    assert pretokenize("x²½Ⅻ٣y") == ["x", "²½Ⅻ٣", "y"]


def test_whitespace_is_unicode_white_space():
    # U+001C..U+001F are whitespace to Python's str.isspace but not to Unicode (nor to tiktoken)
    assert pretokenize("a\x1cb") == ["a", "\x1c", "b"]
    assert pretokenize("a\x85 b") == ["a", "\x85", " b"]


def test_lone_surrogates_are_replaced_like_tiktoken(tok, enc):
    """A lone surrogate cannot be UTF-8: it becomes U+FFFD; a surrogate pair becomes its character."""
    for text in ["a\ud800b", "\udfff", "x \ud83d\ude00 y", "\ud83d"]:
        assert tok.encode(text) == enc.encode(text)
    assert tok.decode(tok.encode("a\ud800b")) == "a\ufffdb"
    assert tok.decode(tok.encode("\ud83d\ude00")) == "\U0001f600"


def test_endoftext_refused_by_default(tok):
    with pytest.raises(TokenizerError, match="special token '<\\|endoftext\\|>'") as info:
        tok.encode("hello <|endoftext|> world")
    assert isinstance(info.value, Gpt2Error) and isinstance(info.value, ValueError)


def test_endoftext_allowed(tok, enc):
    text = "one<|endoftext|>two <|endoftext|><|endoftext|>"
    for allowed in ("all", {"<|endoftext|>"}, frozenset({"<|endoftext|>"})):
        ids = tok.encode(text, allowed_special=allowed)
        assert ids == enc.encode(text, allowed_special=allowed)
        assert ids.count(50256) == 3
    assert tok.decode(tok.encode(text, allowed_special="all")) == text


def test_endoftext_as_plain_text(tok, enc):
    text = "a <|endoftext|> b"
    assert tok.encode(text, disallowed_special=()) == enc.encode(text, disallowed_special=())
    assert tok.encode_ordinary(text) == enc.encode_ordinary(text)
    assert 50256 not in tok.encode_ordinary(text)


@pytest.mark.parametrize("bad", ["<|endoftext|>", {"<|nope|>"}, [1]])
def test_bad_allowed_special(tok, bad):
    with pytest.raises(TokenizerError, match="allowed_special"):
        tok.encode("x", allowed_special=bad)


@pytest.mark.parametrize("bad", [None, b"bytes", 42, ["list"]])
def test_non_string_input(tok, bad):
    with pytest.raises(TokenizerError, match="can only tokenize str"):
        tok.encode(bad)
    with pytest.raises(TokenizerError, match="can only tokenize str"):
        tok.encode_ordinary(bad)


def test_decoding(tok):
    ids = tok.encode("Hello world, 😀")
    assert tok.decode_bytes(ids) == "Hello world, 😀".encode()
    assert tok.decode_tokens_bytes([15496, 995]) == [b"Hello", b" world"]
    assert tok.decode_single_token_bytes(995) == b" world"
    assert tok.decode_single_token_bytes(50256) == b"<|endoftext|>"
    assert tok.decode(i for i in [15496, 995]) == "Hello world"
    assert tok.decode([]) == ""
    # a lone byte of a multibyte character
    first = tok.encode("😀")[0]
    assert tok.decode([first]) == "\ufffd"
    assert tok.decode_pieces([first, 995]) == [
        tok.decode_single_token_bytes(first).decode("utf-8", "backslashreplace"),
        " world",
    ]
    with pytest.raises(UnicodeDecodeError):
        tok.decode([first], errors="strict")


class IndexLike:
    """An integer scalar from another library (NumPy, PyTorch) implements __index__."""

    def __index__(self):
        return 995


def test_decoding_accepts_integer_scalars(tok):
    assert tok.decode([IndexLike()]) == " world"


@pytest.mark.parametrize(
    "bad, message",
    [
        (50257, "not in the vocabulary"),
        (-1, "not in the vocabulary"),
        (10**20, "not in the vocabulary"),
        (1.0, "must be integers"),
        ("995", "must be integers"),
        (None, "must be integers"),
        (True, "must be integers"),
    ],
)
def test_bad_ids(tok, bad, message):
    with pytest.raises(TokenizerError, match=message):
        tok.decode([15496, bad])
    with pytest.raises(TokenizerError, match=message):
        tok.decode_single_token_bytes(bad)


def test_cache_is_bounded(enc, verdict):
    small = Tokenizer(read_compact(SHIPPED_VOCABULARY), {"<|endoftext|>": 50256}, cache_size=16)
    text = verdict.read_text(encoding="utf-8")
    assert small.encode(text) == enc.encode(text)
    assert len(small._cache) <= 16
    uncached = Tokenizer(read_compact(SHIPPED_VOCABULARY), cache_size=0)
    assert uncached.encode(text) == enc.encode(text) and len(uncached._cache) == 0
    with pytest.raises(TokenizerError, match="cache_size"):
        Tokenizer({b"a": 0}, cache_size=-1)


def test_heap_and_window_merges_equal_list_merge():
    ranks = read_compact(SHIPPED_VOCABULARY)
    for piece in [
        b"",
        b"a",
        b"ab",
        b"hello",
        b"a" * 257,
        b"abcabcabc" * 30,
        "héllo wörld".encode() * 20,
        bytes(range(256)),
        b" " * 300,
        b"!?" * 200,
    ]:
        expected = merge_short(piece, ranks)
        assert merge_heap(piece, ranks) == expected
        assert merge_long(piece, ranks) == expected


def _random_letters(n: int, alphabet: str = "abcdefghijklmnopqrstuvwxyz", seed: int = 0) -> str:
    return "".join(random.Random(seed).choices(alphabet, k=n))


@pytest.mark.parametrize(
    "text",
    [
        _random_letters(300_000),
        _random_letters(100_000, "ab", seed=1),
        _random_letters(100_000, "aeiou", seed=2),
        _random_letters(30_000, "éèàçœßþðñ", seed=3),
        _random_letters(20_000, "日本語中文한국어", seed=4),
        _random_letters(30_000, "0123456789", seed=5),
        "the" * 50_000,
        "z" * 200_000,
    ],
    ids=["random-300k", "ab-100k", "vowels-100k", "latin1-30k", "cjk-20k", "digits-30k", "the-150k", "z-200k"],
)
def test_pathological_pieces_match_tiktoken(tok, enc, text):
    """One huge pre-token (letters with no space): windows joined at proven seams give tiktoken's ids."""
    assert tok.encode_ordinary(text) == enc.encode_ordinary(text)


@pytest.mark.parametrize("window, margin", [(2, 0), (3, 0), (5, 1), (8, 0), (16, 2)])
def test_window_merge_repairs_seams(monkeypatch, window, margin):
    """Tiny windows and no margin make most seams incompatible: the repairs, and the fall back to the
    heap merge when repairs exceed their budget, must still give the exact merge."""
    ranks = read_compact(SHIPPED_VOCABULARY)
    monkeypatch.setattr(bpe, "WINDOW", window)
    monkeypatch.setattr(bpe, "MARGIN", margin)
    monkeypatch.setattr(bpe, "_BLOCK", 97)  # repairs reach back across blocks too
    for seed, alphabet in enumerate(["abcdefghijklmnopqrstuvwxyz", "ab", "aeiou", "thequickbrownfox", "é 1"]):
        piece = _random_letters(2_000, alphabet, seed).encode()
        assert merge_long(piece, ranks) == merge_heap(piece, ranks)


@pytest.mark.parametrize("module", ["bytes_unicode", "pretokenize", "bpe", "checks", "tokenizer", "stream", "__init__"])
def test_docstring_examples(module):
    import doctest
    import importlib

    name = "gpt2.tokenizer" if module == "__init__" else f"gpt2.tokenizer.{module}"
    result = doctest.testmod(importlib.import_module(name))
    assert result.failed == 0
