"""`gpt2 info MODEL`: a checkpoint's config, parameter count, dtype and file size."""

from __future__ import annotations

import argparse
import json
import sys


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
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..weights.info import describe_model
    from .progress import DownloadBar, human_bytes

    info = describe_model(args.model, progress=DownloadBar(sys.stderr))
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
        ("config from", str(info.config_file) if info.config_file else "inferred from the tensor shapes"),
        ("parameters", f"{info.parameters:,}"),
        ("dtype", dtypes),
        ("file size", f"{human_bytes(info.file_size)} ({info.file_size:,} bytes)"),
    ]
    for key, value in rows:
        print(f"{key:<12} {value}")
    return 0
