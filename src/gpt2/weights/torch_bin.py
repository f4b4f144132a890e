"""`pytorch_model.bin`: read through PyTorch's restricted unpickler, and nothing else.

A `.bin` checkpoint is a pickle, and a pickle can run arbitrary code when it is
loaded. `torch.load(..., weights_only=True)` only rebuilds tensors and plain
containers and refuses everything else; we never fall back to a full unpickle,
whatever the file says. Without PyTorch installed there is no safe way to read
the format, so we say so and point at safetensors.
"""

from __future__ import annotations

import os
import re
import zipfile
from pathlib import Path

from ..config import show_value
from ..regular_file import open_regular
from ..tensor import Tensor
from .errors import TorchBinError

_DTYPES = {"torch.float32": "F32", "torch.float16": "F16", "torch.bfloat16": "BF16", "torch.float64": "F64"}


def read_torch_bin(path: str | Path) -> dict[str, Tensor]:
    """The tensors of a PyTorch state-dict checkpoint, loaded with weights_only=True."""
    path = Path(path)
    try:
        import torch
    except ImportError:
        raise TorchBinError(
            f"{path} is a PyTorch pickle, which only PyTorch can read safely: "
            'pip install -e ".[torch]", or use the model\'s model.safetensors instead'
        ) from None
    state = _torch_load(torch, path)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise TorchBinError(f"{path}: expected a state dict (name -> tensor), got {type(state).__name__}")
    tensors: dict[str, Tensor] = {}
    for name, value in state.items():
        if not isinstance(name, str) or not isinstance(value, torch.Tensor):
            raise TorchBinError(f"{path}: entry {name!r} is not a named tensor")
        tensors[name] = _to_tensor(value, name, path)
    return tensors


def _torch_load(torch, path: Path):
    check_container(path)
    try:
        # mmap=True avoids reading the whole file up front; it needs the zip format
        # that torch.save has written since 1.6.
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as first:  # noqa: BLE001 - torch raises many types; all mean "not readable"
        if "mmap" not in str(first) and "zip" not in str(first):
            raise TorchBinError(f"{path}: not a loadable weights-only PyTorch checkpoint: {_short(first)}") from None
    try:  # the legacy (pre-zip) format, still restricted to weights
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise TorchBinError(f"{path}: not a loadable weights-only PyTorch checkpoint: {_short(exc)}") from None


def check_container(path: Path) -> None:
    """What torch would report obscurely (a truncated zip as `Invalid argument`, a FIFO
    as a missing file), said plainly before it is asked: the file is a regular file, and
    a zip whose central directory is there and whose members all lie inside the file."""
    try:
        with open_regular(path) as f:
            size = os.fstat(f.fileno()).st_size
            magic = f.read(4)
            if size == 0:
                raise TorchBinError(f"{path}: the file is empty")
            if magic[:2] != b"PK":
                return  # the legacy format, a raw pickle: torch's own checks follow
            try:
                with zipfile.ZipFile(f) as archive:
                    members = archive.infolist()
            except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
                raise TorchBinError(
                    f"{path}: a damaged or truncated zip archive ({exc}); download or save it again"
                ) from None
    except OSError as exc:
        raise TorchBinError(f"cannot read {path}: {exc.strerror or exc}") from None
    for m in members:
        if m.header_offset + m.compress_size > size:
            raise TorchBinError(
                f"{path}: truncated: member {show_value(m.filename)} ends past the file's {size:,} bytes; "
                "download or save it again"
            )


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _short(exc: Exception) -> str:
    """What went wrong, from torch's (often very long) message, without its colour codes and
    without its advice: torch suggests retrying with weights_only=False or allowlisting the
    offending global, which is exactly the code execution this reader exists to refuse."""
    text = _ANSI.sub("", str(exc))
    m = re.search(r"WeightsUnpickler error:\s*(.*?)(?:\s+Please use|\n|$)", text, re.S)
    if m:  # e.g. "Unsupported global: GLOBAL io.open was not an allowed global by default."
        detail = m.group(1).strip().rstrip(".")
        call = re.match(r"Unsupported global: GLOBAL (\S+)", detail)
        if call:
            return f"refused: unpickling it would call {call.group(1)}, and only tensors are ever loaded"
        return f"refused by the weights-only unpickler ({detail}; truncated, or not a checkpoint)"
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    first = re.split(r"(?<=\.)\s+(?=This is an internal|If you are seeing|Re-running)", first)[0]
    if re.search(r"weights_only|safe_globals|trust", first, re.I):
        return "refused: it needs more than weights-only unpickling"
    return f"{type(exc).__name__}: {first}"


def _to_tensor(value, name: str, path: Path) -> Tensor:
    import torch

    dtype = _DTYPES.get(str(value.dtype))
    if dtype is None:
        raise TorchBinError(f"{path}: tensor {name!r} has dtype {value.dtype}; expected a float type")
    value = value.detach().contiguous()
    # Reinterpret as bytes without a copy where possible (bf16 has no NumPy type, so
    # every dtype goes through an integer view of the same width).
    as_int = {"F32": torch.int32, "F16": torch.int16, "BF16": torch.int16, "F64": torch.int64}[dtype]
    raw = value.view(as_int).reshape(-1).numpy()
    return Tensor(tuple(value.shape), dtype, memoryview(raw).cast("B"))
