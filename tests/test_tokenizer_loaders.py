"""Loading vocabularies: OpenAI's encoder.json + vocab.bpe, Hugging Face's files, tiktoken files,
directories; and the proof that tiktoken-style ranks give OpenAI's own BPE for GPT-2."""

from __future__ import annotations

import json
import shutil

import pytest

from gpt2.tokenizer import Tokenizer, TokenizerError
from gpt2.tokenizer.bytes_unicode import BYTE_TO_CHAR, bytes_to_token_string, token_string_to_bytes
from gpt2.tokenizer.loaders import read_byte_level_bpe, read_compact, read_merges, write_compact
from gpt2.tokenizer.pretokenize import pretokenize

SAMPLE = "Hello world! It's 2½ o'clock;   naïve café 😀 日本語\n\n<|endoftext|> THE END'S"


@pytest.fixture(scope="module")
def openai_tok(vocab_dir):
    return Tokenizer.from_encoder_json(vocab_dir / "encoder.json", vocab_dir / "vocab.bpe")


def test_byte_to_unicode_table():
    assert len(set(BYTE_TO_CHAR.values())) == 256
    assert BYTE_TO_CHAR[ord(" ")] == "Ġ" and BYTE_TO_CHAR[ord("\n")] == "Ċ" and BYTE_TO_CHAR[ord("A")] == "A"
    assert all(c.isprintable() and not c.isspace() for c in BYTE_TO_CHAR.values())
    everything = bytes(range(256))
    assert token_string_to_bytes(bytes_to_token_string(everything)) == everything
    with pytest.raises(TokenizerError, match="not one of GPT-2's 256 byte characters"):
        token_string_to_bytes(" ")


def test_openai_files_give_the_shipped_vocabulary(openai_tok):
    shipped = Tokenizer.gpt2()
    assert openai_tok._encoder == shipped._encoder
    assert openai_tok.special_tokens_set == {"<|endoftext|>"} and openai_tok.eot_token == 50256
    assert openai_tok.n_vocab == 50257


def test_merge_rank_is_token_id(vocab_dir):
    """Merge i of vocab.bpe makes token 256 + i: so a token's id is its merge priority (tiktoken's rule)."""
    vocab = read_byte_level_bpe(vocab_dir / "encoder.json", vocab_dir / "vocab.bpe")
    assert len(vocab.merge_ranks) == 50000
    assert all(vocab.encoder[merged] == 256 + rank for merged, rank in vocab.merge_ranks.items())


def openai_bpe(piece: bytes, pair_ranks: dict[tuple[str, str], int]) -> list[str]:
    """OpenAI's algorithm (encoder.py), independently: ranks belong to *pairs* of symbols; repeatedly
    take the lowest-ranked pair present and merge every occurrence of it, left to right."""
    word = [BYTE_TO_CHAR[b] for b in piece]
    while len(word) > 1:
        pairs = {(word[i], word[i + 1]) for i in range(len(word) - 1)}
        best = min(pairs, key=lambda p: pair_ranks.get(p, float("inf")))
        if best not in pair_ranks:
            break
        merged, i = [], 0
        while i < len(word):
            if i < len(word) - 1 and (word[i], word[i + 1]) == best:
                merged.append(word[i] + word[i + 1])
                i += 2
            else:
                merged.append(word[i])
                i += 1
        word = merged
    return word


def test_ranks_reproduce_openais_pair_bpe(openai_tok, vocab_dir, verdict, shakespeare):
    """Every distinct piece of the-verdict.txt and part of tinyshakespeare: the same ids as OpenAI's algorithm."""
    pair_ranks = {pair: rank for rank, pair in enumerate(read_merges(vocab_dir / "vocab.bpe"))}
    encoder = json.loads((vocab_dir / "encoder.json").read_text(encoding="utf-8"))
    text = verdict.read_text(encoding="utf-8")
    text += shakespeare.read_text(encoding="utf-8")[:200_000] + SAMPLE
    pieces = set(pretokenize(text))
    assert len(pieces) > 5000
    for piece in pieces:
        expected = [encoder[s] for s in openai_bpe(piece.encode("utf-8"), pair_ranks)]
        assert openai_tok.encode_ordinary(piece) == expected, piece


def test_openai_loader_matches_tiktoken(openai_tok, verdict, tiktoken_gpt2):
    enc = tiktoken_gpt2
    text = verdict.read_text(encoding="utf-8") + SAMPLE
    assert openai_tok.encode(text, allowed_special="all") == enc.encode(text, allowed_special="all")


def test_hugging_face_files_and_directories(tmp_path, openai_tok, vocab_dir):
    hf = tmp_path / "hf"
    hf.mkdir()
    shutil.copy(vocab_dir / "encoder.json", hf / "vocab.json")
    shutil.copy(vocab_dir / "vocab.bpe", hf / "merges.txt")
    expected = openai_tok.encode(SAMPLE, allowed_special="all")
    assert (
        Tokenizer.from_hf_files(hf / "vocab.json", hf / "merges.txt").encode(SAMPLE, allowed_special="all") == expected
    )
    assert Tokenizer.from_directory(hf).encode(SAMPLE, allowed_special="all") == expected

    tt = tmp_path / "tt"
    tt.mkdir()
    shutil.copy(vocab_dir / "gpt2.tiktoken", tt / "gpt2.tiktoken")
    from_dir = Tokenizer.from_directory(tt)
    assert from_dir.encode(SAMPLE, allowed_special="all") == expected
    assert from_dir.eot_token == 50256 and from_dir.n_vocab == 50257

    with pytest.raises(TokenizerError, match="no vocabulary found"):
        Tokenizer.from_directory(tmp_path)
    with pytest.raises(TokenizerError, match="not a directory"):
        Tokenizer.from_directory(tmp_path / "missing")


def test_tiktoken_file_with_custom_special_tokens(vocab_dir):
    tok = Tokenizer.from_tiktoken_file(
        vocab_dir / "gpt2.tiktoken", special_tokens={"<|endoftext|>": 50256, "<|pad|>": 50257}
    )
    assert tok.n_vocab == 50258
    assert tok.encode("a<|pad|>", allowed_special="all") == [64, 50257]
    with pytest.raises(TokenizerError, match="<\\|pad\\|>"):
        tok.encode("a<|pad|>")


def test_a_tiny_custom_vocabulary(tmp_path):
    """A hand-made vocabulary in the OpenAI format, with merge ranks unlike its ids."""
    chars = [BYTE_TO_CHAR[b] for b in range(256)]
    encoder = {c: i for i, c in enumerate(chars)}
    encoder.update({"ab": 300, "abc": 256, "<|endoftext|>": 400})
    (tmp_path / "encoder.json").write_text(json.dumps(encoder), encoding="utf-8")
    (tmp_path / "vocab.bpe").write_text("#version: 0.2\na b\nab c\n", encoding="utf-8")
    tok = Tokenizer.from_directory(tmp_path)
    assert tok.encode("abcab") == [256, 300]
    assert tok.decode([256, 300, 400]) == "abcab<|endoftext|>"
    assert tok.n_vocab == 401
    with pytest.raises(TokenizerError, match="not in the vocabulary"):
        tok.decode([350])  # a gap in the ids


def test_malformed_files(tmp_path):
    bad = tmp_path / "bad.tiktoken"
    bad.write_text("IQ== 0\nnot-base64!! x\n")
    with pytest.raises(TokenizerError, match="bad.tiktoken:2"):
        Tokenizer.from_tiktoken_file(bad)
    (tmp_path / "encoder.json").write_text("{not json")
    (tmp_path / "vocab.bpe").write_text("#version: 0.2\na b\n")
    with pytest.raises(TokenizerError, match="not valid JSON"):
        Tokenizer.from_encoder_json(tmp_path / "encoder.json", tmp_path / "vocab.bpe")
    (tmp_path / "encoder.json").write_text(json.dumps({BYTE_TO_CHAR[b]: b for b in range(256)}))
    with pytest.raises(TokenizerError, match="merge result b'ab' is not in"):
        Tokenizer.from_encoder_json(tmp_path / "encoder.json", tmp_path / "vocab.bpe")
    (tmp_path / "vocab.bpe").write_text("#version: 0.2\na b c\n")
    with pytest.raises(TokenizerError, match="vocab.bpe:2"):
        Tokenizer.from_encoder_json(tmp_path / "encoder.json", tmp_path / "vocab.bpe")


def test_compact_format_round_trip(tmp_path):
    encoder = {b"a": 0, b"b": 1, b"ab": 2, "é".encode(): 3}
    write_compact(tmp_path / "v.bin", encoder)
    assert read_compact(tmp_path / "v.bin") == encoder
    (tmp_path / "v.bin").write_bytes((tmp_path / "v.bin").read_bytes()[:-1])
    with pytest.raises(TokenizerError, match="truncated"):
        read_compact(tmp_path / "v.bin")
    with pytest.raises(TokenizerError, match="without gaps"):
        write_compact(tmp_path / "w.bin", {b"a": 1})


def test_a_tiktoken_file_without_every_byte_is_refused(tmp_path):
    # Without the 256 single-byte tokens some text cannot be encoded: refuse at load time,
    # not with a KeyError in the middle of encoding.
    partial = tmp_path / "partial.tiktoken"
    partial.write_text("YQ== 0\nYg== 1\n")  # just "a" and "b"
    with pytest.raises(TokenizerError, match="partial.tiktoken: no token for byte"):
        Tokenizer.from_tiktoken_file(partial)


def test_unreadable_or_binary_vocabulary_files_are_tokenizer_errors(tmp_path):
    (tmp_path / "encoder.json").write_bytes(b"\xff\xfe\x00binary")
    (tmp_path / "vocab.bpe").write_text("#version: 0.2\n")
    with pytest.raises(TokenizerError, match="encoder.json: not valid JSON"):
        Tokenizer.from_encoder_json(tmp_path / "encoder.json", tmp_path / "vocab.bpe")
    (tmp_path / "encoder.json").write_text(json.dumps({BYTE_TO_CHAR[b]: b for b in range(256)}))
    (tmp_path / "vocab.bpe").write_bytes(b"#version: 0.2\n\xff \xfe\n")
    with pytest.raises(TokenizerError, match="vocab.bpe: not UTF-8 text"):
        Tokenizer.from_encoder_json(tmp_path / "encoder.json", tmp_path / "vocab.bpe")
    (tmp_path / "dir.tiktoken").mkdir()
    with pytest.raises(TokenizerError, match="cannot read"):
        Tokenizer.from_tiktoken_file(tmp_path / "dir.tiktoken")
