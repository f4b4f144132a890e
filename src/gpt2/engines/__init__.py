"""The engines: three implementations of one model over one parameter tree.

    pure   standard library only: the readable, verifiable reference   engines/pure/
    numpy  fast CPU inference                    (needs numpy)          engines/numpy_engine.py
    torch  GPUs, half precision, int8, training   (needs torch)          engines/torch/

Every engine keeps the contract in :mod:`gpt2.engines.base` (`Engine`, and
`BatchEngine` for the two that run batches); `gpt2.generation` drives any of them.
The registry below says what each one needs and accepts, so that callers (the
command line, a server) never hard-code it. Engines are imported only when asked
for, so the core never imports NumPy or PyTorch.

>>> ENGINES["numpy"].dtypes
('float32', 'float64', 'bfloat16')
>>> engine_spec("pure").batches
False
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..config import Config
from ..errors import EngineUnavailable, Gpt2Error
from ..tensor import Tensor
from .base import BatchEngine, BatchKVCache, Engine, check_ids, check_rows, check_window

__all__ = [
    "ENGINES",
    "EngineSpec",
    "Engine",
    "BatchEngine",
    "BatchKVCache",
    "available_engines",
    "check_ids",
    "check_rows",
    "check_window",
    "default_engine",
    "engine_spec",
    "load_engine",
]


@dataclass(frozen=True)
class EngineSpec:
    """What an engine is, needs and accepts. Every engine also takes `quantize="int8"` (see
    load_engine); how fast it runs int8 and half precision is in docs/precision.md."""

    name: str
    target: str  # "module:Class"
    needs: str | None  # the optional package it imports (None: the standard library)
    extra: str | None  # the install extra that brings it: pip install -e ".[numpy]"
    dtypes: tuple[str, ...]  # compute dtypes; the first is the default
    devices: tuple[str, ...]  # where it runs
    options: tuple[str, ...]  # keyword options of its constructor besides config and params
    batches: bool  # a BatchEngine
    summary: str

    @property
    def installed(self) -> bool:
        return self.needs is None or importlib.util.find_spec(self.needs) is not None

    def install_hint(self) -> str:
        return f'pip install -e ".[{self.extra}]"' if self.extra else ""


ENGINES: dict[str, EngineSpec] = {
    spec.name: spec
    for spec in (
        EngineSpec(
            "pure",
            "gpt2.engines.pure.engine:PureEngine",
            None,
            None,
            ("float64",),
            ("cpu",),
            ("workers", "storage", "method"),
            False,
            "the standard library only: readable and verifiable, about half a second a token at 124M",
        ),
        EngineSpec(
            "numpy",
            "gpt2.engines.numpy_engine:NumpyEngine",
            "numpy",
            "numpy",
            ("float32", "float64", "bfloat16"),
            ("cpu",),
            ("dtype", "threads", "native", "dequantize"),
            True,
            "fast CPU inference at the speed of the memory bus; fp32, bf16 and int8 products in C",
        ),
        EngineSpec(
            "torch",
            "gpt2.engines.torch.engine:TorchEngine",
            "torch",
            "torch",
            ("float32", "bfloat16", "float16"),
            ("cpu", "cuda", "mps"),
            ("dtype", "device", "threads", "kernel"),
            True,
            "PyTorch: GPUs, half precision, and the module training uses",
        ),
    )
}
FASTEST_FIRST = ("numpy", "torch", "pure")


def engine_spec(name: str) -> EngineSpec:
    """The registry entry of engine `name`; an unknown name is a clear error."""
    try:
        return ENGINES[name]
    except (KeyError, TypeError):
        raise Gpt2Error(f"unknown engine {name!r}; choose one of {', '.join(ENGINES)}") from None


def available_engines() -> list[str]:
    """Engine names whose dependencies are installed, fastest first."""
    return [name for name in FASTEST_FIRST if ENGINES[name].installed]


def default_engine() -> str:
    return available_engines()[0]


def require_engine(name: str) -> EngineSpec:
    """The spec of an engine that can run here: unknown or not installed is a clear error."""
    spec = engine_spec(name)
    if not spec.installed:
        raise EngineUnavailable(
            f"the {name} engine needs {spec.needs}: {spec.install_hint()} "
            f"(installed engines: {', '.join(available_engines())})"
        )
    return spec


def load_engine(
    name: str, config: Config, params: Mapping[str, Tensor], *, quantize: str | None = None, **options: Any
) -> Engine:
    """Build engine `name` ("pure", "numpy", "torch") over a parameter tree.

    `quantize="int8"` quantizes the tree's projections and embedding table first (see
    gpt2.weights.quantized), as a file written by `gpt2 convert --quantize int8` holds them;
    every engine runs such a tree (numpy with its C kernels' int8 products, torch with
    PyTorch's; pure dequantizes). Tensors already int8 are kept. Half precision is the `dtype`
    option."""
    spec = require_engine(name)
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        raise Gpt2Error(f"the {name} engine has no option {unknown[0]!r} (it takes {', '.join(spec.options)})")
    if quantize is not None:
        from ..weights.quantized import quantize_params

        params = quantize_params(params, quantize)
    module_name, class_name = spec.target.split(":")
    engine_class = getattr(importlib.import_module(module_name), class_name)
    engine: Engine = engine_class(config, params, **options)
    return engine
