"""Does this CPU do bfloat16 arithmetic natively? Read, not guessed.

bfloat16 autocast on a CPU pays off only where the hardware multiplies bf16 itself:
Intel's AMX tiles (Sapphire Rapids and later), the AVX512-BF16 dot products (Cooper
Lake, AMD Zen 4 and later) or Arm's BF16 extension. Anywhere else oneDNN emulates
bf16 with float32 instructions plus conversions, which is slower than float32.

The answer comes from the operating system's own list of CPU features where there is
one (`/proc/cpuinfo` on Linux: `amx_bf16`, `avx512_bf16`, Arm's `bf16`), and otherwise
from PyTorch's CPU queries (`torch.cpu._is_amx_tile_supported`,
`_is_avx512_bf16_supported`, backed by the cpuinfo library on every platform). When
neither can say, the answer is "unknown", not a guess.

>>> s = parse_cpuinfo("flags : fpu sse avx512f avx512_bf16 amx_tile amx_bf16\\n")
>>> s.native, s.flags
(True, ('amx_bf16', 'amx_tile', 'avx512_bf16'))
>>> parse_cpuinfo("flags : fpu sse avx2\\n").native
False
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path

# The features that make bf16 matrix products native (x86 and Arm spellings in /proc/cpuinfo).
BF16_FLAGS = ("amx_bf16", "amx_tile", "avx512_bf16", "bf16", "sve_bf16", "svebf16")
# Shown beside them by the benchmark, for context: the float32 SIMD widths.
CONTEXT_FLAGS = ("avx2", "avx512f", "fma")


@dataclass(frozen=True)
class Bf16Support:
    native: bool | None  # None: could not tell
    flags: tuple[str, ...]  # the bf16 features found (sorted)
    source: str  # where the answer came from
    context: tuple[str, ...] = ()  # other relevant features (avx2, avx512f, ...)

    def describe(self) -> str:
        """'yes (amx_bf16, avx512_bf16; /proc/cpuinfo)', 'no (...)' or 'unknown (...)'."""
        verdict = {True: "yes", False: "no", None: "unknown"}[self.native]
        found = ", ".join(self.flags) or "no bf16 feature"
        return f"{verdict} ({found}; {self.source})"


def parse_cpuinfo(text: str) -> Bf16Support:
    """The bf16 features in the `flags` (x86) or `Features` (Arm) lines of /proc/cpuinfo."""
    features: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            features.update(value.split())
    found = tuple(sorted(f for f in BF16_FLAGS if f in features))
    context = tuple(f for f in CONTEXT_FLAGS if f in features)
    native = any(f != "amx_tile" for f in found)  # tiles alone say nothing about their types
    return Bf16Support(native, found, "/proc/cpuinfo", context)


def _from_torch() -> Bf16Support:
    try:
        import torch

        amx = bool(torch.cpu._is_amx_tile_supported())
        avx512_bf16 = bool(torch.cpu._is_avx512_bf16_supported())
    except (ImportError, AttributeError, RuntimeError):
        return Bf16Support(None, (), "no /proc/cpuinfo, and PyTorch has no CPU feature query")
    found = tuple(name for name, has in (("amx_tile", amx), ("avx512_bf16", avx512_bf16)) if has)
    return Bf16Support(bool(found), found, "PyTorch's CPU feature query")


def cpu_bf16_support(cpuinfo: str | Path = "/proc/cpuinfo") -> Bf16Support:
    """Whether this machine's CPU computes bfloat16 natively (see the module doc)."""
    if platform.system() == "Linux":
        try:
            return parse_cpuinfo(Path(cpuinfo).read_text(encoding="utf-8", errors="replace"))
        except OSError:
            pass
    if platform.system() == "Darwin" and platform.machine() == "arm64":
        # Apple's M2 and later have Arm's BF16 extension, the M1 not; macOS reports it here
        return _from_sysctl()
    return _from_torch()


def _from_sysctl() -> Bf16Support:
    import subprocess

    try:
        out = subprocess.run(
            ["sysctl", "-n", "hw.optional.arm.FEAT_BF16"], capture_output=True, text=True, timeout=5
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return _from_torch()
    if out not in ("0", "1"):
        return _from_torch()
    return Bf16Support(out == "1", ("FEAT_BF16",) if out == "1" else (), "sysctl hw.optional.arm.FEAT_BF16")
