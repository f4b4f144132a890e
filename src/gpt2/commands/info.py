"""`gpt2 info MODEL`: a model's config, parameter count, dtype and file size.

gpt2 info                 # gpt2: its config.json alone is fetched if it is not cached
gpt2 info tiny            # a preset: config and parameter count, nothing read
gpt2 info runs/tiny --json
"""

from __future__ import annotations

import argparse
import json

from .common import DEFAULT_MODEL, add_json_argument, add_model_argument, add_n_head_argument, download_progress, warn


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "info",
        help="show a model's config, parameter count, dtype and file size",
        description=(
            "Describe a model: a preset (tiny, gpt2, ...), a hub name, a directory or a weights file. "
            "A local model is loaded and checked; a hub model that is not in the cache is described from "
            "its config.json alone (fetched, kilobytes), without downloading the weights."
        ),
    )
    p.add_argument("name", nargs="?", metavar="MODEL", help=f"the model (the same as --model; default {DEFAULT_MODEL})")
    add_model_argument(p)
    add_n_head_argument(p)
    add_json_argument(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import Gpt2Error
    from ..weights.info import describe_model
    from .progress import human_bytes

    if args.name is not None and args.model != DEFAULT_MODEL and args.name != args.model:
        raise Gpt2Error("give the model once: as MODEL or as --model")
    model = args.name if args.name is not None else args.model
    with download_progress() as progress:
        info = describe_model(model, progress=progress, n_head=args.n_head)
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
    if info.config_file:
        origin = str(info.config_file)
    elif info.format == "preset":
        origin = "the preset (no weights: `gpt2 train --config NAME` makes some)"
    elif not info.n_head_guessed:
        origin = f"inferred from the tensor shapes (n_head={c.n_head} from --n-head)"
    else:
        origin = "inferred from the tensor shapes (n_head guessed from the width: a wrong guess changes the output)"
    rows = [
        ("model", info.source),
        ("format", f"{info.format}: {info.weights}" if info.weights else info.format),
        (
            "config",
            f"n_layer={c.n_layer} n_embd={c.n_embd} n_head={c.n_head} vocab_size={c.vocab_size} n_ctx={c.n_ctx}",
        ),
        ("config from", origin),
        ("parameters", f"{info.parameters:,}" + (f" ({info.parameters / 1e6:.1f}M)" if info.parameters >= 1e6 else "")),
    ]
    if info.weights is not None:
        rows.append(("dtype", ", ".join(f"{d} ({n} tensors)" for d, n in info.dtypes.items())))
    if info.file_size is not None:
        rows.append(("file size", f"{human_bytes(info.file_size)} ({info.file_size:,} bytes)"))
    elif info.format.startswith("hub"):
        rows.append(("weights", f"not downloaded (float32: about {human_bytes(4 * info.parameters)})"))
    for key, value in rows:
        print(f"{key:<12} {value}")
    return 0
