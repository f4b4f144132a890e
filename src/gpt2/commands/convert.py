"""`gpt2 convert SRC DST`: any loadable model -> a Hugging Face style directory, optionally in
half precision (`--dtype`) or with int8 weights (`--quantize int8`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import add_n_head_argument, load_model_for

# what convert writes into DST: a complete Hugging Face model directory (see save_model)
OUTPUTS = (
    "model.safetensors",
    "config.json",
    "vocab.json",
    "merges.txt",
    "tokenizer_config.json",
    "generation_config.json",
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    from ..weights.half import DTYPES
    from ..weights.quantized import SCHEMES

    p = sub.add_parser(
        "convert",
        help="write any loadable model as config.json + model.safetensors (also in bf16, fp16 or int8)",
        description=(
            "Load SRC (a hub name, an HF directory or file, or OpenAI's TensorFlow checkpoint) "
            "and write DST as a complete Hugging Face model directory (config.json, model.safetensors, the "
            "tokenizer files and generation_config.json), which transformers.pipeline('text-generation', "
            "model=DST) also loads. Dtypes are kept unless --dtype says otherwise. --quantize int8 stores "
            "the projections and the embedding table in one byte a weight with a float32 scale per output "
            "row (docs/precision.md): every engine of this project loads that file; transformers does not."
        ),
    )
    p.add_argument("src", help="gpt2 | gpt2-medium | gpt2-large | gpt2-xl, a directory, or a file")
    p.add_argument("dst", help="output directory (created if needed)")
    p.add_argument(
        "--dtype",
        choices=tuple(DTYPES),
        default=None,
        help="store the weights as float32, bfloat16 or float16 (half the size), rounded to nearest",
    )
    p.add_argument(
        "--quantize",
        choices=SCHEMES,
        default=None,
        help="int8: quantize the projections and the embedding table (a quarter of fp32's size)",
    )
    p.add_argument("--force", action="store_true", help="overwrite config.json / model.safetensors already in DST")
    add_n_head_argument(p)
    p.set_defaults(run=run, model_form="gpt2 convert {} DST")  # how an error names a model to use instead


def run(args: argparse.Namespace) -> int:
    from ..tokenizer import Tokenizer
    from ..weights import WeightsError, save_model
    from ..weights.half import cast_params
    from ..weights.quantized import quantize_params
    from .progress import BytesBar

    if not args.dst.strip():  # checked before loading, which may mean a download
        raise WeightsError("DST is empty; give the output directory")
    dst = Path(args.dst)
    if not args.force:
        for name in OUTPUTS:  # a config.json alone would be silently replaced too
            if (dst / name).exists():
                raise WeightsError(f"{dst / name} already exists (use --force to overwrite)")
    loaded = load_model_for(args, args.src)  # warns if the head count written to config.json is a guess
    config, params = loaded.config, loaded.params
    if args.dtype:  # int8 tensors already in SRC keep their int8 values and scales
        params = cast_params(params, args.dtype)
    if args.quantize:
        params = quantize_params(params, args.quantize)
    tokenizer = Tokenizer.for_model(args.src)  # the source's own vocabulary files, else GPT-2's
    fits = tokenizer.n_vocab <= config.vocab_size
    save_model(
        dst, config, params, progress=BytesBar("model.safetensors", sys.stderr), tokenizer=tokenizer if fits else None
    )
    n = sum(t.numel for t in params.values())
    size = (dst / "model.safetensors").stat().st_size
    vocabulary = (
        "tokenizer files" if fits else f"no tokenizer files ({tokenizer.n_vocab} tokens do not fit the model's)"
    )
    print(
        f"wrote {dst}: config.json, model.safetensors ({n:,} parameters, {size / 1e6:.1f} MB), {vocabulary}",
        file=sys.stderr,
    )
    return 0
