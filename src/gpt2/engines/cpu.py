"""What this CPU can do fast: the instruction-set flags that decide the engines' precision paths.

Read, never guessed: on Linux from /proc/cpuinfo (the kernel's list of what the CPU
reports *and* the kernel enabled; AMX, for one, needs the kernel's permission),
elsewhere nothing (every fast path then has to be asked for, or proven by PyTorch's own
detection, see gpt2.engines.torch.precision).

    avx2, fma, f16c                 every x86 CPU of the last decade: fp32 SIMD, fp16 <-> fp32 conversion
    avx512f, avx512bw, avx512_vnni  512-bit fp32 and int8 dot products
    avx512_bf16                     bf16 dot products (dpbf16ps): bf16 compute at twice fp32's rate
    amx_bf16, amx_int8, amx_tile    Intel's matrix tiles: bf16/int8 matrix products many times fp32's
    avx512_fp16, amx_fp16           fp16 arithmetic (Sapphire Rapids and later)

>>> sorted(relevant_flags({"avx2", "sse2", "amx_bf16"}))
['amx_bf16', 'avx2']
"""

from __future__ import annotations

import os
from collections.abc import Iterable

RELEVANT = (
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
    "amx_fp16",
)
BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_flags(path: str = "/proc/cpuinfo") -> set[str]:
    """The CPU's feature flags as the operating system reports them (empty where it does not)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):  # x86, ARM
                    return set(value.split())
    except OSError:
        pass
    return set()


def relevant_flags(flags: Iterable[str] | None = None) -> list[str]:
    """The flags of RELEVANT this CPU has, in RELEVANT's order."""
    have = cpu_flags() if flags is None else set(flags)
    return [f for f in RELEVANT if f in have]


def cpu_name(path: str = "/proc/cpuinfo") -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    return value.strip()
    except OSError:
        pass
    return os.uname().machine if hasattr(os, "uname") else "unknown"
