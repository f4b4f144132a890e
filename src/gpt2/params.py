"""The parameter tree: one flat mapping, named exactly as the official checkpoints name it.

    wte.weight                  [vocab_size, n_embd]   token embeddings (also the tied output projection)
    wpe.weight                  [n_ctx, n_embd]        learned position embeddings
    h.{i}.ln_1.weight/.bias     [n_embd]
    h.{i}.attn.c_attn.weight    [n_embd, 3*n_embd]     Conv1D layout: (in, out), y = x @ W + b
    h.{i}.attn.c_attn.bias      [3*n_embd]
    h.{i}.attn.c_proj.weight    [n_embd, n_embd]
    h.{i}.attn.c_proj.bias      [n_embd]
    h.{i}.ln_2.weight/.bias     [n_embd]
    h.{i}.mlp.c_fc.weight       [n_embd, 4*n_embd]
    h.{i}.mlp.c_fc.bias         [4*n_embd]
    h.{i}.mlp.c_proj.weight     [4*n_embd, n_embd]
    h.{i}.mlp.c_proj.bias       [n_embd]
    ln_f.weight/.bias           [n_embd]

Values are :class:`gpt2.tensor.Tensor`; every engine builds its own layout from
this tree, so loading any checkpoint is a lookup by name, not a translation.
"""

from __future__ import annotations

import array
import math
import random
from collections.abc import Mapping

from .block import BLOCK_TENSORS, PROJECTIONS, RESIDUAL_PROJECTIONS, block_parameters, block_shapes
from .config import Config
from .errors import ParamError
from .tensor import Tensor

# The block's table lives in gpt2.block (Config counts parameters with it); these names stay here
# because the tree is where readers look for them.
__all__ = [
    "BLOCK_TENSORS",
    "PROJECTIONS",
    "RESIDUAL_PROJECTIONS",
    "Params",
    "block_parameters",
    "block_shapes",
    "init_params",
    "param_shapes",
    "sinusoidal_positions",
    "validate_params",
]

Params = dict[str, Tensor]


def param_shapes(config: Config) -> dict[str, tuple[int, ...]]:
    """Every tensor's name and shape, in checkpoint order."""
    d, v = config.n_embd, config.vocab_size
    shapes: dict[str, tuple[int, ...]] = {"wte.weight": (v, d), "wpe.weight": (config.n_ctx, d)}
    block = block_shapes(d)
    for i in range(config.n_layer):
        shapes.update((f"h.{i}.{name}", shape) for name, shape in block.items())
    shapes["ln_f.weight"] = (d,)
    shapes["ln_f.bias"] = (d,)
    return shapes


def validate_params(params: Mapping[str, Tensor], config: Config) -> None:
    """Raise :class:`ParamError` naming the first missing, extra or misshapen tensor."""
    expected = param_shapes(config)
    missing = [name for name in expected if name not in params]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise ParamError(f"missing tensor {missing[0]!r}{more}")
    extra = sorted(name for name in params if name not in expected)
    if extra:
        more = f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""
        raise ParamError(f"unexpected tensor {extra[0]!r}{more}")
    for name, shape in expected.items():
        got = tuple(params[name].shape)
        if got != shape:
            raise ParamError(f"tensor {name!r} has shape {list(got)}, expected {list(shape)}")


def sinusoidal_positions(n_ctx: int, n_embd: int) -> list[list[float]]:
    """The fixed table of 'Attention Is All You Need' (sin on even, cos on odd dimensions)."""
    table = []
    for pos in range(n_ctx):
        row = []
        for i in range(n_embd):
            angle = pos / 10000 ** ((i - i % 2) / n_embd)
            row.append(math.sin(angle) if i % 2 == 0 else math.cos(angle))
        table.append(row)
    return table


def init_params(config: Config, seed: int = 0) -> Params:
    """GPT-2's initialisation, seeded: weights ~ N(0, 0.02), residual projections
    ~ N(0, 0.02 / sqrt(2 * n_layer)), biases 0, layer-norm gains 1. Values are float32.

    >>> p = init_params(Config(n_layer=1, n_embd=8, n_head=2, vocab_size=10, n_ctx=4), seed=1)
    >>> p["h.0.ln_1.weight"].to_array().tolist()[:3]
    [1.0, 1.0, 1.0]
    """
    rng = random.Random(seed)
    residual_std = 0.02 / math.sqrt(2 * config.n_layer)
    block_init = {name: init for name, _, init in BLOCK_TENSORS}
    params: Params = {}
    for name, shape in param_shapes(config).items():
        n = math.prod(shape)
        init = block_init[name.split(".", 2)[2]] if name.startswith("h.") else _TOP_LEVEL_INIT[name]
        if name == "wpe.weight" and config.position_embedding == "sinusoidal":
            values = array.array("f", (x for row in sinusoidal_positions(*shape) for x in row))
        elif init in ("normal", "residual"):
            values = array.array("f", _normal(rng, n, residual_std if init == "residual" else 0.02))
        else:
            values = array.array("f", [1.0 if init == "ones" else 0.0]) * n
        params[name] = Tensor.from_array(values, shape)
    return params


_TOP_LEVEL_INIT = {"wte.weight": "normal", "wpe.weight": "normal", "ln_f.weight": "ones", "ln_f.bias": "zeros"}


def _normal(rng: random.Random, n: int, std: float) -> list[float]:
    """n samples of N(0, std) by Box-Muller, two per pair of uniforms (faster than rng.gauss)."""
    cos, sin, log, sqrt, tau = math.cos, math.sin, math.log, math.sqrt, math.tau
    out: list[float] = []
    rand = rng.random
    for _ in range((n + 1) // 2):
        r = std * sqrt(-2.0 * log(1.0 - rand()))
        theta = tau * rand()
        out.append(r * cos(theta))
        out.append(r * sin(theta))
    del out[n:]
    return out
