"""`gpt2 convert SRC DST`: any loadable model -> a Hugging Face style directory."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import add_n_head_argument, load_model_for

OUTPUTS = ("model.safetensors", "config.json")  # what convert writes into DST


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert",
        help="write any loadable model as config.json + model.safetensors",
        description=(
            "Load SRC (a hub name, an HF directory or file, or OpenAI's TensorFlow checkpoint) "
            "and write DST/config.json and DST/model.safetensors, which "
            "transformers.GPT2LMHeadModel.from_pretrained(DST) also loads. Dtypes are kept."
        ),
    )
    p.add_argument("src", help="gpt2 | gpt2-medium | gpt2-large | gpt2-xl, a directory, or a file")
    p.add_argument("dst", help="output directory (created if needed)")
    p.add_argument("--force", action="store_true", help="overwrite config.json / model.safetensors already in DST")
    add_n_head_argument(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
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
    save_model(dst, config, params, progress=BytesBar("model.safetensors", sys.stderr))
    n = sum(t.numel for t in params.values())
    print(f"wrote {dst}/config.json and {dst}/model.safetensors ({n:,} parameters)", file=sys.stderr)
    return 0
