"""Keep freed memory for reuse while training on the CPU (glibc's malloc only).

A training step of a GPT-2 allocates the same few very large buffers every step
(the logits of the tiny preset at batch 8 x 256 are 8 * 256 * 50257 floats, 411 MB,
and their gradient as much again). glibc serves every allocation above its mmap
threshold (at most 32 MB) with a fresh `mmap` and returns it with `munmap` when
freed, so the kernel hands out, zeroes and maps those pages anew on every step:
measured on the tiny preset, 400,000 page faults and 0.8 s of kernel time a step
against 1.5 s of arithmetic (benchmarks/train.py prints both times). Telling malloc
to serve large blocks from its heap and to keep what is freed (`mallopt`) makes
the second step reuse the first step's pages: the kernel time drops to nothing,
and the process keeps its peak memory (which a training run reaches every step
anyway) instead of returning it between steps.

It changes the whole process, so only code that owns the process for a long
computation calls it (`gpt2.training.train` on the CPU, `gpt2 eval`, the
benchmarks). Elsewhere (macOS, Windows, musl) it does nothing and says so.

>>> isinstance(keep_freed_memory(), bool)
True
"""

from __future__ import annotations

import ctypes
import platform

# mallopt's parameter numbers, from glibc's <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_KEEP = 2**31 - 1  # the largest trim threshold an int can say: 2 GB free at the heap's top

_done = False


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory for reuse (see the module doc); True if it
    did (or already had), False where the C library is not glibc."""
    global _done
    if _done:
        return True
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    # 0 mmapped blocks: large blocks come from the heap, where free() keeps them
    _done = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, _KEEP))
    return _done
