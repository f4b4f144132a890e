"""The engines: three implementations of one model over one parameter tree.

    pure   standard library only: the readable, verifiable reference   engines/pure/
    numpy  fast CPU inference                    (needs numpy)          engines/numpy_engine.py
    torch  GPUs, half precision, int8, training   (needs torch)          engines/torch/

Every engine keeps the contract in :mod:`gpt2.engines.base` (`Engine`, and
`BatchEngine` for the two that run batches); `gpt2.generation` drives any of them.
The registry (:mod:`gpt2.engines.registry`) says what each one needs and accepts,
so that callers (the command line, a server) never hard-code it; an engine is
planned once (:mod:`gpt2.engines.plan`: the choice and its checks) and built from
the plan. Engines are imported only when asked for, so the core never imports
NumPy or PyTorch.

>>> ENGINES["numpy"].dtypes
('float32', 'float64', 'bfloat16')
>>> engine_spec("pure").batches
False
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..config import Config
from ..quantized_tensor import quantize_params
from ..tensor import Tensor
from .base import BatchEngine, BatchKVCache, Engine, check_ids, check_rows, check_window
from .plan import EnginePlan, PlanError, plan_engine
from .pure.engine import PureEngine
from .registry import ENGINES, FASTEST_FIRST, EngineSpec, available_engines, default_engine, engine_spec, require_engine

__all__ = [
    "ENGINES",
    "ENGINE_CLASSES",
    "FASTEST_FIRST",
    "EngineSpec",
    "EnginePlan",
    "Engine",
    "BatchEngine",
    "BatchKVCache",
    "PlanError",
    "available_engines",
    "build_engine",
    "check_ids",
    "check_rows",
    "check_window",
    "default_engine",
    "engine_spec",
    "load_engine",
    "plan_engine",
    "require_engine",
]


def _numpy_engine() -> type:
    from .numpy_engine import NumpyEngine  # needs numpy: imported only when asked for

    return NumpyEngine


def _torch_engine() -> type:
    from .torch.engine import TorchEngine  # needs torch: imported only when asked for

    return TorchEngine


# Each engine's class, one import each (the pure engine's is the standard library's, at the top).
ENGINE_CLASSES: dict[str, Any] = {"pure": lambda: PureEngine, "numpy": _numpy_engine, "torch": _torch_engine}


def load_engine(
    name: str, config: Config, params: Mapping[str, Tensor], *, quantize: str | None = None, **options: Any
) -> Engine:
    """Build engine `name` ("pure", "numpy", "torch") over a parameter tree: `plan_engine` checks
    the choice, `build_engine` builds it.

    `quantize="int8"` quantizes the tree's projections and embedding table first (see
    gpt2.quantized_tensor), as a file written by `gpt2 convert --quantize int8` holds them;
    every engine runs such a tree (numpy with its C kernels' int8 products, torch with
    PyTorch's; pure dequantizes). Tensors already int8 are kept. Half precision is the `dtype`
    option."""
    return build_engine(plan_engine(name, quantize=quantize, **options), config, params)


def build_engine(plan: EnginePlan, config: Config, params: Mapping[str, Tensor]) -> Engine:
    """The engine a plan describes, over a parameter tree (quantized first if the plan says so)."""
    if plan.quantization is not None:
        params = quantize_params(params)
    engine: Engine = ENGINE_CLASSES[plan.engine]()(config, params, plan=plan)
    return engine
