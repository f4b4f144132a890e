"""Random GPT-2 weights of a preset's shape, the same in every benchmark that needs them (no download).

    from random_weights import random_model      # benchmarks run as scripts: this folder is on sys.path
    config, params = random_model("gpt2", seed=0)

Matrices are N(0, 0.02) in float32 (GPT-2's initialisation scale), layer-norm gains 1, biases 0:
the shapes and memory traffic of the real model, which is all a speed measurement needs.
"""

from __future__ import annotations

import numpy as np

from gpt2.config import Config
from gpt2.params import Params, param_shapes
from gpt2.tensor import Tensor


def random_model(size: str, seed: int = 0) -> tuple[Config, Params]:
    """(config, float32 params) of the preset `size`, drawn from NumPy's generator seeded with `seed`."""
    config = Config.preset(size)
    rng = np.random.default_rng(seed)
    params = {}
    for name, shape in param_shapes(config).items():
        if len(shape) == 2:
            values = rng.standard_normal(shape, dtype=np.float32) * np.float32(0.02)
        elif name.endswith(("ln_1.weight", "ln_2.weight")) or name == "ln_f.weight":
            values = np.ones(shape, np.float32)
        else:
            values = np.zeros(shape, np.float32)
        params[name] = Tensor(shape, "F32", values.tobytes())
    return config, params
