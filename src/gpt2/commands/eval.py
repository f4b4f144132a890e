"""`gpt2 eval`: validation loss and perplexity of any model on a text file.

gpt2 eval --model gpt2 --data ../shared/data/the-verdict.txt
gpt2 eval --model runs/tiny --data input.txt --json
"""

from __future__ import annotations

import argparse
import json
import sys

from ..errors import Gpt2Error
from .common import add_model_argument


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="loss and perplexity of a model on a text file (PyTorch)",
        description="Mean cross-entropy (nats per token) and perplexity of MODEL over "
        "non-overlapping windows of the text.",
    )
    add_model_argument(p)
    p.add_argument("--data", required=True, metavar="FILE_OR_DIR", help="UTF-8 text file, or a directory of them")
    p.add_argument(
        "--context-length", type=int, default=None, metavar="N", help="tokens per window (default: the model's n_ctx)"
    )
    p.add_argument("--batch-size", type=int, default=8, metavar="N", help="windows per forward pass (default 8)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | mps (default auto)")
    p.add_argument("--cache-dir", metavar="DIR", help="token cache (default $XDG_CACHE_HOME/gpt2/tokens)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(run=run)


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
    result = evaluate_text(
        args.model,
        args.data,
        tokenizer=Tokenizer.gpt2(),
        context_length=args.context_length,
        batch_size=args.batch_size,
        device=args.device,
        cache_dir=args.cache_dir or default_cache_dir(),
        progress=BytesBar("scoring windows", sys.stderr, amount="{:,}".format) if sys.stderr.isatty() else None,
    )
    if args.json:
        print(json.dumps({"model": args.model, "data": str(args.data), **result.to_dict()}))
    else:
        print(
            f"loss {result.loss:.4f}  perplexity {result.perplexity:.2f}  "
            f"({result.tokens:,} tokens in {result.sequences:,} window{'s' * (result.sequences != 1)} "
            f"of {result.context_length})"
        )
    return 0
