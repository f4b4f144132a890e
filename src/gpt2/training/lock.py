"""One training run per run directory: an exclusive lock on `<out>/.train.lock`.

Two runs writing into one directory would overwrite each other's checkpoints and
interleave their metrics, and the second one's start would delete the first one's
half-written save. So a run takes this lock before it touches anything, and a
second run fails at once, naming the process that holds it.

The lock is an operating-system lock on an open file (`flock` on POSIX,
`msvcrt.locking` on Windows), not the mere existence of the file: the kernel
releases it when the process ends, however it ends (even `kill -9` or a power cut),
so a killed run never leaves the directory locked for good. The file holds the
owner's pid and host, for the message; a clean exit deletes it, so a file found
with a pid in it on entry means the last run there did not exit cleanly: the
caller is told (`stale_owner`) and the run goes on.

NFS: Linux maps `flock` onto NFS byte-range locks, so this works on NFS too, but a
lock held from another machine is only reported by its pid and host.

>>> import tempfile
>>> d = tempfile.mkdtemp()
>>> with RunLock(d) as lock:
...     RunLock(d).acquire()  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
gpt2.training.errors.CheckpointError: ... is in use by another training run (pid ...); ...
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
from pathlib import Path
from types import TracebackType

from .errors import CheckpointError

LOCK_FILE = ".train.lock"
_WINDOWS_LOCK_OFFSET = 1 << 20  # locking past the end of a file is allowed there


def _try_lock(fd: int) -> bool:
    """Take the exclusive lock without waiting; False if another process holds it."""
    if sys.platform == "win32":  # pragma: no cover - Windows
        import msvcrt

        # Windows locks are mandatory: lock a byte far past the pid, so others can still read it
        os.lseek(fd, _WINDOWS_LOCK_OFFSET, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


class RunLock:
    """`with RunLock(out):` the run directory is this process's alone (see the module doc)."""

    def __init__(self, directory: str | Path) -> None:
        self.path = Path(directory) / LOCK_FILE
        self._fd: int | None = None
        self.stale_owner: str | None = None  # "pid N on HOST" when a killed run left its file

    def acquire(self) -> RunLock:
        for _ in range(10):  # a release between our open() and lock() unlinks the file: retry
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise CheckpointError(f"cannot create the lock file {self.path}: {exc.strerror or exc}") from None
            if not _try_lock(fd):
                owner = _read_owner(fd)
                os.close(fd)
                raise CheckpointError(
                    f"{self.path.parent} is in use by another training run ({owner or 'owner unknown'}); "
                    "wait for it to finish, stop it, or choose another --out"
                )
            if _same_file(fd, self.path):
                break
            os.close(fd)  # we locked a file a finishing run had just deleted
        else:
            raise CheckpointError(f"could not lock {self.path}: it keeps being replaced")
        self.stale_owner = _read_owner(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        """Delete the file (a clean exit), then drop the lock by closing it."""
        if self._fd is None:
            return
        if sys.platform != "win32":  # Windows cannot delete an open file; an empty one is left instead
            with contextlib.suppress(OSError):
                os.unlink(self.path)
        else:  # pragma: no cover - Windows
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.release()


def _read_owner(fd: int) -> str | None:
    with contextlib.suppress(OSError):
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 200).decode("utf-8", "replace").strip()
        return text or None
    return None


def _same_file(fd: int, path: Path) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
