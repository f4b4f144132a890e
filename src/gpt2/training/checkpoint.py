"""Crash-proof checkpoints: every file is written to a temporary name, flushed, fsynced,
renamed over the old one (`os.replace` is atomic on POSIX and Windows), and then the
directory is fsynced so the rename itself survives a power cut. A kill at any moment
therefore leaves either the old file or the new one, never half of either.

A run directory holds:

    train_state.pt      everything `--resume` needs, in ONE file (model weights,
                        optimizer, step, RNG states, sampler position, settings), so
                        the resumable state can never be half old and half new
    config.json         } the model, exported after each checkpoint for
    model.safetensors   } `gpt2 generate --model DIR`, every engine and transformers
"""

from __future__ import annotations

import errno
import io
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_bytes
from ..config import Config
from ..errors import Gpt2Error
from .errors import CheckpointError

STATE_FILE = "train_state.pt"
STATE_FORMAT = 1


def _saving_error(exc: OSError, what: Path) -> CheckpointError:
    if exc.errno == errno.ENOSPC:
        reason = "no space left on device"
    else:
        reason = exc.strerror or str(exc)
    return CheckpointError(f"could not save {what}: {reason}; the previous checkpoint is intact")


# --- the model, for every reader ---------------------------------------------------------


def export_model(directory: str | Path, config: Config, params) -> None:
    """Write `config.json` + `model.safetensors` (each atomically, by `gpt2.weights`)."""
    from ..weights import save_model

    try:
        save_model(directory, config, params)
    except (OSError, Gpt2Error) as exc:
        if isinstance(exc, OSError):
            raise _saving_error(exc, Path(directory) / "model.safetensors") from None
        raise CheckpointError(f"{exc}; the previous checkpoint is intact") from None


# --- the training state ------------------------------------------------------------------


def save_state(directory: str | Path, state: dict[str, Any]) -> None:
    """Atomically write the resumable training state (a dict of tensors and plain values)."""
    import torch

    path = Path(directory) / STATE_FILE
    buffer = io.BytesIO()
    torch.save({"format": STATE_FORMAT, **state}, buffer)
    try:
        atomic_write_bytes(path, buffer.getvalue())
    except OSError as exc:
        raise _saving_error(exc, path) from None


def load_state(directory: str | Path) -> dict[str, Any]:
    import torch

    path = Path(directory) / STATE_FILE
    if not path.is_file():
        raise CheckpointError(f"no checkpoint to resume from in {directory} (missing {STATE_FILE})")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file: unpickling errors vary
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{path} is not a gpt2 training checkpoint (format {STATE_FORMAT})")
    return state


def remove_stale_temporaries(directory: str | Path) -> None:
    """Delete temporary files a save killed half-way left behind (never a finished file)."""
    for tmp in Path(directory).glob(".*.tmp"):
        try:
            tmp.unlink()
        except OSError:
            pass


def prepare_run_directory(directory: str | Path) -> None:
    """Create the run directory and check it is writable, so an impossible `--out` fails
    at once, not at the first checkpoint after an hour of training."""
    import tempfile

    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise CheckpointError(f"run directory {directory} exists and is not a directory")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as exc:
        raise CheckpointError(f"cannot write the run directory {directory}: {exc.strerror or exc}") from None


def remove_if_empty(directory: Path) -> None:
    try:
        directory.rmdir()  # refuses, harmlessly, when anything is inside
    except OSError:
        pass


def has_state(directory: str | Path) -> bool:
    return (Path(directory) / STATE_FILE).is_file()
