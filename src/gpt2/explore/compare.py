"""Three engines, one model: the same trace from each, and the largest difference between them.

The pure engine (Python floats, float64), the NumPy engine (float32 BLAS) and the PyTorch
engine (float32 kernels, a fused attention) compute GPT-2 in different ways; their traces
should agree to float32 rounding. `compare_traces` measures, for every engine against the
reference (the pure engine when it is among them, else the first), the largest absolute
difference of the logits, of the attention weights and of the residual stream, where it
is, and the same relative to the largest value of that quantity; and whether the engines
pick the same best token at every position. The single largest relative difference is
the headline of the three-engines view.

>>> import numpy as np
>>> from gpt2.explore.trace import Trace
>>> a = Trace("pure", [1], np.array([[0.0, 2.0]]), np.ones((1, 1, 1, 1)), np.ones((2, 1, 2)), 1.0)
>>> b = Trace("numpy", [1], np.array([[0.0, 2.5]]), np.ones((1, 1, 1, 1)), np.ones((2, 1, 2)), 1.0)
>>> out = compare_traces([a, b])
>>> out["largest"]["quantity"], out["largest"]["max_abs"], out["largest"]["where"]
('logits', 0.5, [0, 1])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .errors import ExploreError
from .trace import Trace

__all__ = ["compare_traces"]

QUANTITIES = ("logits", "attention", "residual")


def compare_traces(traces: Sequence[Trace]) -> dict[str, Any]:
    """Traces of one sequence by several engines -> each engine's summary and its differences
    from the reference (see the module docstring)."""
    if not traces:
        raise ExploreError("compare needs at least one engine")
    reference = next((t for t in traces if t.engine == "pure"), traces[0])
    engines = [
        {"name": t.engine, "forward_ms": round(t.forward_ms, 2), "next_token": int(np.argmax(t.logits[-1]))}
        for t in traces
    ]
    differences = []
    for t in traces:
        if t is reference:
            continue
        entry: dict[str, Any] = {"engine": t.engine, "against": reference.engine}
        for quantity in QUANTITIES:
            entry[quantity] = _difference(getattr(t, quantity), getattr(reference, quantity))
        same = np.argmax(t.logits, axis=-1) == np.argmax(reference.logits, axis=-1)  # [T]
        entry["same_best_token"] = float(same.mean())  # the share of positions where they agree
        differences.append(entry)
    largest = max(
        (
            {"engine": d["engine"], "against": d["against"], "quantity": q, **d[q]}
            for d in differences
            for q in QUANTITIES
        ),
        key=lambda d: d["relative"],
        default=None,
    )
    return {"reference": reference.engine, "engines": engines, "differences": differences, "largest": largest}


def _difference(values: np.ndarray, reference: np.ndarray) -> dict[str, Any]:
    """The largest |values - reference|, where it is, and that relative to max |reference|."""
    diff = np.abs(values.astype(np.float64) - reference.astype(np.float64))
    where = np.unravel_index(int(np.argmax(diff)), diff.shape)
    max_abs = float(diff[where])
    scale = float(np.abs(reference).max()) or 1.0
    return {"max_abs": max_abs, "relative": max_abs / scale, "where": [int(i) for i in where]}
