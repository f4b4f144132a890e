"""GPT-2's components in PyTorch, float32, built from torch's own operators
(`F.layer_norm`, `F.gelu(approximate="tanh")`, `F.scaled_dot_product_attention`):
the reference the pure engine must match to 1e-4."""

from __future__ import annotations

import torch
import torch.nn.functional as F

NAME = "torch float32"
TOLERANCE = 1e-4  # max |error| / max |reference|


def asarray(x):
    return torch.tensor(x, dtype=torch.float32)


def tolist(x):
    return x.double().tolist()


def matmul(a, b):
    return torch.matmul(a, b)


def add(a, b):
    return torch.add(a, b)


def transpose(m):
    return m.transpose(0, 1).contiguous()


def softmax(x):
    return torch.softmax(x, dim=-1)


def causal_softmax(scores):
    t = scores.shape[-1]
    mask = torch.ones(t, t, dtype=torch.bool).tril()
    return torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)


def layer_norm(x, g, b, eps=1e-5):
    return F.layer_norm(x, (x.shape[-1],), g, b, eps)


def gelu(x):
    return F.gelu(x, approximate="tanh")


def linear(x, w, b):
    return torch.addmm(b, x, w)


def embed(ids, wte, wpe):
    ids = torch.as_tensor(ids)
    return F.embedding(ids, wte) + wpe[: len(ids)]


def attention(q, k, v):
    return F.scaled_dot_product_attention(q[None], k[None], v[None], is_causal=True)[0]


def multi_head_attention(x, w, prefix, n_head):
    t, c = x.shape
    qkv = linear(x, w[prefix + "c_attn.weight"], w[prefix + "c_attn.bias"])
    q, k, v = (z.view(t, n_head, c // n_head).transpose(0, 1) for z in qkv.split(c, dim=-1))  # [H, T, D]
    y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # [H, T, D]
    return linear(y.transpose(0, 1).reshape(t, c), w[prefix + "c_proj.weight"], w[prefix + "c_proj.bias"])


def output_projection(x, wte):
    return x @ wte.T
