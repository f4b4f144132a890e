"""Open a file only if it is a regular file, and read it only if it is of bounded size.

Every reader of user-supplied paths (weights, config.json, a TensorFlow index)
opens through here. A plain `open()` of a FIFO blocks until a writer appears
(forever, for a stray `mkfifo`), and reading a symlink to `/dev/zero` never
ends: so the file is opened non-blocking, checked with `fstat` on the open
descriptor (no window between the check and the use), and refused unless it is
a regular file. The errors are `OSError`s whose `strerror` says what the path
really is, so callers that already turn `OSError` into their typed error need
no new case.

>>> import os, tempfile
>>> d = tempfile.mkdtemp()
>>> p = os.path.join(d, "x.json")
>>> _ = open(p, "w").write("{}")
>>> read_regular(p, max_bytes=10)
b'{}'
>>> os.mkfifo(os.path.join(d, "fifo"))
>>> read_regular(os.path.join(d, "fifo"), max_bytes=10)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
gpt2.regular_file.NotARegularFile: [Errno 22] a FIFO (named pipe), not a regular file: '...fifo'
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import BinaryIO

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class NotARegularFile(OSError):
    """The path names a FIFO, a device, a socket or a directory, not a file of bytes."""


class FileTooLarge(OSError):
    """A file that is read whole (a config, an index) is larger than any real one."""


def describe_kind(mode: int) -> str:
    """'a FIFO (named pipe)', 'a directory', ... for an `st_mode`."""
    for test, name in _KINDS:
        if test(mode):
            return name
    return "not a regular file"


def open_regular(path: str | Path) -> BinaryIO:
    """`open(path, "rb")`, refusing anything but a regular file (symlinks are followed,
    so a link to /dev/zero is refused as the character device it is)."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags)  # O_NONBLOCK: opening a FIFO returns at once instead of waiting for a writer
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):  # the system's own wording, as open() of a directory would say
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        if not stat.S_ISREG(mode):
            raise NotARegularFile(errno.EINVAL, f"{describe_kind(mode)}, not a regular file", str(path))
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)  # no effect on a regular file's reads; keep the usual semantics
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: str | Path, max_bytes: int) -> bytes:
    """The whole of a regular file of at most `max_bytes` bytes."""
    with open_regular(path) as f:
        size = os.fstat(f.fileno()).st_size
        if size > max_bytes:
            raise FileTooLarge(
                errno.EFBIG, f"{size:,} bytes, more than the {max_bytes:,} such a file can hold", str(path)
            )
        data = f.read(max_bytes + 1)  # the file may grow while we read: never past the bound
    if len(data) > max_bytes:
        raise FileTooLarge(errno.EFBIG, f"more than the {max_bytes:,} bytes such a file can hold", str(path))
    return data


def is_present(path: str | Path) -> bool:
    """The name exists, whatever it is (a dangling symlink too): something to read, or to
    refuse with a clear message, rather than to skip silently."""
    return os.path.lexists(path)
