"""One traced forward pass: the logits, and what every layer and head computed on the way.

`run_trace(engine, ids)` runs the engine over the whole sequence in a fresh cache with a
`Recording` (see `gpt2.engines.recorder`) and returns, as NumPy arrays in one layout for
every engine:

    logits     [T, V]          the next-token logits at every position (all_logits), else [1, V]: the last
    attention  [L, H, T, T]    each layer's and head's attention probabilities
    residual   [L + 1, T, C]   the embeddings, then the residual stream after each block

`trace_json` turns a trace into the JSON object `POST /api/trace` answers (its schema is
`gpt2/explore/schema.json`, documented in docs/explorer.md).

>>> from gpt2.config import Config
>>> from gpt2.params import init_params
>>> from gpt2.engines import load_engine
>>> cfg = Config(n_layer=2, n_embd=8, n_head=2, vocab_size=11, n_ctx=16)
>>> t = run_trace(load_engine("pure", cfg, init_params(cfg, seed=0)), [1, 2, 3], all_logits=True)
>>> t.logits.shape, t.attention.shape, t.residual.shape
((3, 11), (2, 2, 3, 3), (3, 3, 8))
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..engines.base import Engine
from ..generation.sampling import SamplingConfig
from .distribution import next_token_distribution
from .encoding import encode_attention
from .errors import ExploreError
from .lens import LensWeights, logit_lens
from .recording import Recording, as_array
from .sources import computed_by

__all__ = ["Trace", "run_trace", "trace_json"]

Token = Callable[[int], dict[str, Any]]  # id -> {"id", "text", "bytes"}


@dataclass(frozen=True)
class Trace:
    engine: str
    ids: list[int]
    logits: np.ndarray  # [T, V] float32, or [1, V]: the last position's
    attention: np.ndarray  # [L, H, T, T] float32
    residual: np.ndarray  # [L + 1, T, C] float32
    forward_ms: float


def run_trace(engine: Engine, ids: Sequence[int], *, all_logits: bool = False) -> Trace:
    """Run `engine` over `ids` (a fresh cache) and record every layer (see the module docstring).
    Without `all_logits` only the last position is projected onto the vocabulary (the logit
    lens projects the others, and a [T, V] product is a twelfth of the lens's work at 124M)."""
    recording = Recording()
    start = time.perf_counter()
    try:
        logits = engine.forward(list(ids), engine.new_cache(), all_logits=all_logits, recorder=recording)
    except TypeError as exc:
        if "recorder" not in str(exc):
            raise
        raise ExploreError(f"the {engine.name} engine cannot be traced: its forward takes no recorder") from None
    forward_ms = 1e3 * (time.perf_counter() - start)
    values = as_array(logits)
    values = values.reshape(-1, values.shape[-1])  # [T, V] or [1, V]
    return Trace(engine.name, list(ids), values, recording.attention_weights(), recording.residual_stream(), forward_ms)


def trace_json(
    trace: Trace,
    lens: LensWeights,
    token: Token,
    *,
    sampling: SamplingConfig,
    top: int = 20,
    lens_top: int = 5,
    attention: str = "tril-u16-base64",
) -> dict[str, Any]:
    """The JSON answer of `POST /api/trace` for one trace (see docs/explorer.md)."""
    start = time.perf_counter()
    lensed = logit_lens(trace.residual[1:], lens, top=lens_top)
    lens_ms = 1e3 * (time.perf_counter() - start)
    cells: list[list[dict[str, Any]]] = [
        [
            {
                "top": [
                    {**token(int(i)), "p": _round(p)}
                    for i, p in zip(lensed.top_ids[layer, t].tolist(), lensed.top_probs[layer, t].tolist())
                ],
                "target_rank": int(lensed.target_rank[layer, t]),
                "target_p": _round(float(lensed.target_prob[layer, t])),
            }
            for t in range(len(trace.ids))
        ]
        for layer in range(lensed.top_ids.shape[0])
    ]
    for cell_top in (c["top"] for row in cells for c in row):
        for entry in cell_top:
            entry.pop("bytes", None)  # the tokens list has the bytes; the lens keeps id, text, p
    nxt = next_token_json(trace.logits[-1], sampling, token, top)
    norms = np.linalg.norm(trace.residual.astype(np.float64), axis=-1)  # [L + 1, T]
    return {
        "engine": trace.engine,
        "tokens": [token(i) for i in trace.ids],
        "attention": encode_attention(trace.attention, attention),
        "logit_lens": {
            "target": [{k: v for k, v in token(int(i)).items() if k != "bytes"} for i in lensed.target.tolist()],
            "cells": cells,
        },
        "next_token": nxt,
        "residual_norms": norms.round(4).tolist(),
        "computed_by": computed_by(trace.engine),
        "timings_ms": {"forward": round(trace.forward_ms, 2), "logit_lens": round(lens_ms, 2)},
    }


def next_token_json(logits: Any, sampling: SamplingConfig, token: Token, top: int) -> dict[str, Any]:
    """`next_token_distribution` with each candidate's text."""
    out = next_token_distribution(logits, sampling, top)
    for c in out["candidates"]:
        c["text"] = token(c["id"])["text"]
    return out


def _round(p: float) -> float:
    """Probabilities to 6 significant digits: enough for any display, a third of the JSON."""
    return float(f"{p:.6g}")
