"""The stream decoder and the `gpt2 tokenize` / `gpt2 detokenize` commands."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest

from gpt2.cli import main
from gpt2.tokenizer import StreamDecoder, Tokenizer, TokenizerError


@pytest.fixture(scope="module")
def tok():
    return Tokenizer.gpt2()


def test_stream_holds_back_split_characters(tok):
    text = "🙂 café 日本 👨‍👩‍👧"
    ids = tok.encode(text)
    assert any(tok.decode([i]) == "\ufffd" for i in ids)  # some tokens are partial characters
    stream = StreamDecoder(tok)
    pieces = [stream.feed(i) for i in ids]
    assert "".join(pieces) == text
    assert not any("\ufffd" in p for p in pieces)
    assert stream.flush() == ""


def test_stream_one_byte_at_a_time(tok):
    """Feeding the single-byte tokens of a 4-byte character: nothing until the last one."""
    byte_ids = [tok._encoder[bytes((b,))] for b in "😀".encode()]
    stream = StreamDecoder(tok)
    assert [stream.feed(i) for i in byte_ids] == ["", "", "", "😀"]


def test_stream_flush_and_invalid_bytes(tok):
    stream = StreamDecoder(tok)
    first = tok._encoder[b"\xf0"]
    assert stream.feed(first) == ""
    assert stream.flush() == "\ufffd"  # the character never finished
    assert stream.feed(tok._encoder[b"\xff"]) == "\ufffd"  # never valid UTF-8: replaced at once
    assert stream.feed(tok.eot_token) == "<|endoftext|>"
    with pytest.raises(TokenizerError):
        stream.feed(50257)


def test_tokenize_brackets(capsys):
    assert main(["tokenize", "Hello world\n!"]) == 0
    out = capsys.readouterr()
    assert out.out.splitlines() == ["15496 995 198 0", "[Hello][ world][\\n][!]"]
    assert "4 tokens" in out.err


def test_tokenize_json(capsys):
    assert main(["tokenize", "--json", "héllo"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ids"] == Tokenizer.gpt2().encode("héllo")
    assert "".join(data["tokens"]) == "héllo" and data["count"] == len(data["ids"])


def test_tokenize_special(capsys):
    assert main(["tokenize", "a<|endoftext|>"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--allow-special" in err
    assert main(["tokenize", "--ids", "--allow-special", "a<|endoftext|>"]) == 0
    assert capsys.readouterr().out == "64 50256\n"


def test_tokenize_reads_stdin(capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("Hello world"))
    assert main(["tokenize", "--ids"]) == 0
    assert capsys.readouterr().out == "15496 995\n"


@pytest.mark.parametrize(
    "args",
    [
        ["15496", "995"],
        ["15496,995"],
        ["[15496, 995]"],
        ["15496, 995"],
        ['{"ids": [15496, 995], "tokens": ["Hello", " world"]}'],
    ],
)
def test_detokenize_arguments(capsys, args):
    assert main(["detokenize", *args]) == 0
    assert capsys.readouterr().out == "Hello world"


def test_detokenize_reads_stdin(capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("15496\n995\n"))
    assert main(["detokenize"]) == 0
    assert capsys.readouterr().out == "Hello world"


@pytest.mark.parametrize(
    "args, message",
    [
        (["99999"], "not in the vocabulary"),
        (["-3"], "not in the vocabulary"),
        (["12", "abc"], "not a token id: 'abc'"),
        (["[1, 2.5]"], "integer ids"),
        (['{"idz": [1]}'], "integer ids"),
        (["[1, 2"], "not valid JSON"),
    ],
)
def test_detokenize_bad_ids(capsys, args, message):
    assert main(["detokenize", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_pipe_through_both_commands():
    text = "Round trip: café 😀\n"
    ids = subprocess.run(
        [sys.executable, "-m", "gpt2", "tokenize", "--ids"],
        input=text,
        capture_output=True,
        text=True,
        encoding="utf-8",
        check=True,
    ).stdout
    back = subprocess.run(
        [sys.executable, "-m", "gpt2", "detokenize"],
        input=ids,
        capture_output=True,
        text=True,
        encoding="utf-8",
        check=True,
    ).stdout
    assert back == text


def test_colour_rendering():
    from gpt2.commands.tokenize import render

    coloured = render(["Hello", " world", "\n"], colour=True)
    assert coloured.count("\x1b[0m") == 3 and "[" + "Hello]" not in coloured and "\\n" in coloured
    assert render(["a", "\t"], colour=False) == "[a][\\t]"


def test_vocab_option(capsys, vocab_dir):
    directory = vocab_dir
    assert main(["tokenize", "--ids", "--vocab", str(directory), "Hello world"]) == 0
    assert main(["tokenize", "--ids", "--vocab", str(directory / "gpt2.tiktoken"), "Hello world"]) == 0
    assert capsys.readouterr().out == "15496 995\n15496 995\n"
    assert main(["detokenize", "--vocab", "/no/such/place", "1"]) == 2
    assert "no such file or directory" in capsys.readouterr().err


@pytest.mark.parametrize("ids", ["1" * 5000, "[" + "1" * 5000 + "]", "[" * 100_000])
def test_detokenize_absurd_input_is_one_line(capsys, ids):
    # A 5000-digit id hits Python's int-conversion limit and deep nesting hits the
    # recursion limit: both must be the usual one-line error, not a traceback.
    assert main(["detokenize", ids]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gpt2 detokenize: error:") and err.count("\n") == 1


def test_stdin_that_is_not_utf8_is_one_line_whatever_the_locale():
    import os

    env = {**os.environ, "PYTHONIOENCODING": "utf-8:strict"}  # a strict locale: no surrogateescape
    done = subprocess.run(
        [sys.executable, "-m", "gpt2", "tokenize", "--ids"], input=b"ok \xff\xfe", env=env, capture_output=True
    )
    assert done.returncode == 2 and done.stdout == b""
    assert done.stderr.decode() == "gpt2 tokenize: error: stdin is not UTF-8 text (byte 0xff at offset 3)\n"
    done = subprocess.run(
        [sys.executable, "-m", "gpt2", "tokenize", "--ids"], input="héllo".encode(), env=env, capture_output=True
    )
    assert done.returncode == 0 and done.stdout.decode() == " ".join(map(str, Tokenizer.gpt2().encode("héllo"))) + "\n"


def test_tokenize_summary_is_singular_for_one(capsys):
    assert main(["tokenize", "a"]) == 0
    assert capsys.readouterr().err == "1 token, 1 character\n"


def test_argument_that_was_not_utf8_is_refused_like_stdin(capsys):
    # argv bytes that are not UTF-8 reach Python as lone surrogates (surrogateescape).
    assert main(["tokenize", "a\udcffb"]) == 2
    assert capsys.readouterr().err == "gpt2 tokenize: error: TEXT is not UTF-8 text (byte 0xff at character 1)\n"


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["detokenize", "71", "2634", "18798"], "héllo"),
        (["tokenize", "--json", "héllo"], '{"ids": [71, 2634, 18798], "tokens": ["h", "é", "llo"], "count": 3}\n'),
    ],
)
def test_output_on_a_terminal_that_cannot_encode_it_is_utf8_not_a_traceback(argv, expected):
    import os

    env = {**os.environ, "PYTHONIOENCODING": "ascii"}
    done = subprocess.run([sys.executable, "-m", "gpt2", *argv], env=env, capture_output=True)
    assert done.returncode == 0 and done.stderr == b"" and done.stdout.decode("utf-8") == expected
