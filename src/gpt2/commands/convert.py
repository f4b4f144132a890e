"""`gpt2 convert SRC DST`: any loadable model -> a Hugging Face style directory."""

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
    p = sub.add_parser(
        "convert",
        help="write any loadable model as config.json + model.safetensors",
        description=(
            "Load SRC (a hub name, an HF directory or file, or OpenAI's TensorFlow checkpoint) "
            "and write DST as a complete Hugging Face model directory (config.json, model.safetensors, the "
            "tokenizer files and generation_config.json), which transformers.pipeline('text-generation', "
            "model=DST) also loads. Dtypes are kept."
        ),
    )
    p.add_argument("src", help="gpt2 | gpt2-medium | gpt2-large | gpt2-xl, a directory, or a file")
    p.add_argument("dst", help="output directory (created if needed)")
    p.add_argument("--force", action="store_true", help="overwrite config.json / model.safetensors already in DST")
    add_n_head_argument(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..tokenizer import Tokenizer
    from ..weights import WeightsError, save_model
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
    tokenizer = Tokenizer.for_model(args.src)  # the source's own vocabulary files, else GPT-2's
    fits = tokenizer.n_vocab <= config.vocab_size
    save_model(
        dst, config, params, progress=BytesBar("model.safetensors", sys.stderr), tokenizer=tokenizer if fits else None
    )
    n = sum(t.numel for t in params.values())
    vocabulary = (
        "tokenizer files" if fits else f"no tokenizer files ({tokenizer.n_vocab} tokens do not fit the model's)"
    )
    print(f"wrote {dst}: config.json, model.safetensors ({n:,} parameters), {vocabulary}", file=sys.stderr)
    return 0
