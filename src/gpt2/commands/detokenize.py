"""`gpt2 detokenize`: GPT-2 token ids -> text."""

from __future__ import annotations

import argparse
import json
import re
import sys

from .common import read_stdin, write_text
from .tokenize import add_vocab_arguments, load_tokenizer

# More digits than any id can have; also keeps int() far from Python's 4300-digit limit.
_MAX_ID_DIGITS = 20


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "detokenize",
        help="turn GPT-2 token ids back into text",
        description="Turn GPT-2 token ids back into text. Ids are arguments, or read from stdin when none are "
        "given; separated by spaces, commas or newlines, or written as a JSON list (the output of "
        "`gpt2 tokenize --json` works too).",
    )
    p.add_argument("ids", nargs="*", metavar="IDS", help="token ids, e.g. 15496 995 or '[15496, 995]'")
    add_vocab_arguments(p)
    p.set_defaults(run=run)


def parse_token_ids(text: str) -> list[int]:
    """'15496, 995', '[15496, 995]', '15496\\n995' or `gpt2 tokenize --json` output -> [15496, 995]."""
    from ..tokenizer import TokenizerError

    text = text.strip()
    if text.startswith(("[", "{")):
        try:
            values = json.loads(text)
        except (ValueError, RecursionError) as exc:  # JSONDecodeError, a 5000-digit number, [[[[...
            raise TokenizerError(f"ids look like JSON but are not valid JSON ({exc})") from None
        if isinstance(values, dict):  # the object `gpt2 tokenize --json` prints
            values = values.get("ids")
        if not isinstance(values, list) or not all(type(v) is int for v in values):
            raise TokenizerError('expected a JSON list of integer ids (or an object with "ids": [...])')
        return values
    ids = []
    for word in re.split(r"[\s,]+", text):
        if not word:
            continue
        if not re.fullmatch(r"[+-]?[0-9]+", word):
            raise TokenizerError(f"not a token id: {word!r}")
        if len(word) > _MAX_ID_DIGITS:
            raise TokenizerError(f"token id {word[:_MAX_ID_DIGITS]}... is not in the vocabulary")
        ids.append(int(word))
    return ids


def run(args: argparse.Namespace) -> int:
    tokenizer = load_tokenizer(args)
    ids = parse_token_ids(" ".join(args.ids) if args.ids else read_stdin())
    text = tokenizer.decode(ids)
    write_text(text)
    if sys.stdout.isatty() and not text.endswith("\n"):
        sys.stdout.write("\n")
    return 0
