"""`gpt2 eval`: validation loss and perplexity of any model on a text file.

gpt2 eval --model gpt2 --data tests/data/the-verdict.txt
gpt2 eval --model runs/tiny --data input.txt --split val --json
gpt2 eval --model gpt2 --data big.txt --max-batches 20      # a quick estimate
"""

from __future__ import annotations

import argparse
import json
import sys

from ..errors import Gpt2Error
from .common import add_json_argument, add_model_argument


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="loss and perplexity of a model on a text file (PyTorch)",
        description="Mean cross-entropy (nats per token) and perplexity of MODEL over "
        "non-overlapping windows of the text. It says up front how many tokens it will score "
        "(and how many tail tokens after the last whole window it leaves out), then shows "
        "progress with the time left.",
    )
    add_model_argument(p)
    p.add_argument("--data", required=True, metavar="FILE_OR_DIR", help="UTF-8 text file, or a directory of them")
    p.add_argument(
        "--split",
        choices=("all", "val"),
        default="all",
        help="all: the whole text (default); val: only the held-out tail `gpt2 train` validates on",
    )
    p.add_argument(
        "--val-fraction",
        type=float,
        default=0.1,
        metavar="X",
        help="with --split val: the share held out, as given to gpt2 train (default 0.1, train's default)",
    )
    p.add_argument(
        "--max-batches",
        type=int,
        default=None,
        metavar="N",
        help="score only N batches of windows, spread evenly over the text (default: every window)",
    )
    p.add_argument(
        "--context-length", type=int, default=None, metavar="N", help="tokens per window (default: the model's n_ctx)"
    )
    p.add_argument("--batch-size", type=int, default=8, metavar="N", help="windows per forward pass (default 8)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | mps (default auto)")
    p.add_argument("--cache-dir", metavar="DIR", help="token cache (default $XDG_CACHE_HOME/gpt2/tokens)")
    add_json_argument(p, "the result as JSON")
    p.set_defaults(run=run)


def describe_plan(plan) -> str:
    """The line said before scoring: what will be scored, and what will not."""
    what = "validation tail" if plan.split == "val" else "text"
    text = (
        f"scoring {plan.tokens:,} tokens of a {plan.text_tokens:,}-token {what}: "
        f"{plan.sequences:,} window{'s' * (plan.sequences != 1)} of {plan.context_length}"
    )
    if plan.sampled:
        text += " spread over the text (--max-batches)"
    if plan.dropped_tokens:
        text += f"; the last {plan.dropped_tokens:,} tokens (less than a window) are not scored"
    return text


def run(args: argparse.Namespace) -> int:
    try:
        from ..training import evaluate_text
    except ImportError as exc:
        raise Gpt2Error(f'eval needs PyTorch and NumPy ({exc}); pip install -e ".[torch]"') from None
    from ..tokenizer import Tokenizer
    from ..training.data import default_cache_dir
    from .progress import BytesBar

    if args.batch_size <= 0 or (args.context_length is not None and args.context_length <= 0):
        raise Gpt2Error("--batch-size and --context-length must be positive")
    bar = BytesBar("scoring windows", sys.stderr, amount="{:,}".format, rate_unit=" windows/s")

    def on_start(plan) -> None:
        if not args.quiet:
            print(describe_plan(plan), file=sys.stderr, flush=True)

    try:
        result = evaluate_text(
            args.model,
            args.data,
            tokenizer=Tokenizer.gpt2(),
            context_length=args.context_length,
            batch_size=args.batch_size,
            device=args.device,
            cache_dir=args.cache_dir or default_cache_dir(),
            split=args.split,
            val_fraction=args.val_fraction,
            max_batches=args.max_batches,
            on_start=on_start,
            progress=None if args.quiet else bar,
        )
    finally:
        bar.close()
    if args.json:
        print(json.dumps({"model": args.model, "data": str(args.data), **result.to_dict()}))
    else:
        dropped = f"; {result.dropped_tokens:,} tail tokens not scored" if result.dropped_tokens else ""
        print(
            f"loss {result.loss:.4f}  perplexity {result.perplexity:.2f}  "
            f"({result.tokens:,} tokens in {result.sequences:,} window{'s' * (result.sequences != 1)} "
            f"of {result.context_length}{', validation tail' if result.split == 'val' else ''}{dropped})"
        )
    return 0
