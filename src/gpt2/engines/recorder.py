"""What an engine can report from inside its forward pass: the `recorder` argument.

Every engine's `forward(ids, cache, all_logits=..., recorder=None)` takes an optional
recorder. When one is given, the engine hands it, as it computes them, the numbers a
reader of the model wants to see and that the logits alone hide:

    recorder.residual(-1, x)        # x [T, C]: the embeddings (token + position) of the new positions
    recorder.attention(layer, w)    # w [H, T, S]: layer's attention probabilities; row t of head h
                                    #   is over the S positions that new position t may see
    recorder.residual(layer, x)     # x [T, C]: the residual stream after block `layer`

S is the number of positions held after the call (cached + new). The values come in the
engine's own type (nested lists, NumPy arrays, torch tensors); the pure engine passes
ragged rows (row t holds only the positions it sees: the rest are zero by the causal mask).
An engine may overwrite its buffers after the call returns, so a recorder copies what it
keeps. Without a recorder an engine does exactly what it did before: recording is the
explorer's concern (`gpt2.explore`), never the hot path's.

>>> class Count:
...     def __init__(self): self.calls = []
...     def attention(self, layer, weights): self.calls.append(("attention", layer))
...     def residual(self, layer, x): self.calls.append(("residual", layer))
>>> isinstance(Count(), Recorder)
True
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

__all__ = ["Recorder"]


@runtime_checkable
class Recorder(Protocol):
    """Receives an engine's intermediate values during one forward pass (see the module docstring)."""

    def attention(self, layer: int, weights: Any) -> None:
        """Layer `layer`'s attention probabilities of the new positions, [H, T, S]."""
        ...

    def residual(self, layer: int, x: Any) -> None:
        """The residual stream of the new positions after block `layer` ([T, C]; -1: the embeddings)."""
        ...
