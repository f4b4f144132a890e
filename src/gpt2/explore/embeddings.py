"""The embedding tables: which tokens lie near a token, and how positions resemble each other.

`wte` [V, C] gives each token a vector; tokens the model uses alike end up pointing
alike, so a token's nearest neighbours by cosine similarity (the angle between the
vectors, whatever their lengths) show what the model learned it resembles. `wpe`
[n_ctx, C] gives each position a vector; the matrix of cosine similarities between
positions shows their structure (in GPT-2, a smooth band: nearby positions look alike).

>>> import numpy as np
>>> table = EmbeddingTable(np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]], dtype=np.float32))
>>> [(i, round(c, 3)) for i, c in nearest_neighbours(table, 0, k=2)]
[(1, 0.994), (2, 0.0)]
>>> position_similarity(np.array([[1.0, 0.0], [0.0, 2.0]]), count=2, stride=1).tolist()
[[1.0, 0.0], [0.0, 1.0]]
"""

from __future__ import annotations

import numpy as np

__all__ = ["EmbeddingTable", "nearest_neighbours", "position_similarity"]


class EmbeddingTable:
    """A table of vectors [N, C] and each row's length, computed once."""

    def __init__(self, vectors: np.ndarray) -> None:
        self.vectors = vectors  # [N, C]
        self.norms = np.linalg.norm(vectors, axis=1).astype(np.float64)  # [N]

    def __len__(self) -> int:
        return len(self.vectors)


def nearest_neighbours(table: EmbeddingTable, row: int, k: int = 10) -> list[tuple[int, float]]:
    """The k rows with the largest cosine similarity to `row` (itself excluded), most similar first."""
    dots = table.vectors @ table.vectors[row]  # [N]
    cosine = dots / np.maximum(table.norms * table.norms[row], 1e-12)  # [N]
    cosine[row] = -np.inf
    k = min(k, len(table) - 1)
    best = np.argpartition(-cosine, k - 1)[:k] if k > 0 else np.zeros(0, dtype=np.int64)
    best = best[np.lexsort((best, -cosine[best]))]
    return [(int(i), float(cosine[i])) for i in best]


def position_similarity(wpe: np.ndarray, count: int, stride: int = 1) -> np.ndarray:
    """Cosine similarity between the position vectors 0, stride, 2 stride, ... (count of them): [count, count]."""
    rows = wpe[np.arange(count) * stride].astype(np.float64)  # [count, C]
    unit = rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
    return unit @ unit.T
