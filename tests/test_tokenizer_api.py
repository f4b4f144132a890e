"""The rest of tiktoken's Encoding API on our Tokenizer, each method against tiktoken's own output."""

from __future__ import annotations

import pytest

from gpt2.tokenizer import Tokenizer, TokenizerError
from gpt2.tokenizer.errors import UnknownTokenError

TEXTS = [
    "hello world",
    "goodbye world",
    "",
    "I'm here, you're there   \n\n and 2½ 😀 👨‍👩‍👧 日本語",
    "e\u0301 caf\u00e9 x\u00b2",
    "lone \ud800 surrogate",
]
SPECIAL_TEXTS = ["a<|endoftext|>b", "<|endoftext|><|endoftext|>", "plain"]


@pytest.fixture(scope="module")
def tok():
    return Tokenizer.gpt2()


@pytest.fixture(scope="module")
def enc(tiktoken_gpt2):
    return tiktoken_gpt2


def test_facts_like_tiktoken(tok, enc):
    assert tok.n_vocab == enc.n_vocab == 50257
    assert tok.eot_token == enc.eot_token == 50256
    assert tok.max_token_value == enc.max_token_value
    assert tok.special_tokens_set == enc.special_tokens_set
    for token in [0, 995, 50255, 50256]:
        assert tok.is_special_token(token) == enc.is_special_token(token)


@pytest.mark.parametrize("num_threads", [1, 8])
def test_encode_batch_like_tiktoken(tok, enc, num_threads):
    assert tok.encode_batch(TEXTS, num_threads=num_threads) == enc.encode_batch(TEXTS, num_threads=num_threads)
    assert tok.encode_ordinary_batch(TEXTS + SPECIAL_TEXTS, num_threads=num_threads) == enc.encode_ordinary_batch(
        TEXTS + SPECIAL_TEXTS, num_threads=num_threads
    )
    assert tok.encode_batch(tuple(TEXTS)) == enc.encode_batch(list(TEXTS))  # any iterable of texts


@pytest.mark.parametrize(
    "options",
    [
        {"allowed_special": "all"},
        {"allowed_special": {"<|endoftext|>"}},
        {"disallowed_special": ()},
        {"allowed_special": set(), "disallowed_special": ()},
    ],
)
def test_encode_batch_special_tokens_like_tiktoken(tok, enc, options):
    assert tok.encode_batch(SPECIAL_TEXTS, **options) == enc.encode_batch(SPECIAL_TEXTS, **options)


def test_encode_batch_refuses_special_tokens_like_tiktoken(tok, enc):
    with pytest.raises(ValueError):
        enc.encode_batch(SPECIAL_TEXTS)
    with pytest.raises(TokenizerError, match="special token"):
        tok.encode_batch(SPECIAL_TEXTS)


def test_decode_batch_like_tiktoken(tok, enc):
    batch = enc.encode_batch(TEXTS) + [[], enc.encode("😀")[:1], enc.encode("😀")[:1] + [995]]
    for errors in ("replace", "ignore", "backslashreplace"):
        assert tok.decode_batch(batch, errors=errors) == enc.decode_batch(batch, errors=errors)
    assert tok.decode_batch(batch) == enc.decode_batch(batch)
    assert tok.decode_bytes_batch(batch) == enc.decode_bytes_batch(batch)
    assert tok.decode_batch(iter([(15496, 995)]), num_threads=1) == ["Hello world"]


def test_encode_single_token_like_tiktoken(tok, enc):
    """Every token of the vocabulary, by its bytes, gives the same id; text and special tokens too."""
    for token in range(enc.n_vocab):
        data = enc.decode_single_token_bytes(token)
        assert tok.encode_single_token(data) == enc.encode_single_token(data) == token
    for text in ["hello", " world", "<|endoftext|>", "\u00e9"]:
        assert tok.encode_single_token(text) == enc.encode_single_token(text)
    assert tok.encode_single_token(bytearray(b"hello")) == 31373


@pytest.mark.parametrize("missing", ["hello world", "", b"hello world", "<|endoftext|> ", "\ud800"])
def test_encode_single_token_unknown_is_a_key_error(tok, enc, missing):
    with pytest.raises((KeyError, UnicodeEncodeError)):
        enc.encode_single_token(missing)
    with pytest.raises(KeyError, match="not a single token") as info:
        tok.encode_single_token(missing)
    assert isinstance(info.value, UnknownTokenError) and isinstance(info.value, TokenizerError)
    assert str(info.value).startswith(repr(missing))  # one clean line, not KeyError's quoted repr


@pytest.mark.parametrize(
    "text",
    [
        "hello world",
        "",
        "😀 smile 👨‍👩‍👧 family",
        "naïve café 日本語 x² ½",
        "\U0001f600\U0001f600\U0001f600",
        "a<|endoftext|>b",
    ],
)
def test_decode_with_offsets_like_tiktoken(tok, enc, text):
    ids = enc.encode(text, allowed_special="all")
    assert tok.decode_with_offsets(ids) == enc.decode_with_offsets(ids)
    decoded, offsets = tok.decode_with_offsets(ids)
    assert decoded == text and len(offsets) == len(ids)


def test_decode_with_offsets_refuses_invalid_utf8(tok, enc):
    ids = enc.encode("😀")[:1]  # the first bytes of a character, cut
    with pytest.raises(UnicodeDecodeError):
        enc.decode_with_offsets(ids)
    with pytest.raises(TokenizerError, match="not decode to valid UTF-8"):
        tok.decode_with_offsets(ids)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda t: t.encode_batch("hello"), "encode_batch takes a list of texts"),
        (lambda t: t.encode_ordinary_batch(["ok", b"bytes"]), "item of type bytes"),
        (lambda t: t.encode_batch(["ok"], num_threads=0), "num_threads"),
        (lambda t: t.encode_ordinary_batch(["ok"], num_threads=True), "num_threads"),
        (lambda t: t.decode_batch([15496, 995]), "decode_batch takes a list of id lists"),
        (lambda t: t.decode_batch(["hello"]), "item of type str"),
        (lambda t: t.decode_bytes_batch(None), "got NoneType"),
        (lambda t: t.decode_batch([[50257]]), "not in the vocabulary"),
        (lambda t: t.encode_single_token(995), "takes str or bytes"),
        (lambda t: t.decode_with_offsets([-1]), "not in the vocabulary"),
        (lambda t: t.is_special_token("50256"), "must be integers"),
    ],
)
def test_api_mistakes_are_tokenizer_errors(tok, call, message):
    with pytest.raises(TokenizerError, match=message):
        call(tok)
