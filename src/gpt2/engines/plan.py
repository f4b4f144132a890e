"""An engine is planned once: which engine, in which dtype, quantized or not, on which device,
with which kernel and how many threads -- checked here, in one place, before any weight is read.

Every way in builds a plan and nothing else checks these choices again: `load_engine` (the
Python API), the command line (`gpt2 generate --engine numpy --dtype bfloat16`, before it reads
the weights) and the server (which prefers the engine and kernel that batch best). The engines'
constructors take the plan as given.

    plan_engine()                                  the default: the fastest engine installed
    plan_engine("torch", device="cuda", dtype="float16")
    plan_engine(serving=True)                      what `gpt2 serve` runs: the same engine, its kernel for batches

A bad choice is a :class:`PlanError` (a `Gpt2Error`) whose message names the option as the
caller spells it: `flags="--"` for the command line (`--threads must be >= 1, got 0`).

What the plan cannot know before the weights and the machine are in hand -- whether this CPU
has bf16 arithmetic, whether the C kernels compiled -- the engine says as it is built, in its
`notices`, after the plan's own (`plan.notices`).

>>> plan = plan_engine("pure")
>>> plan.engine, plan.dtype, plan.quantization
('pure', 'float64', None)
>>> plan_engine("numpy", dtype="float16")
Traceback (most recent call last):
...
gpt2.engines.plan.PlanError: the numpy engine runs in float32 | float64 | bfloat16, not 'float16'
>>> plan_engine("numpy", device="cuda", flags="--")
Traceback (most recent call last):
...
gpt2.engines.plan.PlanError: --device cuda runs the torch engine; the numpy engine runs on the cpu
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import Gpt2Error
from .pure.layout import METHODS, STORAGES  # the pure engine's weight storage and inner product
from .registry import ENGINES, default_engine, require_engine

__all__ = [
    "DEQUANTIZE",
    "DEVICES",
    "GPU_DEVICES",
    "KERNELS",
    "QUANTIZATIONS",
    "STORAGES",
    "EnginePlan",
    "PlanError",
    "cuda_present",
    "plan_engine",
]

QUANTIZATIONS = ("int8",)  # what `quantize=` takes (the weights' file layout: gpt2.weights.quantized)
DEVICES = ("auto", "cpu", "cuda", "mps")
GPU_DEVICES = ("cuda", "mps")
# The PyTorch engine's CPU kernels (see gpt2.engines.torch.kernels, which picks among them).
KERNELS = ("auto", "batched", "native", "openblas", "onednn", "blas")
# The NumPy engine's int8 weights without the C kernels: widened once ("load") or per product.
DEQUANTIZE = ("load", "layer")


class PlanError(Gpt2Error, ValueError):
    """An engine choice that cannot run: an unknown option or value, or one the engine does not take."""


@dataclass(frozen=True)
class EnginePlan:
    """The checked choice of an engine and how it runs. `dtype` is always set (the engine's default
    when none was asked for); `device`, `kernel` and `threads` are None where the caller left them
    to the engine (or the engine has no such choice); `options` holds the engine's own ones (pure:
    workers, storage, method; numpy: native, dequantize); `notices` what the plan decided for the
    user that they should hear about."""

    engine: str
    dtype: str
    quantization: str | None = None
    device: str | None = None
    kernel: str | None = None
    threads: int | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    notices: tuple[str, ...] = ()

    def keywords(self) -> dict[str, Any]:
        """The plan as `load_engine` keywords, only what differs from the engine's defaults
        (`load_engine(plan.engine, config, params, **plan.keywords())` plans it again, the same)."""
        chosen: dict[str, Any] = {"dtype": self.dtype} if self.dtype != ENGINES[self.engine].dtypes[0] else {}
        for name in ("device", "kernel", "threads"):
            if getattr(self, name) not in (None, "auto"):
                chosen[name] = getattr(self, name)
        if self.quantization is not None:
            chosen["quantize"] = self.quantization
        return chosen | dict(self.options)


def plan_engine(
    engine: str | None = None,
    *,
    dtype: str | None = None,
    quantize: str | None = None,
    device: str | None = None,
    kernel: str | None = None,
    threads: int | None = None,
    serving: bool = False,
    flags: str = "",
    **options: Any,
) -> EnginePlan:
    """Choose and check an engine (see the module docstring). `engine` None picks one: torch for
    `device` cuda or mps, or "auto" on a machine with a CUDA GPU; else the fastest installed. A
    server picks by the same rule (on a CPU the NumPy engine batched best when measured: 5.4x one
    stream's tokens at 8 streams against torch's 4.9x, docs/server.md); a serving torch engine
    takes the kernel made for many rows a step ("batched") unless one is named.
    `flags` is the prefix the caller's options carry in messages ("--" on the command line)."""
    on_gpu = device is not None and device.split(":")[0] in GPU_DEVICES
    if engine is None:
        if on_gpu or (device in (None, "auto") and cuda_present()):
            engine = "torch"
        else:
            engine = default_engine()
    spec = require_engine(engine)
    name = spec.name
    if "device" not in spec.options:
        if device not in (None, "auto", "cpu"):  # every engine runs on the CPU: saying so is not an error
            raise PlanError(f"{flags}device {device} runs the torch engine; the {name} engine runs on the cpu")
        device = None
    elif device is not None and device.split(":")[0] not in DEVICES:
        raise PlanError(f"unknown device {device!r}; use auto, cpu, cuda or mps")
    given = {"dtype": dtype, "threads": threads, "kernel": kernel} | options
    for option, value in given.items():
        if value is not None and option not in spec.options:
            takers = [n for n, s in ENGINES.items() if option in s.options]
            if not flags or not takers:
                raise PlanError(f"the {name} engine has no option {option!r} (it takes {', '.join(spec.options)})")
            raise PlanError(f"{flags}{option} applies to the {' and '.join(takers)} engines, not {name}")
    if dtype is not None and dtype not in spec.dtypes:
        raise PlanError(f"the {name} engine runs in {' | '.join(spec.dtypes)}, not {dtype!r}")
    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
        shown = threads if flags else repr(threads)
        raise PlanError(f"{flags}threads must be {'' if flags else 'an integer '}>= 1, got {shown}")
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise PlanError(f"unknown quantization {quantize!r}; choose {' or '.join(QUANTIZATIONS)}")
    if kernel is not None and kernel not in KERNELS:
        raise PlanError(f"unknown kernel {kernel!r}; choose one of {', '.join(KERNELS)}")
    _check_own_options(name, dtype, options)
    if serving and name == "torch" and kernel is None:
        kernel = "batched"
    return EnginePlan(
        engine=name,
        dtype=dtype or spec.dtypes[0],
        quantization=quantize,
        device=device,
        kernel=kernel,
        threads=threads,
        options={k: v for k, v in options.items() if v is not None or k == "native"},
    )


def _check_own_options(name: str, dtype: str | None, options: Mapping[str, Any]) -> None:
    """The options one engine alone takes."""
    if name == "pure":
        storage, method, workers = options.get("storage"), options.get("method"), options.get("workers")
        if storage is not None and storage != "auto" and storage not in STORAGES:
            raise PlanError(f"storage must be auto or one of {', '.join(STORAGES)}, got {storage!r}")
        if method is not None and method not in METHODS:
            raise PlanError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
        if workers is not None and (not isinstance(workers, int) or isinstance(workers, bool) or workers < 1):
            raise PlanError(f"workers must be an integer >= 1, got {workers!r}")
    if name == "numpy":
        native, dequantize = options.get("native"), options.get("dequantize")
        if native not in (None, True, False):
            raise PlanError(f"native must be true, false or unset, not {native!r}")
        if native and dtype == "float64":
            raise PlanError("the C kernels compute in float32: native=True needs dtype float32 or bfloat16")
        if dequantize is not None and dequantize not in DEQUANTIZE:
            raise PlanError(f"dequantize must be {' | '.join(DEQUANTIZE)}, not {dequantize!r}")


def cuda_present() -> bool:
    """A CUDA GPU that PyTorch can use. Checked without importing torch (a second or two) unless
    the machine has an NVIDIA driver at all."""
    if importlib.util.find_spec("torch") is None:
        return False
    if not (os.path.exists("/proc/driver/nvidia/version") or shutil.which("nvidia-smi")):
        return False
    import torch

    return bool(torch.cuda.is_available())
