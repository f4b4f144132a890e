"""A recorder that keeps what an engine reports during one forward pass, as NumPy arrays.

An engine given a recorder (see `gpt2.engines.recorder`) hands it each layer's attention
probabilities and the residual stream after each block, on the host as the engine contract
has it: nested lists from the pure engine (attention rows ragged: row t holds the t + 1
positions it sees), NumPy arrays from the others. `Recording` copies each into float32
NumPy arrays of one layout, whoever computed them:

    recording.attention()   # [L, H, T, T], row t zero beyond position t (the causal mask)
    recording.residual()    # [L + 1, T, C]: the embeddings, then the stream after each block

>>> r = Recording()
>>> r.residual(-1, [[1.0, 2.0]]); r.residual(0, [[3.0, 4.0]])
>>> r.attention(0, [[[1.0]]])                           # one head, one position
>>> r.residual_stream().shape, r.attention_weights().shape
((2, 1, 2), (1, 1, 1, 1))
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["Recording", "as_array"]


def as_array(values: Any) -> np.ndarray:
    """Any engine's values (nested lists, ragged or not; a NumPy array) as a float32 NumPy
    copy (the engine may reuse its buffers); ragged rows are padded with zeros to the longest."""
    try:
        return np.array(values, dtype=np.float32)  # a copy
    except ValueError:  # ragged: the pure engine's attention rows
        return _pad_ragged(values)


def _pad_ragged(values: Any) -> np.ndarray:
    """[H][T][S_t] nested lists, S_t growing with t -> [H, T, max S_t], zeros after each row."""
    heads = len(values)
    rows = len(values[0])
    width = max(len(row) for head in values for row in head)
    out = np.zeros((heads, rows, width), dtype=np.float32)
    for h, head in enumerate(values):
        for t, row in enumerate(head):
            out[h, t, : len(row)] = row
    return out


class Recording:
    """Implements `gpt2.engines.recorder.Recorder` for one forward pass over a fresh cache."""

    def __init__(self) -> None:
        self._attention: dict[int, np.ndarray] = {}
        self._residual: dict[int, np.ndarray] = {}

    def attention(self, layer: int, weights: Any) -> None:
        self._attention[layer] = as_array(weights)  # [H, T, S]

    def residual(self, layer: int, x: Any) -> None:
        self._residual[layer] = as_array(x)  # [T, C]

    def attention_weights(self) -> np.ndarray:
        """[L, H, T, T]: the attention of every layer (a fresh cache: S = T)."""
        return np.stack([self._attention[layer] for layer in sorted(self._attention)])

    def residual_stream(self) -> np.ndarray:
        """[L + 1, T, C]: index 0 the embeddings, index l + 1 the stream after block l."""
        return np.stack([self._residual[layer] for layer in sorted(self._residual)])
