"""`gpt2 info MODEL`: a checkpoint's config, parameter count, dtype and file size."""

from __future__ import annotations

import argparse
import json

from .common import add_n_head_argument, download_progress, warn


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "info",
        help="show a model's config, parameter count, dtype and file size",
        description=(
            "Load and check a model (a hub name such as gpt2, a directory, or a weights file) "
            "and print its config, parameter count, dtypes and file size."
        ),
    )
    p.add_argument("model", help="gpt2 | gpt2-medium | gpt2-large | gpt2-xl, a directory, or a file")
    add_n_head_argument(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..weights.info import describe_model
    from .progress import human_bytes

    with download_progress() as progress:
        info = describe_model(args.model, progress=progress, n_head=args.n_head)
    if info.n_head_guessed:
        warn(
            args,
            f"{info.weights} has no config file beside it, so n_head={info.config.n_head} is a guess from "
            f"n_embd={info.config.n_embd}; pass --n-head N, or put a config.json beside the weights",
        )
    if args.json:
        print(json.dumps(info.to_dict(), indent=2))
        return 0
    c = info.config
    dtypes = ", ".join(f"{d} ({n} tensors)" for d, n in info.dtypes.items())
    rows = [
        ("model", info.source),
        ("format", f"{info.format}: {info.weights}"),
        (
            "config",
            f"n_layer={c.n_layer} n_embd={c.n_embd} n_head={c.n_head} vocab_size={c.vocab_size} n_ctx={c.n_ctx}",
        ),
        ("config from", _config_source(info, args.n_head)),
        ("parameters", f"{info.parameters:,}"),
        ("dtype", dtypes),
        ("file size", f"{human_bytes(info.file_size)} ({info.file_size:,} bytes)"),
    ]
    for key, value in rows:
        print(f"{key:<12} {value}")
    return 0


def _config_source(info, n_head: int | None) -> str:
    if info.config_file:
        return str(info.config_file)
    heads = "n_head guessed from the width" if info.n_head_guessed else f"n_head={n_head} from --n-head"
    return f"inferred from the tensor shapes ({heads})"
