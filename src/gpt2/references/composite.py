"""The parts of GPT-2 that are only composition, written once over a reference's primitives.

`ops` is a reference module (`numpy_ref` or `torch_ref`): it supplies linear,
layer_norm, gelu, embed, multi_head_attention and output_projection in its own
framework; this module wires them together the way GPT-2 does.
"""

from __future__ import annotations


def mlp(ops, x, w, prefix):
    h = ops.gelu(ops.linear(x, w[prefix + "c_fc.weight"], w[prefix + "c_fc.bias"]))  # [T, 4C]
    return ops.linear(h, w[prefix + "c_proj.weight"], w[prefix + "c_proj.bias"])  # [T, C]


def block(ops, x, w, i, config):
    p, eps = f"h.{i}.", config.layer_norm_epsilon
    a = ops.multi_head_attention(
        ops.layer_norm(x, w[p + "ln_1.weight"], w[p + "ln_1.bias"], eps), w, p + "attn.", config.n_head
    )
    x = x + a
    return x + mlp(ops, ops.layer_norm(x, w[p + "ln_2.weight"], w[p + "ln_2.bias"], eps), w, p + "mlp.")


def decoder(ops, x, w, config):
    for i in range(config.n_layer):
        x = block(ops, x, w, i, config)
    return x


def forward(ops, ids, w, config):
    """Token ids [T] -> logits [T, V]."""
    x = decoder(ops, ops.embed(ids, w["wte.weight"], w["wpe.weight"]), w, config)
    x = ops.layer_norm(x, w["ln_f.weight"], w["ln_f.bias"], config.layer_norm_epsilon)
    return ops.output_projection(x, w["wte.weight"])
