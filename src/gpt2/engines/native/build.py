"""Compiling the C kernels (products.c, attention.c, pool.c) for this CPU, once, and loading them.

The library is built the first time an engine asks for it, with the machine's own C
compiler, for the machine's own CPU (`-march=native`: AVX512-VNNI's int8 dot products and
AVX512-BF16's bf16 ones where the CPU has them), and kept in a cache directory under a name
that says what it was built from: the source, the compiler's version, the flags and the
CPU's features. A home directory shared between machines with different CPUs therefore
never loads a library built for another one. No compiler at all (or a failed build) is a
`NativeUnavailable` error that says so, and the engines then fall back to float32 products
(with a notice).

>>> library_name("int main;", "gcc 12", ("-O3",), {"avx2"}).startswith("products-")
True
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import sysconfig
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from ...errors import EngineUnavailable
from ..cpu import cpu_flags

HERE = Path(__file__).parent
SOURCES = (HERE / "products.c", HERE / "attention.c", HERE / "pool.c")  # one library
HEADERS = (HERE / "pool.h",)
FLAGS = ("-O3", "-march=native", "-shared", "-fPIC", "-std=c11", "-pthread")
COMPILE_SECONDS = 120


class NativeUnavailable(EngineUnavailable):
    """The C products cannot be built or loaded here (no compiler, a failed build)."""


def default_cache_dir() -> Path:
    """$XDG_CACHE_HOME/gpt2/native (~/.cache/gpt2/native)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gpt2" / "native"


def find_compiler(candidates: Sequence[str] | None = None) -> str:
    """The C compiler Python was built with, if it is on PATH, else cc, gcc or clang."""
    if candidates is None:
        configured = (sysconfig.get_config_var("CC") or "").split()
        candidates = [*configured[:1], "cc", "gcc", "clang"]
    for name in candidates:
        path = shutil.which(name)
        if path:
            return path
    raise NativeUnavailable(f"no C compiler found ({', '.join(candidates)}): install gcc or clang")


def compiler_version(compiler: str) -> str:
    try:
        run = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        raise NativeUnavailable(f"cannot run the C compiler {compiler}: {exc}") from None
    return run.stdout.strip().splitlines()[0] if run.returncode == 0 and run.stdout.strip() else compiler


def library_name(source: str, version: str, flags: Sequence[str], cpu: Iterable[str]) -> str:
    """A file name that changes whenever the source, compiler, flags or CPU do."""
    key = "\n".join([source, version, " ".join(flags), platform.machine(), " ".join(sorted(cpu))])
    return f"products-{hashlib.sha256(key.encode()).hexdigest()[:16]}.so"


def build(cache_dir: Path | None = None, compiler: str | None = None, flags: Sequence[str] = FLAGS) -> Path:
    """The path of the library for this machine, compiling it first if it is not cached.
    `flags`: the compiler's (a test builds the plain-C kernels with -march=x86-64)."""
    compiler = compiler or find_compiler()
    version = compiler_version(compiler)
    source = "\n".join(path.read_text(encoding="utf-8") for path in (*SOURCES, *HEADERS))
    # A compiler that does not take -march=native for this CPU (some clang on ARM) builds the
    # portable kernels instead: plain C, vectorised as the compiler can.
    attempts = [tuple(flags)] + ([tuple(f for f in flags if f != "-march=native")] if "-march=native" in flags else [])
    directory, cpu = _writable(cache_dir or default_cache_dir()), cpu_flags()
    error = ""
    for attempt in attempts:
        target = directory / library_name(source, version, attempt, cpu)
        if target.is_file():
            return target
        error = _compile(compiler, attempt, target) or ""
        if not error:
            return target
    raise NativeUnavailable(f"compiling the C kernels ({SOURCES[0].parent}) with {compiler} failed: {error}")


def load(cache_dir: Path | None = None, compiler: str | None = None, flags: Sequence[str] = FLAGS) -> ctypes.CDLL:
    """The compiled products, loaded (built first if needed); once per process for the same
    arguments (asking the compiler its version takes a few milliseconds)."""
    return _load(cache_dir, compiler, tuple(flags))


@functools.cache
def _load(cache_dir: Path | None, compiler: str | None, flags: tuple[str, ...]) -> ctypes.CDLL:
    path = build(cache_dir, compiler, flags)
    try:
        return ctypes.CDLL(str(path))
    except OSError as exc:
        raise NativeUnavailable(f"cannot load {path}: {exc}") from None


def _compile(compiler: str, flags: Sequence[str], target: Path) -> str | None:
    """Compile into a temporary file beside target, then rename it: another process never sees
    half a library. Returns the compiler's complaint, or None."""
    fd, partial = tempfile.mkstemp(dir=target.parent, prefix=target.stem, suffix=".partial")
    os.close(fd)
    try:
        run = subprocess.run(
            [compiler, *flags, "-o", partial, *map(str, SOURCES), "-lm"],
            capture_output=True,
            text=True,
            timeout=COMPILE_SECONDS,
        )
        if run.returncode != 0:
            lines = (run.stderr or run.stdout).strip().splitlines()
            return lines[-1] if lines else f"exit status {run.returncode}"
        os.replace(partial, target)
        return None
    except (OSError, subprocess.SubprocessError) as exc:
        return str(exc)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)


def _writable(directory: Path) -> Path:
    """directory, created; a private temporary one where it cannot be written."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        if os.access(directory, os.W_OK):
            return directory
    except OSError:
        pass
    return Path(tempfile.mkdtemp(prefix="gpt2-native-"))
