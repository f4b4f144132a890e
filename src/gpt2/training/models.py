"""Loading a model to fine-tune or evaluate: a hub name ("gpt2"), a directory or a file."""

from __future__ import annotations

from ..config import Config
from ..params import Params


def load_pretrained(name_or_path: str) -> tuple[Config, Params]:
    from ..weights import load_model

    return load_model(name_or_path)
