"""The engines' registry: what each engine is, needs and accepts -- data, importing no engine.

The plan (:mod:`gpt2.engines.plan`) checks choices against it and the engines build from plans,
so it sits below both; the classes themselves are one import each in :mod:`gpt2.engines`
(`ENGINE_CLASSES`), spelled out so that a reader or a tool follows them.

>>> ENGINES["numpy"].dtypes
('float32', 'float64', 'bfloat16')
>>> engine_spec("pure").batches
False
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from ..errors import EngineUnavailable, Gpt2Error

__all__ = [
    "ENGINES",
    "FASTEST_FIRST",
    "EngineSpec",
    "available_engines",
    "default_engine",
    "engine_spec",
    "require_engine",
]


@dataclass(frozen=True)
class EngineSpec:
    """What an engine is, needs and accepts. Every engine also takes `quantize="int8"` (see
    `quantize`); how fast it runs int8 and half precision is in docs/precision.md."""

    name: str
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
