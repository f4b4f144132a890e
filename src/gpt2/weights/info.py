"""What a checkpoint holds, for `gpt2 info`: its config, size and dtypes, checked by loading it."""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import Config
from .hub import DownloadProgress, HubSettings
from .load import open_model


@dataclass(frozen=True)
class ModelInfo:
    source: str  # what the user asked for
    format: str  # safetensors | torch | tf
    weights: Path
    config: Config
    config_file: Path | None  # None: inferred from the tensor shapes
    parameters: int
    dtypes: dict[str, int]  # dtype -> number of tensors
    file_size: int  # bytes of the weights file(s)
    n_head_guessed: bool = False  # no config file and no n_head given: see LoadedModel

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "format": self.format,
            "weights": str(self.weights),
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
    """Load (memory-mapped, so cheap) and validate a model, and summarise it."""
    loaded = open_model(name_or_path, hub=hub, progress=progress, n_head=n_head)
    files, config, params = loaded.files, loaded.config, loaded.params
    return ModelInfo(
        source=str(name_or_path),
        format=files.format,
        weights=files.weights,
        config=config,
        config_file=files.config,
        parameters=sum(t.numel for t in params.values()),
        dtypes=dict(Counter(t.dtype for t in params.values())),
        file_size=files.size_bytes(),
        n_head_guessed=loaded.n_head_guessed,
    )
