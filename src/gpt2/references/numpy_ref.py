"""GPT-2's components in NumPy, float64: the reference the pure engine must match to 1e-9."""

from __future__ import annotations

import numpy as np

NAME = "numpy float64"
TOLERANCE = 1e-9  # max |error| / max |reference|


def asarray(x):
    return np.asarray(x, dtype=np.float64)


def tolist(x):
    return np.asarray(x).tolist()


def matmul(a, b):
    return a @ b


def add(a, b):
    return a + b


def transpose(m):
    return m.T


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def causal_softmax(scores):
    t = scores.shape[-1]
    mask = np.triu(np.ones((t, t), dtype=bool), k=1)  # True above the diagonal: the future
    return softmax(np.where(mask, -np.inf, scores))


def layer_norm(x, g, b, eps=1e-5):
    mu = x.mean(axis=-1, keepdims=True)
    var = x.var(axis=-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * g + b


def gelu(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))


def linear(x, w, b):
    return x @ w + b


def embed(ids, wte, wpe):
    return wte[np.asarray(ids)] + wpe[: len(ids)]


def attention(q, k, v):
    return causal_softmax(q @ k.T / np.sqrt(q.shape[-1])) @ v


def multi_head_attention(x, w, prefix, n_head):
    q, k, v = np.split(linear(x, w[prefix + "c_attn.weight"], w[prefix + "c_attn.bias"]), 3, axis=-1)
    heads = [
        attention(qh, kh, vh)
        for qh, kh, vh in zip(np.split(q, n_head, axis=-1), np.split(k, n_head, axis=-1), np.split(v, n_head, axis=-1))
    ]
    return linear(np.hstack(heads), w[prefix + "c_proj.weight"], w[prefix + "c_proj.bias"])


def output_projection(x, wte):
    return x @ wte.T
