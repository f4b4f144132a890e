"""GPT-2 from first principles.

The core (configuration, parameter tree, pure-Python engine, tokenizer, weight
readers, command line) imports with the Python standard library alone; NumPy,
PyTorch and matplotlib are optional and imported only where used.
"""

__version__ = "0.1.0"

from .config import PRESETS, Config  # noqa: E402
from .errors import Gpt2Error  # noqa: E402

__all__ = ["Config", "PRESETS", "Gpt2Error", "__version__"]
