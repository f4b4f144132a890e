"""The command line never shows a traceback for an environment problem: stdout on a full
device, stdin or stdout closed, stdin that is not UTF-8, a download cut half-way
through its progress bar. Each is one line `gpt2 CMD: error: ...` and exit status 2.

These run `python -m gpt2` in a fresh process (through `sh` where a descriptor must be
closed), because the interpreter's own start-up and exit are part of what is tested."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys

import pytest

from gpt2.cli import main

SH = shutil.which("sh")
posix_only = pytest.mark.skipif(SH is None or not os.path.exists("/dev/full"), reason="needs sh and /dev/full")


def gpt2(args: list[str], redirect: str = "", stdin: bytes | None = None) -> subprocess.CompletedProcess:
    """`python -m gpt2 ARGS REDIRECT` through sh (REDIRECT such as '>/dev/full' or '<&-')."""
    quoted = " ".join("'" + a.replace("'", "'\\''") + "'" for a in [sys.executable, "-m", "gpt2", *args])
    return subprocess.run(
        [SH, "-c", f"exec {quoted} {redirect}"], input=stdin, capture_output=True, timeout=120, env=os.environ.copy()
    )


def assert_one_error(result: subprocess.CompletedProcess, command: str, *words: str) -> None:
    err = result.stderr.decode("utf-8", "replace")
    assert result.returncode == 2, err
    assert "Traceback" not in err and "Exception ignored" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"gpt2 {command}: error: "), err
    for word in words:
        assert word in err, err


@posix_only
@pytest.mark.parametrize(
    "args",
    [
        ["tokenize", "hello world"],
        ["tokenize", "--json", "hello world"],
        ["detokenize", *["31373"] * 5000],  # more than one buffer's worth
        ["--version"],
    ],
    ids=["tokenize", "tokenize-json", "detokenize-long", "version"],
)
def test_stdout_on_a_full_device(args):
    result = gpt2(args, ">/dev/full")
    if args == ["--version"]:  # argparse prints and exits itself; it must not crash either
        assert b"Traceback" not in result.stderr
        return
    assert_one_error(result, args[0], "cannot write the output", "No space left on device")


@posix_only
@pytest.mark.parametrize("args", [["tokenize"], ["generate", "--engine", "pure"], ["score", "--engine", "pure"]])
def test_stdin_closed(args):
    assert_one_error(gpt2(args, "<&-"), args[0], "stdin is closed")


@posix_only
def test_stdout_closed():
    assert_one_error(gpt2(["tokenize", "hi"], ">&-"), "tokenize", "stdout is closed")


@posix_only
@pytest.mark.parametrize("command", ["tokenize", "generate", "score"])
def test_stdin_that_is_not_utf8(command):
    args = [command] if command == "tokenize" else [command, "--engine", "pure"]
    assert_one_error(gpt2(args, stdin=b"caf\xe9 au lait"), command, "stdin is not UTF-8", "0xe9")


@posix_only
@pytest.mark.parametrize("command", ["generate", "score"])
def test_words_that_are_not_utf8(command):
    # Bytes that are not UTF-8 in argv reach Python as lone surrogates (surrogateescape).
    result = subprocess.run(
        [sys.executable, "-m", "gpt2", command, "--engine", "pure", b"caf\xe9"], capture_output=True, timeout=120
    )
    assert_one_error(result, command, "not valid UTF-8", "0xe9")


def test_an_unexpected_os_error_is_one_line(monkeypatch, capsys):
    """Whatever OSError escapes a command (a vanished file, an I/O error) is one line."""
    from gpt2 import cli

    def broken(args):
        raise OSError(5, "Input/output error", "/some/file")

    parser = cli.build_parser()
    parser.set_defaults(run=broken)  # the subcommand's own default wins; override it on its parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            action.choices["tokenize"].set_defaults(run=broken)
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    assert main(["tokenize", "x"]) == 2
    assert capsys.readouterr().err == "gpt2 tokenize: error: Input/output error (/some/file)\n"


def test_the_progress_line_is_ended_before_an_error(tmp_path, monkeypatch, capsys):
    """A download cut every time: on a terminal, the half-drawn bar's line ends before the error
    line; the error names no packaged model (the network is there, the file is cut)."""
    import http.server
    import json
    import threading

    from gpt2.commands import progress
    from gpt2.config import Config

    monkeypatch.setattr(progress, "is_terminal", lambda stream: True)

    config = json.dumps(Config(n_layer=1, n_embd=8, n_head=2, vocab_size=16, n_ctx=4).to_hf_dict()).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            body = config if self.path.endswith("config.json") else bytes(4000)
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body if body is config else body[:1000])  # the weights: cut after 1000 bytes

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
        monkeypatch.setenv("HF_HOME", str(tmp_path))
        monkeypatch.setenv("GPT2_DOWNLOAD_DEADLINE", "60")
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.delenv("HF_HUB_CACHE", raising=False)
        assert main(["convert", "gpt2", str(tmp_path / "out")]) == 2  # (info fetches only config.json)
    finally:
        server.shutdown()
        server.server_close()
    err = capsys.readouterr().err
    assert "model.safetensors" in err and "1.0 KB / 4.0 KB" in err  # the bar was drawn, half-way
    last = err.split("\n")[-2]
    assert last.startswith("gpt2 convert: error: ") and "after 5 attempts" in last, err
    assert "gpt2-shakespeare" not in last
