"""Text from the user's files and standard input, read with the care the weight readers take.

A prompt file or stdin can be anything: `/dev/zero` never ends, a FIFO with no writer
blocks `open()` forever, a pipe nobody writes to never closes. So a text file is opened
through `gpt2.regular_file` (regular files only: a FIFO, a device or a directory is a
one-line error, never a wait) and both are read up to `MAX_TEXT_BYTES`, far more than any
prompt or text the commands work on, and refused beyond it. Standard input that is not a
terminal and not a file (a pipe, a socket) also has a read deadline: when no byte arrives for
`GPT2_STDIN_TIMEOUT` seconds (default 60; 0 waits forever) the command says so and stops,
instead of waiting silently on a writer that is not there. A terminal has no deadline: a
person is typing.

>>> import os, tempfile
>>> path = os.path.join(tempfile.mkdtemp(), "prompt.txt")
>>> _ = open(path, "w", encoding="utf-8").write("ROMEO:")
>>> read_text_file(path, "the prompt file")
'ROMEO:'
>>> read_text_file("/dev/zero", "the prompt file")
Traceback (most recent call last):
...
gpt2.errors.Gpt2Error: cannot read the prompt file /dev/zero: a character device, not a regular file
"""

from __future__ import annotations

import io
import os
import stat
import sys
from typing import Any

from ..errors import Gpt2Error

MAX_TEXT_BYTES = 16 * 1024 * 1024  # 16 MiB: about 4 million tokens, 4,000 times GPT-2's context window
STDIN_TIMEOUT_VARIABLE = "GPT2_STDIN_TIMEOUT"
DEFAULT_STDIN_TIMEOUT_S = 60.0
_CHUNK = 1 << 16


def _too_large(where: str) -> Gpt2Error:
    return Gpt2Error(f"{where} holds more than {MAX_TEXT_BYTES >> 20} MiB, the most gpt2 reads as one text")


def decode_utf8(data: bytes, where: str) -> str:
    """UTF-8 text, or a clear error naming the first bad byte (a silent U+FFFD would change the ids).

    >>> decode_utf8(b"caf\\xe9", "stdin")
    Traceback (most recent call last):
    ...
    gpt2.tokenizer.errors.TokenizerError: stdin is not UTF-8 text (byte 0xe9 at offset 3)
    """
    from ..tokenizer import TokenizerError

    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = f"byte 0x{data[exc.start]:02x} at offset {exc.start}"
        raise TokenizerError(f"{where} is not UTF-8 text ({bad})") from None


def read_text_file(path: str, what: str) -> str:
    """The UTF-8 text of a regular file of at most MAX_TEXT_BYTES bytes; anything else is a
    Gpt2Error that names `what` and the path."""
    from ..regular_file import FileTooLarge, NotARegularFile, read_regular

    try:
        data = read_regular(path, MAX_TEXT_BYTES)
    except FileTooLarge:
        raise _too_large(f"{what} {path}") from None
    except NotARegularFile as exc:
        hint = "; give its text on stdin instead" if "FIFO" in (exc.strerror or "") else ""
        raise Gpt2Error(f"cannot read {what} {path}: {exc.strerror}{hint}") from None
    except OSError as exc:
        raise Gpt2Error(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    return decode_utf8(data, f"{what} {path}")


def stdin_timeout(env: Any = None) -> float | None:
    """Seconds stdin may stay silent (GPT2_STDIN_TIMEOUT; None: wait forever).

    >>> stdin_timeout({}), stdin_timeout({"GPT2_STDIN_TIMEOUT": "2.5"}), stdin_timeout({"GPT2_STDIN_TIMEOUT": "0"})
    (60.0, 2.5, None)
    """
    raw = (os.environ if env is None else env).get(STDIN_TIMEOUT_VARIABLE, "").strip()
    if not raw:
        return DEFAULT_STDIN_TIMEOUT_S
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0 or seconds == float("inf"):
        raise Gpt2Error(f"{STDIN_TIMEOUT_VARIABLE} must be a number of seconds >= 0 (0 waits forever), got {raw!r}")
    return seconds or None


def read_stdin_bytes(terminal: bool) -> bytes | str:
    """All of stdin, at most MAX_TEXT_BYTES of it: bytes from a descriptor, or text from a
    stream that has none (a StringIO in tests). `terminal`: a person types, so no deadline."""
    stdin = sys.stdin
    try:
        fd = stdin.fileno()
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        fd = None
    if fd is None:  # a stream without a descriptor: read it through its own read, bounded
        stream = getattr(stdin, "buffer", stdin)
        data = stream.read(MAX_TEXT_BYTES + 1)
        if len(data) > MAX_TEXT_BYTES:
            raise _too_large("stdin")
        return data
    status = os.fstat(fd)
    mode = status.st_mode
    if stat.S_ISDIR(mode):
        raise Gpt2Error("stdin is a directory; redirect it from a file")
    if stat.S_ISREG(mode) and status.st_size > MAX_TEXT_BYTES:
        raise _too_large("stdin")
    deadline = None if terminal or stat.S_ISREG(mode) else stdin_timeout()
    return _read_fd(fd, deadline)


def _read_fd(fd: int, timeout: float | None) -> bytes:
    """Read `fd` to its end, at most MAX_TEXT_BYTES, failing when no byte comes for `timeout` s."""
    import select

    can_wait = os.name != "nt"  # select() takes only sockets on Windows: no deadline there
    chunks: list[bytes] = []
    total = 0
    while True:
        if can_wait:
            ready, _, _ = select.select([fd], [], [], timeout)
            if not ready:
                got = f" after {total:,} bytes" if total else ""
                raise Gpt2Error(
                    f"nothing arrived on stdin for {timeout:g} s{got}; give the text as an argument, close stdin "
                    f"(</dev/null), or set {STDIN_TIMEOUT_VARIABLE} (seconds; 0 waits forever)"
                )
        try:
            chunk = os.read(fd, _CHUNK)
        except BlockingIOError:  # a non-blocking descriptor with nothing yet: select() waits for it
            continue
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > MAX_TEXT_BYTES:
            raise _too_large("stdin")
        chunks.append(chunk)
