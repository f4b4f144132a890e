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
    vocab.json, ...     } (the tokenizer files and generation_config.json make it a
                        } complete Hugging Face model: `pipeline(model=DIR)` works)
    best/               the model of the lowest validation loss so far, a complete
                        Hugging Face directory too (see `best`)
    .train.lock         while a run is in it (see `lock`)

No file system renames two files at once, so a kill between the writes of a save
could leave the exported model one checkpoint behind the state. The state is
therefore the one source of truth, written first, and the export records the step
it holds (`"step"` in the safetensors metadata): a run that starts in the directory
(`--resume`) compares the two and re-exports the model from the state when they
differ (:func:`sync_export`).
"""

from __future__ import annotations

import errno
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_bytes
from ..config import Config
from ..errors import Gpt2Error
from ..params import Params
from .errors import CheckpointError

STATE_FILE = "train_state.pt"
MODEL_FILE = "model.safetensors"
STATE_FORMAT = 1


def _saving_error(reason: str, what: Path, previous_step: int | None) -> CheckpointError:
    """The error of a failed save, saying truthfully what is left on disk."""
    if previous_step is None:
        left = "no checkpoint of this run was saved before"
    else:
        left = f"the previous checkpoint (step {previous_step}) is intact"
    return CheckpointError(f"could not save {what}: {reason}; {left}")


def _reason(exc: OSError) -> str:
    return "no space left on device" if exc.errno == errno.ENOSPC else exc.strerror or str(exc)


# --- the model, for every reader ---------------------------------------------------------


def export_model(
    directory: str | Path,
    config: Config,
    params: Params,
    step: int,
    previous_step: int | None = None,
    metadata: dict[str, str] | None = None,
    chat_template: str | None = None,
) -> None:
    """Write the model as a complete Hugging Face directory (`gpt2.weights.save_model`: the
    weights in checkpoint order with `step` (and `metadata`) in their metadata, `config.json`,
    the tokenizer files and `generation_config.json`, each atomically). `previous_step` (the
    last finished checkpoint, None if none) only shapes the error message; `chat_template`
    (instruction tuning's) goes into tokenizer_config.json."""
    from ..weights import save_model

    directory = Path(directory)
    try:
        save_model(
            directory, config, params, metadata={**(metadata or {}), "step": str(step)}, chat_template=chat_template
        )
    except OSError as exc:
        raise _saving_error(_reason(exc), directory / MODEL_FILE, previous_step) from None
    except Gpt2Error as exc:
        raise _saving_error(str(exc), directory / MODEL_FILE, previous_step) from None


def exported_step(directory: str | Path) -> int | None:
    """The step of the exported model (None: missing, unreadable, or exported before
    steps were recorded)."""
    step = exported_metadata(directory).get("step", "")
    return int(step) if step.isdigit() else None


def exported_metadata(directory: str | Path) -> dict[str, str]:
    """The safetensors metadata of the exported model ({} when missing or unreadable)."""
    from ..weights.safetensors import read_header

    try:
        return dict(read_header(Path(directory) / MODEL_FILE).metadata)
    except Gpt2Error:
        return {}


def sync_export(
    directory: str | Path,
    state: dict[str, Any],
    config: Config,
    params: Callable[[], Params],
    chat_template: str | None = None,
) -> bool:
    """Make the exported model the state's, re-exporting it when a save was cut between
    the two writes; True when it had to. `params()` gives the state's weights as a
    parameter tree (called only when needed)."""
    if exported_step(directory) == state["step"] and (Path(directory) / "config.json").is_file():
        return False
    export_model(directory, config, params(), state["step"], previous_step=state["step"], chat_template=chat_template)
    return True


# --- the training state ------------------------------------------------------------------


def save_state(directory: str | Path, state: dict[str, Any], previous_step: int | None = None) -> None:
    """Atomically write the resumable training state (a dict of tensors and plain values)."""
    import torch

    path = Path(directory) / STATE_FILE
    buffer = io.BytesIO()
    torch.save({"format": STATE_FORMAT, **state}, buffer)
    try:
        atomic_write_bytes(path, buffer.getvalue())
    except OSError as exc:
        raise _saving_error(_reason(exc), path, previous_step) from None


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
    """Delete temporary files a save killed half-way left behind (never a finished file),
    in the run directory and in its best model's."""
    for tmp in [*Path(directory).glob(".*.tmp"), *Path(directory).glob("best/.*.tmp")]:
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
