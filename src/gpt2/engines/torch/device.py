"""Where the PyTorch code runs: one device picker for the engine and for training.

>>> pick_device("cpu").type, pick_device("auto").type in ("cpu", "cuda", "mps")
('cpu', True)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    import numpy as np

from ...errors import Gpt2Error

DEVICES = ("auto", "cpu", "cuda", "mps")


def mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return mps is not None and mps.is_available()


def pick_device(device: str | None = "auto") -> torch.device:
    """ "auto" (or None) picks the best available: cuda, then mps, then cpu. A device that is
    named but absent is a clear error."""
    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if mps_available() else "cpu")
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError):
        raise Gpt2Error(f"unknown device {device!r}; use auto, cpu, cuda or mps") from None
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise Gpt2Error("device cuda was asked for, but PyTorch sees no CUDA GPU")
    if chosen.type == "mps" and not mps_available():
        raise Gpt2Error("device mps was asked for, but this PyTorch has no MPS support here")
    if chosen.type not in ("cpu", "cuda", "mps"):
        raise Gpt2Error(f"unsupported device {device!r}; use auto, cpu, cuda or mps")
    return chosen


def host_array(t: torch.Tensor) -> np.ndarray:
    """A tensor as the engine contract hands values over: a float32, C-contiguous NumPy array on
    the host (one copy from a GPU; on the CPU a view of a contiguous float32 tensor)."""
    import numpy as np

    return np.ascontiguousarray(t.detach().to("cpu", torch.float32).numpy())


class HostRecorder:
    """A recorder (`gpt2.engines.recorder`) handed the engine's tensors as `host_array`s."""

    def __init__(self, recorder: Any) -> None:
        self.recorder = recorder

    def attention(self, layer: int, weights: torch.Tensor) -> None:
        self.recorder.attention(layer, host_array(weights))

    def residual(self, layer: int, x: torch.Tensor) -> None:
        self.recorder.residual(layer, host_array(x))
