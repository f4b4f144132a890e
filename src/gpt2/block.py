"""One transformer block's tensors: the table every other list of the block derives from.

It sits below both :mod:`gpt2.config` (which counts parameters with it) and :mod:`gpt2.params`
(which builds the tree from it), and imports neither, so neither has to import the other lazily.

>>> block_parameters(768)  # GPT-2 small: 12 d^2 + 13 d
7087872
>>> PROJECTIONS[0]
('attn.c_attn', 1, 3)
"""

from __future__ import annotations

import math

# One block's tensors, in checkpoint order: (name inside `h.{i}.`, shape in units of n_embd,
# how GPT-2 initialises it). Every other list of the block derives from this one: the shapes,
# the parameter count, the initialisation, and each engine's projections (`PROJECTIONS`).
BLOCK_TENSORS: tuple[tuple[str, tuple[int, ...], str], ...] = (
    ("ln_1.weight", (1,), "ones"),
    ("ln_1.bias", (1,), "zeros"),
    ("attn.c_attn.weight", (1, 3), "normal"),  # Conv1D layout: (in, out), y = x @ W + b
    ("attn.c_attn.bias", (3,), "zeros"),
    ("attn.c_proj.weight", (1, 1), "residual"),
    ("attn.c_proj.bias", (1,), "zeros"),
    ("ln_2.weight", (1,), "ones"),
    ("ln_2.bias", (1,), "zeros"),
    ("mlp.c_fc.weight", (1, 4), "normal"),
    ("mlp.c_fc.bias", (4,), "zeros"),
    ("mlp.c_proj.weight", (4, 1), "residual"),
    ("mlp.c_proj.bias", (1,), "zeros"),
)

# The block's four projections (Conv1D layers) in the order the forward pass uses them, with
# their (in, out) sizes in units of n_embd: "attn.c_attn" (1, 3), "attn.c_proj" (1, 1), ...
PROJECTIONS: tuple[tuple[str, int, int], ...] = tuple(
    (name.removesuffix(".weight"), dims[0], dims[1]) for name, dims, _ in BLOCK_TENSORS if len(dims) == 2
)

# Matrices that write into the residual stream; GPT-2 scales their init by 1/sqrt(2 * n_layer).
RESIDUAL_PROJECTIONS = tuple(name for name, _, init in BLOCK_TENSORS if init == "residual")


def block_shapes(n_embd: int) -> dict[str, tuple[int, ...]]:
    """One block's tensor names (inside `h.{i}.`) and shapes."""
    return {name: tuple(k * n_embd for k in dims) for name, dims, _ in BLOCK_TENSORS}


def block_parameters(n_embd: int) -> int:
    """Parameters in one block: 12 n_embd^2 + 13 n_embd."""
    return sum(math.prod(shape) for shape in block_shapes(n_embd).values())
