"""GPT-2's forward pass as small functions over the parameter tree.

This is the model, whole sequences at a time, written to be read: every tensor
line carries its shape ([T] = sequence length, C = n_embd, H = n_head,
D = head_dim = C / H, V = vocab_size). The decoding engine in
`gpt2.engines.pure.engine` computes exactly the same numbers one position at a time
with a KV cache and faster inner products; `gpt2 verify` checks both.

`weights` below is the parameter tree as nested lists: `nested_params(params)`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from ...config import Config
from ...tensor import Tensor
from .ops import Matrix, Vector, add_matrices, causal_softmax, gelu_vector, layer_norm, linear, matmul, transpose

Weights = Mapping[str, list]


def nested_params(params: Mapping[str, Tensor]) -> dict[str, list]:
    """Parameter tree -> the same names with values as lists (1-D) or lists of rows (2-D)."""
    out: dict[str, list] = {}
    for name, t in params.items():
        flat = t.to_array().tolist()
        if len(t.shape) == 1:
            out[name] = flat
        else:
            cols = t.shape[1]
            out[name] = [flat[i : i + cols] for i in range(0, len(flat), cols)]
    return out


def embed(ids: Sequence[int], wte: Matrix, wpe: Matrix, start: int = 0) -> list[list[float]]:
    """Token embedding plus learned position embedding: [T] ids -> [T][C]."""
    return [[a + b for a, b in zip(wte[t], wpe[start + i])] for i, t in enumerate(ids)]


def attention(q: Matrix, k: Matrix, v: Matrix) -> list[list[float]]:
    """Causal scaled dot-product attention for one head: softmax(q k^T / sqrt(D)) v."""
    scale = 1.0 / math.sqrt(len(q[0]))
    scores = [[s * scale for s in row] for row in matmul(q, transpose(k))]  # [T][T]
    return matmul(causal_softmax(scores), v)  # [T][D]


def split_heads(x: Matrix, n_head: int) -> list[list[Sequence[float]]]:
    """[T][C] -> [H][T][D]."""
    d = len(x[0]) // n_head
    return [[row[h * d : (h + 1) * d] for row in x] for h in range(n_head)]


def merge_heads(heads: Sequence[Matrix]) -> list[list[float]]:
    """[H][T][D] -> [T][C]."""
    return [[v for head in heads for v in head[t]] for t in range(len(heads[0]))]


def multi_head_attention(x: Matrix, w: Weights, prefix: str, n_head: int) -> list[list[float]]:
    """x [T][C] -> [T][C]: project to q, k, v, attend per head, concatenate, project back."""
    c = len(x[0])
    qkv = linear(x, w[prefix + "c_attn.weight"], w[prefix + "c_attn.bias"])  # [T][3C]
    q = [row[:c] for row in qkv]  # [T][C]
    k = [row[c : 2 * c] for row in qkv]  # [T][C]
    v = [row[2 * c :] for row in qkv]  # [T][C]
    heads = [
        attention(qh, kh, vh)  # [T][D]
        for qh, kh, vh in zip(split_heads(q, n_head), split_heads(k, n_head), split_heads(v, n_head))
    ]
    return linear(merge_heads(heads), w[prefix + "c_proj.weight"], w[prefix + "c_proj.bias"])  # [T][C]


def mlp(x: Matrix, w: Weights, prefix: str) -> list[list[float]]:
    """x [T][C] -> [T][4C] -> GELU -> [T][C]."""
    h = linear(x, w[prefix + "c_fc.weight"], w[prefix + "c_fc.bias"])  # [T][4C]
    h = [gelu_vector(row) for row in h]  # [T][4C]
    return linear(h, w[prefix + "c_proj.weight"], w[prefix + "c_proj.bias"])  # [T][C]


def norm_rows(x: Matrix, gain: Vector, bias: Vector, eps: float) -> list[list[float]]:
    return [layer_norm(row, gain, bias, eps) for row in x]


def transformer_block(x: Matrix, w: Weights, i: int, config: Config) -> list[list[float]]:
    """Pre-norm block: x + attn(ln_1(x)), then + mlp(ln_2(x)). [T][C] -> [T][C]."""
    p, eps = f"h.{i}.", config.layer_norm_epsilon
    a = multi_head_attention(norm_rows(x, w[p + "ln_1.weight"], w[p + "ln_1.bias"], eps), w, p + "attn.", config.n_head)
    x = add_matrices(x, a)  # [T][C]
    m = mlp(norm_rows(x, w[p + "ln_2.weight"], w[p + "ln_2.bias"], eps), w, p + "mlp.")
    return add_matrices(x, m)  # [T][C]


def decoder(x: Matrix, w: Weights, config: Config) -> Matrix:
    """The stack of n_layer blocks. [T][C] -> [T][C]."""
    for i in range(config.n_layer):
        x = transformer_block(x, w, i, config)
    return x


def output_projection(x: Matrix, wte: Matrix) -> list[list[float]]:
    """Tied output projection: logits = x @ wte^T. [T][C] -> [T][V]."""
    return matmul(x, transpose(wte))


def forward(ids: Sequence[int], w: Weights, config: Config) -> list[list[float]]:
    """Token ids [T] -> logits [T][V] for the next token at every position."""
    x: Matrix = embed(ids, w["wte.weight"], w["wpe.weight"])  # [T][C]
    x = decoder(x, w, config)  # [T][C]
    x = norm_rows(x, w["ln_f.weight"], w["ln_f.bias"], config.layer_norm_epsilon)  # [T][C]
    return output_projection(x, w["wte.weight"])  # [T][V]
