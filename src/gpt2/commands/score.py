"""`gpt2 score TEXT | --file F`: how probable a model finds a text, token by token.

    gpt2 score "The quick brown fox jumps over the lazy dog"
    gpt2 score --file tests/data/the-verdict.txt --engine numpy --json

Prints each token with its log-probability (natural log) given the tokens
before it, then the mean negative log-likelihood and the perplexity
exp(mean NLL). Texts longer than the context window are scored with a
sliding window (see `gpt2.scoring`).
"""

from __future__ import annotations

import argparse
import json

from .common import (
    add_engine_arguments,
    add_json_argument,
    engine_name,
    model_tokenizer,
    open_engine,
    plural,
    words_or_stdin,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "score",
        help="per-token log-probabilities and perplexity of a text",
        description=(
            "Score TEXT (or --file F; '-' or nothing reads stdin): each token's log-probability "
            "given the tokens before it, and the text's perplexity. Texts longer than the context "
            "window are scored with a sliding window of stride --stride."
        ),
    )
    p.add_argument("text", nargs="*", help="the text (words are joined by spaces); '-' or nothing reads stdin")
    p.add_argument("--file", "-f", default=None, help="read the text from this file (UTF-8)")
    add_engine_arguments(p)
    p.add_argument("--stride", type=int, default=None, help="sliding-window step for long texts (default n_ctx // 2)")
    p.add_argument("--bos", action="store_true", help="prepend <|endoftext|> so that the first token is scored too")
    add_json_argument(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import Gpt2Error
    from ..scoring import score
    from .text_input import read_text_file

    engine_name(args)  # fail fast on a bad engine
    if args.file is not None:
        if args.text:
            raise Gpt2Error("give the text or --file, not both")
        text = read_text_file(args.file, "the file")
    else:
        text = words_or_stdin(args.text)
    tokenizer = model_tokenizer(args)
    ids = tokenizer.encode(text, allowed_special="all")
    engine = open_engine(args)
    try:
        result = score(engine, ids, stride=args.stride, prepend_eot=args.bos)
    finally:
        engine.close()
    pieces = [tokenizer.decode([t]) for t in result.ids[1:]]
    if args.json:
        print(
            json.dumps(
                {
                    "ids": result.ids,
                    "tokens": pieces,
                    "logprobs": result.logprobs,
                    "nll": result.nll,
                    "perplexity": result.perplexity,
                    "windows": result.windows,
                    "engine": engine.name,
                    "model": args.model,
                },
                ensure_ascii=False,
            )
        )
        return 0
    for piece, lp in zip(pieces, result.logprobs):
        print(f"{lp:10.4f}  {piece!r}")
    print(
        f"{plural(len(result.logprobs), 'token')} scored, mean NLL {result.nll:.4f} nats, "
        f"perplexity {result.perplexity:.3f} [{engine.name}, {args.model}]"
    )
    return 0
