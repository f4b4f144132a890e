"""Foreign tensor names onto our parameter tree, and a config read off the weights.

Hugging Face checkpoints use our names, sometimes behind a `transformer.` prefix,
plus a few things that are not parameters:

    transformer.h.0.attn.c_attn.weight  ->  h.0.attn.c_attn.weight
    h.0.attn.bias, h.0.attn.masked_bias     causal-mask buffers: dropped
    lm_head.weight                          the tied output projection: checked equal to wte, dropped

OpenAI's TensorFlow checkpoint names every tensor differently, and stores the
projections as [1, in, out] (a 1x1 convolution), which we squeeze to [in, out]:

    model/wte                    ->  wte.weight
    model/h3/attn/c_attn/w       ->  h.3.attn.c_attn.weight
    model/h3/ln_1/g | b          ->  h.3.ln_1.weight | bias
    model/ln_f/g | b             ->  ln_f.weight | bias

>>> hf_to_ours("transformer.h.0.ln_1.weight"), hf_to_ours("h.0.attn.masked_bias")
('h.0.ln_1.weight', None)
>>> tf_to_ours("model/h11/mlp/c_proj/w")
'h.11.mlp.c_proj.weight'
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from ..config import Config
from ..errors import ConfigError
from ..params import Params
from ..tensor import Tensor
from .errors import WeightsError

HF_PREFIXES = ("transformer.",)
HF_BUFFERS = re.compile(r"h\.\d+\.attn\.(bias|masked_bias)$")
LM_HEAD = "lm_head.weight"

# GPT-2's published widths imply their head counts; other widths get 64-wide heads.
HEADS_BY_WIDTH = {768: 12, 1024: 16, 1280: 20, 1600: 25}
DEFAULT_HEAD_DIM = 64

# A block's tensor: its index, at most 9 digits (a forged 5,000-digit index would make
# int() itself fail; such a name is simply an unexpected tensor).
BLOCK_NAME = re.compile(r"h\.(\d{1,9})\.")

_TF_NAME = re.compile(r"model/(?:h(\d+)/)?([a-z_0-9/]+)$")
_TF_LEAF = {"w": "weight", "g": "weight", "b": "bias"}
_TF_TOP = {"wte": "wte.weight", "wpe": "wpe.weight"}


def hf_to_ours(name: str) -> str | None:
    """Our name for a Hugging Face tensor name, or None for a buffer to drop."""
    for prefix in HF_PREFIXES:
        if name.startswith(prefix):
            name = name[len(prefix) :]
            break
    if HF_BUFFERS.match(name):
        return None
    return name


def tf_to_ours(name: str) -> str | None:
    """Our name for an OpenAI TensorFlow variable, or None if it is not under `model/`."""
    m = _TF_NAME.match(name)
    if m is None:
        return None
    layer, rest = m.groups()
    if layer is None:
        if rest in _TF_TOP:
            return _TF_TOP[rest]
        module, _, leaf = rest.rpartition("/")
        return f"{module.replace('/', '.')}.{_TF_LEAF.get(leaf, leaf)}"
    module, _, leaf = rest.rpartition("/")
    return f"h.{int(layer)}.{module.replace('/', '.')}.{_TF_LEAF.get(leaf, leaf)}"


def from_hf_names(tensors: Mapping[str, Tensor], where: str) -> Params:
    """Rename a Hugging Face state dict to our tree; the tied head must equal wte."""
    params: Params = {}
    for name, t in tensors.items():
        if name in (LM_HEAD, "transformer." + LM_HEAD):
            continue
        ours = hf_to_ours(name)
        if ours is None:
            continue
        if ours in params:
            raise WeightsError(f"{where}: tensor {ours!r} appears twice (as {name!r})")
        params[ours] = t
    head = tensors.get(LM_HEAD)
    if head is not None and "wte.weight" in params:
        _check_tied(head, params["wte.weight"], where)
    return params


def _check_tied(head: Tensor, wte: Tensor, where: str) -> None:
    """GPT-2 ties its output projection to wte; a different lm_head is a different model."""
    if head.shape != wte.shape or head.dtype != wte.dtype:
        raise WeightsError(
            f"{where}: lm_head.weight {head.dtype}{list(head.shape)} differs from wte.weight "
            f"{wte.dtype}{list(wte.shape)}; only models with a tied output projection are supported"
        )
    if memoryview(head.data).cast("B") != memoryview(wte.data).cast("B"):
        raise WeightsError(
            f"{where}: lm_head.weight is not equal to wte.weight; only models with a tied "
            "output projection are supported"
        )


def infer_config(params: Mapping[str, Tensor], where: str, n_head: int | None = None) -> Config:
    """A Config from tensor shapes alone (no config file): depth from the `h.{i}` count,
    width and vocabulary from wte, context from wpe. The head count cannot be seen in any
    shape: `n_head` if given, else a guess from the width (see HEADS_BY_WIDTH), which
    `gpt2.weights.open_model` reports as `n_head_guessed`."""
    for name in ("wte.weight", "wpe.weight"):
        if name not in params or len(params[name].shape) != 2:
            shape = list(params[name].shape) if name in params else None
            raise WeightsError(f"{where}: cannot infer the config: need a 2-D {name!r}, got {shape}")
    vocab_size, n_embd = params["wte.weight"].shape
    n_ctx = params["wpe.weight"].shape[0]
    layers = {int(m.group(1)) for m in map(BLOCK_NAME.match, params) if m}
    n_layer = max(layers) + 1 if layers else 0
    if n_head is None:
        n_head = HEADS_BY_WIDTH.get(n_embd, n_embd // DEFAULT_HEAD_DIM)
        if n_head == 0 or n_embd % n_head:
            raise WeightsError(
                f"{where}: cannot infer the number of heads for n_embd={n_embd}; "
                "put a config.json (with n_head) next to the weights"
            )
    try:
        return Config(n_layer=n_layer, n_embd=n_embd, n_head=n_head, vocab_size=vocab_size, n_ctx=n_ctx)
    except ConfigError as exc:
        raise WeightsError(f"{where}: cannot infer the config: {exc}") from None
