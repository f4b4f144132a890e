"""Prompt files and standard input get the care the weight readers get: regular files only, a size
bound, a deadline on a silent pipe, a closed stdin said in one line; `generate -i` becomes `chat` when
the command line is parsed; Ctrl-D in a chat ends the line it leaves.

Each case runs `python -m gpt2` in a fresh process with a bounded timeout (through `sh` where a
descriptor must be closed or redirected): a regression here is a hang or a memory blow-up, which only
a separate process survives."""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import sys
import time

import pytest

from gpt2.cli import build_parsers, main
from gpt2.commands.text_input import MAX_TEXT_BYTES, STDIN_TIMEOUT_VARIABLE

SH = shutil.which("sh")
posix_only = pytest.mark.skipif(
    SH is None or not os.path.exists("/dev/zero") or not hasattr(os, "mkfifo"), reason="needs sh, /dev/zero, mkfifo"
)
PACKAGED = ["-m", "gpt2-shakespeare"]
TIMEOUT_S = 120  # a hang fails here instead of holding the suite


def gpt2(args: list[str], redirect: str = "", env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    quoted = " ".join("'" + a.replace("'", "'\\''") + "'" for a in [sys.executable, "-m", "gpt2", *args])
    return subprocess.run(
        [SH, "-c", f"exec {quoted} {redirect}"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=TIMEOUT_S,
        env={**os.environ, **(env or {})},
    )


def assert_one_error(result: subprocess.CompletedProcess, command: str, *words: str) -> None:
    err = result.stderr.decode("utf-8", "replace")
    assert result.returncode == 2, err
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"gpt2 {command}: error: "), err
    for word in words:
        assert word in err, err


@posix_only
def test_chat_with_stdin_closed_is_one_line():
    assert_one_error(gpt2(["chat", *PACKAGED], "<&-"), "chat", "stdin is closed")


@posix_only
@pytest.mark.parametrize(
    "argv",
    [
        ["generate", *PACKAGED, "--prompt-file", "/dev/zero"],
        ["chat", *PACKAGED, "--prompt-file", "/dev/zero"],
        ["score", *PACKAGED, "--file", "/dev/zero"],
    ],
    ids=["generate", "chat", "score"],
)
def test_a_device_as_a_prompt_file_is_refused_not_read(argv):
    assert_one_error(gpt2(argv), argv[0], "/dev/zero", "a character device, not a regular file")


@posix_only
@pytest.mark.parametrize("command", ["generate", "chat"])
def test_a_fifo_as_a_prompt_file_is_refused_not_waited_on(tmp_path, command):
    fifo = tmp_path / "prompt"
    os.mkfifo(fifo)  # no writer will ever come
    assert_one_error(gpt2([command, *PACKAGED, "--prompt-file", str(fifo)]), command, "a FIFO", "on stdin instead")


@posix_only
@pytest.mark.parametrize("argv", [["tokenize"], ["generate", *PACKAGED], ["score", *PACKAGED], ["detokenize"]])
def test_stdin_from_dev_zero_stops_at_the_bound(argv):
    assert_one_error(gpt2(argv, "</dev/zero"), argv[0], "stdin holds more than 16 MiB")


@posix_only
def test_chat_reading_dev_zero_stops_at_the_bound():
    assert_one_error(gpt2(["chat", *PACKAGED], "</dev/zero"), "chat", "a line on stdin is longer than")


@posix_only
def test_files_larger_than_the_bound_are_refused_by_their_size(tmp_path):
    big = tmp_path / "big.txt"
    with open(big, "wb") as f:  # sparse: no disk is written
        f.truncate(MAX_TEXT_BYTES + 1)
    assert_one_error(gpt2(["generate", *PACKAGED, "--prompt-file", str(big)]), "generate", "more than 16 MiB")
    assert_one_error(gpt2(["tokenize"], f"<'{big}'"), "tokenize", "stdin holds more than 16 MiB")


@posix_only
def test_a_file_within_the_bound_still_reads(tmp_path):
    prompt = tmp_path / "p.txt"
    prompt.write_text("Hello world", encoding="utf-8")
    result = gpt2(["tokenize", "--ids"], f"<'{prompt}'")
    assert result.returncode == 0 and result.stdout.split() == [b"15496", b"995"], result.stderr


@posix_only
def test_a_silent_pipe_on_stdin_is_an_error_after_the_deadline():
    reader, writer = os.pipe()  # the write end stays open here and is never written: a writer that is not there
    try:
        result = subprocess.run(
            [sys.executable, "-m", "gpt2", "tokenize"],
            stdin=reader,
            capture_output=True,
            timeout=TIMEOUT_S,
            env={**os.environ, STDIN_TIMEOUT_VARIABLE: "1"},
        )
    finally:
        os.close(reader)
        os.close(writer)
    assert_one_error(result, "tokenize", "nothing arrived on stdin for 1 s", STDIN_TIMEOUT_VARIABLE)


@posix_only
def test_a_pipe_that_writes_slowly_within_the_deadline_is_read_whole():
    result = gpt2(["tokenize", "--ids"], env={STDIN_TIMEOUT_VARIABLE: "30"}, redirect="")
    assert result.returncode == 0  # stdin is /dev/null: an empty text, at once
    script = f"(printf Hello; sleep 1; printf ' world') | {sys.executable} -m gpt2 tokenize --ids"
    piped = subprocess.run(
        [SH, "-c", script], capture_output=True, timeout=TIMEOUT_S, env={**os.environ, STDIN_TIMEOUT_VARIABLE: "30"}
    )
    assert piped.returncode == 0 and piped.stdout.split() == [b"15496", b"995"], piped.stderr


@posix_only
@pytest.mark.parametrize("value", ["soon", "-1", "inf", "nan"])
def test_a_bad_deadline_is_one_line(value):
    result = gpt2(["tokenize"], env={STDIN_TIMEOUT_VARIABLE: value}, redirect="<&0")
    assert_one_error(result, "tokenize", STDIN_TIMEOUT_VARIABLE)


def test_generate_i_is_parsed_into_chats_options_only():
    parser, parsers = build_parsers()
    args = parser.parse_args(["generate", "-i", "Hello", "-n", "5", "--top-k", "3"])
    args = args.resolve(args, parsers)
    assert args.run is parsers["chat"]._defaults["run"]
    assert args.prompt == ["Hello"] and args.max_new_tokens == 5 and args.top_k == 3
    chat_dests = {a.dest for a in parsers["chat"]._actions}
    assert set(vars(args)) - chat_dests <= {"run", "command", "quiet_here"}  # nothing of generate's own
    assert not hasattr(args, "num_beams") and not hasattr(args, "json") and not hasattr(args, "more_prompts")


@pytest.mark.parametrize(
    "extra, flag",
    [
        (["--num-beams", "4"], "--num-beams"),
        (["--json"], "--json"),
        (["-p", "Bye"], "--prompt"),
        (["--num-samples", "2"], "--num-samples"),
        (["--length-penalty", "2"], "--length-penalty"),
    ],
)
def test_generate_i_refuses_generates_own_options_when_parsing(capsys, extra, flag):
    with pytest.raises(SystemExit) as exit_:
        main(["generate", "-i", *PACKAGED, *extra])
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert "gpt2 generate: error: -i runs an interactive session (gpt2 chat)" in err and flag in err


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_ctrl_d_in_chat_ends_the_line_for_the_shell():
    master, slave = os.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "gpt2", "chat", *PACKAGED],
        stdin=slave,
        stdout=slave,
        stderr=subprocess.PIPE,
        close_fds=True,
    )
    os.close(slave)
    out, sent = b"", False
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # the child closed the terminal
                    break
                if not chunk:
                    break
                out += chunk
            elif process.poll() is not None:
                break
            if not sent and out.endswith(b"> "):
                os.write(master, b"\x04")  # Ctrl-D at the prompt
                sent = True
        assert sent, out
        assert process.wait(timeout=TIMEOUT_S) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(master)
        assert process.stderr is not None
        process.stderr.close()
    # the terminal turns "\n" into "\r\n"; whatever readline writes, the line after "> " ends
    assert b"\n" in out[out.rindex(b"> ") :], out
