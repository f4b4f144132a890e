"""`pytorch_model.bin`: read through PyTorch's restricted unpickler, and nothing else.

A `.bin` checkpoint is a pickle, and a pickle can run arbitrary code when it is
loaded. `torch.load(..., weights_only=True)` only rebuilds tensors and plain
containers and refuses everything else; we never fall back to a full unpickle,
whatever the file says. Without PyTorch installed there is no safe way to read
the format, so we say so and point at safetensors.
"""

from __future__ import annotations

from pathlib import Path

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
    if not path.is_file():
        raise TorchBinError(f"no such file: {path}")
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


def _short(exc: Exception) -> str:
    """The first line of torch's (often very long) message."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


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
