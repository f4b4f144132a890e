"""The logit lens: what each layer would predict if the model stopped there.

GPT-2 turns its final residual stream into logits with the last layer norm and the
tied output projection: logits = ln_f(x) @ wte^T. The logit lens applies exactly that to
the residual stream after *every* block, so each layer gets its own next-token
distribution: early layers guess badly, later ones converge on the final answer. The
lens of the last block is the model's own output (the tests check it equals the engine's
logits).

For each layer and position we keep the `top` tokens and their probabilities, and where
the final prediction (the last layer's best token at that position) stands: its rank
(0 = it is this layer's best guess too) and its probability.

>>> import numpy as np
>>> lens = LensWeights(wte=np.eye(3, 2, dtype=np.float32), gain=np.ones(2, np.float32),
...                    bias=np.zeros(2, np.float32), eps=1e-5)
>>> x = np.array([[[0.0, 2.0]], [[2.0, 0.0]]], dtype=np.float32)   # 2 layers, 1 position, C = 2
>>> result = logit_lens(x, lens, top=2)
>>> result.top_ids.tolist(), result.target.tolist(), result.target_rank.tolist()
([[[1, 2]], [[0, 2]]], [0], [[2], [0]])
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ..tensor import Tensor

__all__ = ["LensWeights", "LensResult", "lens_logits", "logit_lens"]

# Rows of logits held at once: 1024 x 50257 float32 is 206 MB.
CHUNK_ROWS = 1024


@dataclass(frozen=True)
class LensWeights:
    """What the lens needs: the tied output projection and the final layer norm, float32."""

    wte: np.ndarray  # [V, C]
    gain: np.ndarray  # [C] ln_f.weight
    bias: np.ndarray  # [C] ln_f.bias
    eps: float

    @classmethod
    def from_params(cls, params: Mapping[str, Tensor], eps: float) -> LensWeights:
        from ..engines.numpy_engine import tensor_to_numpy

        def array(name: str) -> np.ndarray:
            return np.ascontiguousarray(tensor_to_numpy(params[name]), dtype=np.float32)

        return cls(array("wte.weight"), array("ln_f.weight"), array("ln_f.bias"), eps)


@dataclass(frozen=True)
class LensResult:
    top_ids: np.ndarray  # [L, T, top] each layer's best tokens, most probable first
    top_probs: np.ndarray  # [L, T, top]
    target: np.ndarray  # [T] the final prediction at each position (the last layer's best token)
    target_rank: np.ndarray  # [L, T] its rank in each layer (0 = best)
    target_prob: np.ndarray  # [L, T] its probability in each layer


def lens_logits(x: np.ndarray, lens: LensWeights) -> np.ndarray:
    """ln_f then the tied head, as GPT-2 ends its forward pass: x [T, C] -> logits [T, V]."""
    centred = x - x.mean(axis=-1, keepdims=True)  # [T, C]
    normed = centred / np.sqrt((centred * centred).mean(axis=-1, keepdims=True) + lens.eps)
    return (normed * lens.gain + lens.bias) @ lens.wte.T  # [T, V]


def logit_lens(residual: np.ndarray, lens: LensWeights, top: int = 5) -> LensResult:
    """residual [L, T, C] (the stream after each block) -> each layer's predictions.

    The last layer goes first: its best tokens are the targets. Then the rows of the other
    layers ((L - 1) * T of them, in chunks of at most CHUNK_ROWS to bound memory) are projected
    at once, one big matrix product, and each chunk of logits is read in a few vectorised
    passes: the target's rank, the top tokens (arg-max, then masked, `top` times: far cheaper
    than a partial sort of 50257 logits per row), and the softmax's denominator."""
    L, T, C = residual.shape
    top = min(top, lens.wte.shape[0])
    last = lens_logits(residual[-1], lens)  # [T, V]
    target = np.argmax(last, axis=-1)  # [T]: the lowest id on a tie
    top_ids = np.zeros((L * T, top), dtype=np.int64)
    top_probs = np.zeros((L * T, top))
    target_rank = np.zeros(L * T, dtype=np.int64)
    target_prob = np.zeros(L * T)
    out = (top_ids, top_probs, target_rank, target_prob)
    for part, values in zip(out, _read_logits(last, target, top)):
        part[(L - 1) * T :] = values
    rows = residual[:-1].reshape((L - 1) * T, C)
    targets = np.tile(target, L - 1)  # [(L - 1) * T]
    for lo in range(0, len(rows), CHUNK_ROWS):
        hi = min(lo + CHUNK_ROWS, len(rows))
        for part, values in zip(out, _read_logits(lens_logits(rows[lo:hi], lens), targets[lo:hi], top)):
            part[lo:hi] = values
    return LensResult(
        top_ids.reshape(L, T, top),
        top_probs.reshape(L, T, top),
        target,
        target_rank.reshape(L, T),
        target_prob.reshape(L, T),
    )


def _read_logits(logits: np.ndarray, target: np.ndarray, top: int) -> tuple[np.ndarray, ...]:
    """logits [N, V] (overwritten) and each row's target id -> (top ids [N, top] by logit then
    lower id, their probabilities, the target's rank, the target's probability)."""
    n = np.arange(len(logits))
    at_target = logits[n, target]  # [N]
    rank = np.count_nonzero(logits > at_target[:, None], axis=-1)  # tokens strictly more likely
    peak = logits.max(axis=-1)  # [N]
    ids = np.zeros((len(logits), top), dtype=np.int64)
    best = np.zeros((len(logits), top), dtype=np.float64)
    for k in range(top):  # the arg-max is the lowest id on a tie, as the sampler orders them
        ids[:, k] = np.argmax(logits, axis=-1)
        best[:, k] = logits[n, ids[:, k]]
        logits[n, ids[:, k]] = -np.inf  # so the next arg-max is the next token
    logits -= peak[:, None]
    np.exp(logits, out=logits)  # the masked top entries are now exp(-inf) = 0 ...
    total = logits.sum(axis=-1) + np.exp(best - peak[:, None]).sum(axis=-1)  # ... added back here
    log_total = peak + np.log(total)  # [N]
    return ids, np.exp(best - log_total[:, None]), rank, np.exp(at_target - log_total)
