"""Models that ship inside the package, usable with no network: `--model gpt2-shakespeare`.

Each is a directory under `gpt2/data/models/` holding `config.json` and
`model.safetensors` (float16), the layout every loader reads; `load_model(name)`
finds them before it would ask the hub. How the one shipped today was trained,
and what it writes, is in docs/training.md.

>>> "gpt2-shakespeare" in packaged_models()
True
>>> packaged_model("gpt2-shakespeare").name, packaged_model("gpt2") is None
('gpt2-shakespeare', True)
"""

from __future__ import annotations

from pathlib import Path

MODELS_DIR = Path(__file__).resolve().parent / "data" / "models"


def packaged_models() -> list[str]:
    """The names of the packaged models, sorted."""
    if not MODELS_DIR.is_dir():
        return []
    return sorted(p.name for p in MODELS_DIR.iterdir() if (p / "config.json").is_file())


def packaged_model(name: str) -> Path | None:
    """The directory of the packaged model `name`, or None if no such model ships."""
    if name not in packaged_models():  # never a path: "../x" or "/abs" are not names
        return None
    return MODELS_DIR / name
