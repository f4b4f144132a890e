"""Int8 weights in files: the layout `gpt2 convert --quantize int8` writes and the loaders read.

The value type and its arithmetic (:class:`QuantizedTensor`, `quantize_int8`, `dequantize`, the
scheme: symmetric, one float32 scale per output row) live in :mod:`gpt2.quantized_tensor`, beside
:mod:`gpt2.tensor`; they are re-exported here for the code that always imported them from here.

In a file (safetensors; `gpt2 convert --quantize int8` writes one) each quantized
tensor keeps its name and checkpoint shape with dtype I8, and its scales sit beside
it as `<name>_scale`, float32, shaped to broadcast against it:

    h.0.attn.c_attn.weight         I8  [768, 2304]
    h.0.attn.c_attn.weight_scale   F32 [1, 2304]      one per output column
    wte.weight                     I8  [50257, 768]
    wte.weight_scale               F32 [50257, 1]     one per vocabulary row

and the metadata says `"gpt2.quantization": "int8"`. Dequantizing is `weight *
weight_scale` in any array library. Per-output-row scales are also what
PyTorch's int8 matrix-vector kernel takes (see gpt2.engines.torch.precision).

>>> tensors, metadata = pack({"w": quantize_int8(Tensor.from_floats([1.0, -2.0], (1, 2)), axis=1)})
>>> sorted(tensors), metadata[METADATA_KEY]
(['w', 'w_scale'], 'int8')
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from ..params import Params
from ..quantized_tensor import (
    QMAX,
    QuantizedTensor,
    dequantize,
    dequantize_params,
    is_quantized,
    quantize_int8,
    quantized_names,
)
from ..quantized_tensor import quantize_params as _quantize_int8_params
from ..tensor import Tensor, TensorError
from .errors import WeightsError

__all__ = [
    "METADATA",
    "METADATA_KEY",
    "QMAX",
    "SCALE_SUFFIX",
    "SCHEMES",
    "QuantizedTensor",
    "check_scheme",
    "dequantize",
    "dequantize_params",
    "is_quantized",
    "pack",
    "quantize_int8",
    "quantize_params",
    "quantized_names",
    "unpack",
]

SCHEMES = ("int8",)
SCALE_SUFFIX = "_scale"
METADATA_KEY = "gpt2.quantization"
METADATA = {METADATA_KEY: "int8", "gpt2.int8.scheme": "symmetric per output row: w = q * scale, |q| <= 127"}


def quantize_params(params: Mapping[str, Tensor], scheme: str = "int8") -> Params:
    """The tree with its projections and embedding table quantized (see
    :func:`gpt2.quantized_tensor.quantize_params`), after checking the scheme's name."""
    check_scheme(scheme)
    return _quantize_int8_params(params)


def check_scheme(scheme: str | None) -> None:
    if scheme is not None and scheme not in SCHEMES:
        raise WeightsError(f"unknown quantization {scheme!r}; choose {' or '.join(SCHEMES)}")


# --- the file layout ----------------------------------------------------------------------------


def pack(params: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, str]]:
    """The tensors to write (each quantized one as its I8 values, then `<name>_scale`) and the
    metadata to add: METADATA if anything is quantized, else nothing."""
    tensors: dict[str, Tensor] = {}
    for name, t in params.items():
        if isinstance(t, QuantizedTensor):
            tensors[name] = Tensor(t.shape, "I8", t.data)
            tensors[name + SCALE_SUFFIX] = t.scale
        else:
            tensors[name] = t
    return tensors, (dict(METADATA) if len(tensors) > len(params) else {})


def unpack(tensors: Mapping[str, Tensor], where: str) -> dict[str, Tensor]:
    """Pair each I8 tensor with its `<name>_scale` (a file written by `pack`); every other
    tensor passes through. A scale without its tensor, or an I8 tensor without scales that
    fit it, is a WeightsError."""
    out: dict[str, Tensor] = {}
    for name, t in tensors.items():
        if name.endswith(SCALE_SUFFIX) and name[: -len(SCALE_SUFFIX)] in tensors:
            continue
        if t.dtype != "I8":
            out[name] = t
            continue
        scale = tensors.get(name + SCALE_SUFFIX)
        if scale is None:
            raise WeightsError(f"{where}: int8 tensor {name!r} has no {name + SCALE_SUFFIX!r} beside it")
        try:
            q = QuantizedTensor(t.shape, "I8", t.data, scale)
        except TensorError as exc:
            raise WeightsError(f"{where}: {name!r}: {exc}") from None
        if not all(math.isfinite(s) and s >= 0 for s in scale.as_floats()):
            raise WeightsError(f"{where}: {name + SCALE_SUFFIX!r} holds a negative, infinite or NaN scale")
        out[name] = q
    for name in tensors:
        base = name[: -len(SCALE_SUFFIX)]
        if name.endswith(SCALE_SUFFIX) and base in tensors and tensors[base].dtype != "I8":
            raise WeightsError(f"{where}: {name!r} scales {base!r}, which is {tensors[base].dtype}, not I8")
    return out
