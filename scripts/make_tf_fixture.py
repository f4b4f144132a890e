"""Make tests/fixtures/tf_gpt2_small/: a tiny random GPT-2 saved as a real TensorFlow
checkpoint, named exactly like OpenAI's release, plus the logits it must produce.

TensorFlow is not a dependency of this project; it is needed only to run this
script once, in a throwaway environment:

    python -m venv /tmp/tfvenv && /tmp/tfvenv/bin/pip install tensorflow-cpu numpy
    /tmp/tfvenv/bin/python scripts/make_tf_fixture.py tests/fixtures/tf_gpt2_small

The expected logits come from an independent NumPy forward pass written below
(OpenAI's model.py, re-expressed), not from this package, so the test that loads
the fixture checks our TensorFlow reader and name mapping against a second opinion.
Outputs: checkpoint, model.ckpt.index, model.ckpt.data-00000-of-00001,
hparams.json, expected.json ({"input_ids": [...], "logits": [[...], ...]}).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

HPARAMS = {"n_vocab": 96, "n_ctx": 16, "n_embd": 32, "n_head": 4, "n_layer": 2}
INPUT_IDS = [5, 17, 42, 3, 95, 0, 64, 8]
SEED = 1234


def random_weights(hp: dict, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """OpenAI's variable names and shapes; the projections are [1, in, out] kernels."""
    d, w = hp["n_embd"], {}
    w["model/wte"] = rng.normal(0, 0.02, (hp["n_vocab"], d))
    w["model/wpe"] = rng.normal(0, 0.01, (hp["n_ctx"], d))
    for i in range(hp["n_layer"]):
        p = f"model/h{i}/"
        w[p + "ln_1/g"] = 1 + rng.normal(0, 0.1, d)
        w[p + "ln_1/b"] = rng.normal(0, 0.1, d)
        w[p + "attn/c_attn/w"] = rng.normal(0, 0.2, (1, d, 3 * d))
        w[p + "attn/c_attn/b"] = rng.normal(0, 0.1, 3 * d)
        w[p + "attn/c_proj/w"] = rng.normal(0, 0.2, (1, d, d))
        w[p + "attn/c_proj/b"] = rng.normal(0, 0.1, d)
        w[p + "ln_2/g"] = 1 + rng.normal(0, 0.1, d)
        w[p + "ln_2/b"] = rng.normal(0, 0.1, d)
        w[p + "mlp/c_fc/w"] = rng.normal(0, 0.2, (1, d, 4 * d))
        w[p + "mlp/c_fc/b"] = rng.normal(0, 0.1, 4 * d)
        w[p + "mlp/c_proj/w"] = rng.normal(0, 0.1, (1, 4 * d, d))
        w[p + "mlp/c_proj/b"] = rng.normal(0, 0.1, d)
    w["model/ln_f/g"] = 1 + rng.normal(0, 0.1, d)
    w["model/ln_f/b"] = rng.normal(0, 0.1, d)
    return {k: v.astype(np.float32) for k, v in w.items()}


# --- an independent forward pass, in float64 --------------------------------------


def gelu(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))


def norm(x, g, b, eps=1e-5):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * g + b


def conv1d(x, w, b):
    return x @ w[0] + b  # w is [1, in, out]


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def attention(x, w, p, n_head):
    T, d = x.shape
    q, k, v = np.split(conv1d(x, w[p + "c_attn/w"], w[p + "c_attn/b"]), 3, axis=-1)
    heads = lambda t: t.reshape(T, n_head, d // n_head).transpose(1, 0, 2)  # noqa: E731
    q, k, v = heads(q), heads(k), heads(v)  # [n_head, T, head_dim]
    scores = q @ k.transpose(0, 2, 1) / np.sqrt(d // n_head)  # [n_head, T, T]
    scores = scores + np.triu(np.full((T, T), -1e10), 1)
    y = (softmax(scores) @ v).transpose(1, 0, 2).reshape(T, d)
    return conv1d(y, w[p + "c_proj/w"], w[p + "c_proj/b"])


def forward(w: dict, hp: dict, ids: list[int]) -> np.ndarray:
    w = {k: v.astype(np.float64) for k, v in w.items()}
    x = w["model/wte"][ids] + w["model/wpe"][: len(ids)]
    for i in range(hp["n_layer"]):
        p = f"model/h{i}/"
        x = x + attention(norm(x, w[p + "ln_1/g"], w[p + "ln_1/b"]), w, p + "attn/", hp["n_head"])
        h = norm(x, w[p + "ln_2/g"], w[p + "ln_2/b"])
        h = gelu(conv1d(h, w[p + "mlp/c_fc/w"], w[p + "mlp/c_fc/b"]))
        x = x + conv1d(h, w[p + "mlp/c_proj/w"], w[p + "mlp/c_proj/b"])
    x = norm(x, w["model/ln_f/g"], w["model/ln_f/b"])
    return x @ w["model/wte"].T  # [T, n_vocab]


# --- writing the checkpoint with TensorFlow -----------------------------------------


def save_tf_checkpoint(weights: dict[str, np.ndarray], out: Path) -> None:
    import tensorflow as tf

    tf.compat.v1.disable_eager_execution()
    graph = tf.Graph()
    with graph.as_default():
        variables = [tf.compat.v1.get_variable(name, initializer=value) for name, value in weights.items()]
        saver = tf.compat.v1.train.Saver(variables)
        with tf.compat.v1.Session(graph=graph) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            saver.save(sess, str(out / "model.ckpt"), write_meta_graph=False)
    # Saver writes absolute paths into `checkpoint`; OpenAI's file is relative.
    (out / "checkpoint").write_text('model_checkpoint_path: "model.ckpt"\nall_model_checkpoint_paths: "model.ckpt"\n')


def main(out_dir: str) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    weights = random_weights(HPARAMS, np.random.default_rng(SEED))
    save_tf_checkpoint(weights, out)
    (out / "hparams.json").write_text(json.dumps(HPARAMS, indent=2) + "\n")
    logits = forward(weights, HPARAMS, INPUT_IDS)
    expected = {"input_ids": INPUT_IDS, "logits": [[round(float(v), 7) for v in row] for row in logits]}
    (out / "expected.json").write_text(json.dumps(expected) + "\n")
    print(f"wrote {out}: {sorted(p.name for p in out.iterdir())}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/tf_gpt2_small")
