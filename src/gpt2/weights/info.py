"""What a model is, for `gpt2 info` and `gpt2 models`: its config, size and dtypes, where it is.

`describe_model` accepts everything `--model` does, and presets:

- a preset that is not on the hub (`tiny`): its config and parameter count, nothing read;
- a hub name (`gpt2`, `openai-community/gpt2-xl`): the cached model if it is whole, else
  only its `config.json` is fetched (kilobytes, not gigabytes of weights);
- a directory or file: loaded (memory-mapped, so cheap) and checked.

`list_models` is the catalogue: the presets, the models that ship with the package, and
the GPT-2 models in the Hugging Face cache with their sizes.

>>> info = describe_model("tiny")
>>> info.format, info.parameters == info.config.num_parameters(), info.weights
('preset', True, None)
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import PRESETS, Config
from ..errors import ConfigError
from .errors import WeightsError
from .hub import DownloadProgress, HubSettings, cached_snapshot, fetch_config, read_ref, repo_id_for
from .load import open_model

__all__ = ["ModelInfo", "CatalogEntry", "describe_model", "fetch_config", "list_models", "packaged_models"]

# Models that ship inside the package: src/gpt2/data/models/<name>/ (config.json + weights).
PACKAGED_DIR = Path(__file__).resolve().parent.parent / "data" / "models"


@dataclass(frozen=True)
class ModelInfo:
    source: str  # what the user asked for
    format: str  # safetensors | torch | tf | preset | hub (config only)
    weights: Path | None  # None: no weights were read (a preset, or a hub model not downloaded)
    config: Config
    config_file: Path | None  # None: a preset, or inferred from the tensor shapes
    parameters: int
    dtypes: dict[str, int]  # dtype -> number of tensors ({} when no weights were read)
    file_size: int | None  # bytes of the weights file(s) (None when not downloaded)
    n_head_guessed: bool = False  # no config file and no n_head given: see LoadedModel

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "format": self.format,
            "weights": str(self.weights) if self.weights else None,
            "config_file": str(self.config_file) if self.config_file else None,
            "config": dataclasses.asdict(self.config),
            "parameters": self.parameters,
            "dtypes": self.dtypes,
            "file_size": self.file_size,
            "n_head_guessed": self.n_head_guessed,
        }


def describe_model(
    name_or_path: str | Path,
    *,
    hub: HubSettings | None = None,
    progress: DownloadProgress | None = None,
    n_head: int | None = None,
) -> ModelInfo:
    """Summarise a model (see the module docstring for what is read)."""
    name = str(name_or_path)
    path = Path(name).expanduser()
    if not path.exists() and not Path(f"{path}.index").is_file():
        repo_id = repo_id_for(name)
        if repo_id is None and name in PRESETS:
            config = PRESETS[name]
            return ModelInfo(name, "preset", None, config, None, config.num_parameters(), {}, None)
        if repo_id is not None:
            settings = hub or HubSettings.from_env()
            if cached_snapshot(settings, repo_id) is None:
                config_file = fetch_config(repo_id, settings, progress)
                config = _read_config(config_file)
                return ModelInfo(
                    name, "hub (config only)", None, config, config_file, config.num_parameters(), {}, None
                )
    loaded = open_model(name_or_path, hub=hub, progress=progress, n_head=n_head)
    files, config, params = loaded.files, loaded.config, loaded.params
    return ModelInfo(
        source=name,
        format=files.format,
        weights=files.weights,
        config=config,
        config_file=files.config,
        parameters=sum(t.numel for t in params.values()),
        dtypes=dict(Counter(t.dtype for t in params.values())),
        file_size=files.size_bytes(),
        n_head_guessed=loaded.n_head_guessed,
    )


def _read_config(path: Path) -> Config:
    try:
        return Config.from_json_file(path)
    except ConfigError as exc:
        raise WeightsError(str(exc)) from None


# --- the catalogue: gpt2 models ---------------------------------------------------------------


@dataclass(frozen=True)
class CatalogEntry:
    name: str  # what to pass as --model
    kind: str  # preset | packaged | cached
    config: Config | None  # None: its config.json could not be read
    parameters: int | None
    size_bytes: int | None  # on disk (None: nothing downloaded)
    path: Path | None
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "config": dataclasses.asdict(self.config) if self.config else None,
            "parameters": self.parameters,
            "size_bytes": self.size_bytes,
            "path": str(self.path) if self.path else None,
            "notes": list(self.notes),
        }


def list_models(settings: HubSettings | None = None) -> list[CatalogEntry]:
    """Presets (the four hub sizes marked when cached), packaged models, and every other GPT-2
    model in the Hugging Face cache."""
    settings = settings or HubSettings.from_env()
    cached = {entry.name: entry for entry in cached_models(settings)}
    out = []
    for name, config in PRESETS.items():
        repo_id = repo_id_for(name)
        hit = cached.pop(repo_id, None) if repo_id else None
        notes = (
            ("cached",) if hit else ("on the hub: downloaded on first use",) if repo_id else ("no weights: train it",)
        )
        out.append(
            CatalogEntry(
                name,
                "preset",
                config,
                config.num_parameters(),
                hit.size_bytes if hit else None,
                hit.path if hit else None,
                notes,
            )
        )
    out.extend(packaged_models())
    out.extend(cached.values())
    return out


def packaged_models(directory: Path | None = None) -> list[CatalogEntry]:
    """The models shipped in the package (src/gpt2/data/models/<name>/)."""
    directory = PACKAGED_DIR if directory is None else directory
    if not directory.is_dir():
        return []
    return [
        _entry(d.name, "packaged", d, _tree_bytes(d))
        for d in sorted(directory.iterdir())
        if d.is_dir() and any((d / w).is_file() for w in ("model.safetensors", "pytorch_model.bin"))
    ]


def cached_models(settings: HubSettings) -> Iterator[CatalogEntry]:
    """GPT-2 models (config.json with model_type gpt2) in the hub cache, by repository id."""
    if not settings.cache_dir.is_dir():
        return
    for root in sorted(settings.cache_dir.glob("models--*")):
        repo_id = root.name.removeprefix("models--").replace("--", "/")
        snapshot = _newest_snapshot(root)
        if snapshot is None:
            continue
        try:
            config_json = json.loads((snapshot / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(config_json, dict) or config_json.get("model_type") != "gpt2":
            continue
        yield _entry(repo_id, "cached", snapshot, _tree_bytes(root))


def _newest_snapshot(root: Path) -> Path | None:
    """The snapshot refs/main names (only a commit hash: a ref is never a path to follow), else
    the most recently written one with a config.json; None where there is none."""
    snapshots = [s for s in (root / "snapshots").glob("*") if (s / "config.json").is_file()]
    commit = read_ref(root, "main")
    if commit and (root / "snapshots" / commit).is_dir():
        return root / "snapshots" / commit
    return max(snapshots, key=lambda s: s.stat().st_mtime, default=None)


def _entry(name: str, kind: str, directory: Path, size: int) -> CatalogEntry:
    notes: list[str] = []
    config: Config | None = None
    try:
        config = Config.from_json_file(directory / "config.json")
    except (ConfigError, OSError):
        notes.append("config.json unreadable")
    weights = any((directory / w).is_file() for w in ("model.safetensors", "pytorch_model.bin"))
    if not weights:
        notes.append("config only: weights downloaded on first use")
    return CatalogEntry(
        name, kind, config, config.num_parameters() if config else None, size or None, directory, tuple(notes)
    )


def _tree_bytes(root: Path) -> int:
    """Bytes of the files under root, each counted once (the hub cache links snapshots to blobs)."""
    total = 0
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            if not path.is_symlink() and path.is_file():
                total += path.stat().st_size
    return total
