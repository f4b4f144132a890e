"""`gpt2 models`: the models you can name with --model.

    gpt2 models
    gpt2 models --json

The presets (the four published sizes, which come from the Hugging Face hub on
first use, and `tiny`, which only training makes), the models that ship with
the package, and the GPT-2 models already in the Hugging Face cache, with their
size on disk.
"""

from __future__ import annotations

import argparse
import json

from .common import add_json_argument


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "models",
        help="list the presets, packaged models and GPT-2 models in the Hugging Face cache",
        description=(
            "List what --model accepts by name: the presets (gpt2 ... gpt2-xl are fetched from the "
            "Hugging Face hub on first use), the models shipped with the package, and the GPT-2 models "
            "in the Hugging Face cache ($HF_HOME/hub) with their size on disk. A directory or a weights "
            "file works as --model too."
        ),
    )
    add_json_argument(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..weights import HubSettings
    from ..weights.info import list_models
    from .progress import human_bytes

    settings = HubSettings.from_env()
    entries = list_models(settings)
    if args.json:
        print(json.dumps({"cache_dir": str(settings.cache_dir), "models": [e.to_dict() for e in entries]}, indent=2))
        return 0
    rows = [("name", "kind", "parameters", "layers x width / heads", "on disk", "")]
    for e in entries:
        c = e.config
        rows.append(
            (
                e.name,
                e.kind,
                f"{e.parameters / 1e6:,.1f}M" if e.parameters else "?",
                f"{c.n_layer} x {c.n_embd} / {c.n_head}" if c else "?",
                human_bytes(e.size_bytes) if e.size_bytes else "-",
                "; ".join(e.notes),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(value.ljust(w) for value, w in zip(r, widths)).rstrip())
    print(f"\nHugging Face cache: {settings.cache_dir}")
    return 0
