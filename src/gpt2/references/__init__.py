"""Independent references for `gpt2 verify`: the same components written with NumPy
(float64) and with PyTorch (float32), one module per framework with the same
functions in each, imported only when asked for.

Every function takes and returns framework arrays; `asarray` and `tolist`
convert from and to the nested lists of the pure engine. Weights are a mapping
from the checkpoint names to arrays (Conv1D layout, (in, out)).
"""

import importlib
import importlib.util

FRAMEWORKS = {"numpy": "numpy", "torch": "torch"}


def available(name: str) -> bool:
    return importlib.util.find_spec(FRAMEWORKS[name]) is not None


def load(name: str):
    """The reference module for `name` ("numpy" or "torch")."""
    return importlib.import_module(f"{__name__}.{name}_ref")
