"""The model to train: a new one of a given shape, or a loaded one to fine-tune or
evaluate (a hub name such as "gpt2", a directory or a file)."""

from __future__ import annotations

from ..config import Config
from ..params import Params
from .errors import TrainConfigError


def load_pretrained(name_or_path: str) -> tuple[Config, Params]:
    from ..weights import load_model

    return load_model(name_or_path)


def new_model(config: Config):
    """A randomly initialised GPT2 module; a size the machine cannot hold is a clear error
    (a config.json with n_embd 160000 asks for tens of gigabytes), not an allocator traceback."""
    import torch

    from ..engines.torch.model import GPT2

    try:
        return GPT2(config)
    except (MemoryError, RuntimeError) as exc:
        if not isinstance(exc, (MemoryError, torch.OutOfMemoryError)) and "allocate" not in str(exc):
            raise
        gigabytes = 4 * config.num_parameters() / 1e9
        raise TrainConfigError(
            f"not enough memory for a model of {config.num_parameters() / 1e6:,.0f}M parameters "
            f"(about {gigabytes:,.1f} GB in float32 before optimizer state); choose a smaller --config"
        ) from None
