"""`gpt2 tokenize`: text -> GPT-2 token ids, showing the piece of text each id stands for."""

from __future__ import annotations

import argparse
import json
import os
import sys

from .common import DEFAULT_MODEL, add_json_argument, add_model_argument, plural, read_stdin, write_text

# Alternating background colours for the pieces on a terminal (256-colour palette).
_COLOURS = (153, 223, 194, 217, 189)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tokenize",
        help="turn text into GPT-2 token ids",
        description="Turn text into GPT-2 token ids and show the piece each id stands for "
        "(coloured on a terminal, in [brackets] otherwise). Reads stdin when TEXT is not given.",
    )
    p.add_argument(
        "text", nargs="*", metavar="TEXT", help="the text (words are joined by spaces); '-' or nothing reads stdin"
    )
    add_json_argument(p, 'one JSON object: {"ids": [...], "tokens": [...], "count": n}')
    p.add_argument("--ids", action="store_true", help="print only the ids (pipe them into `gpt2 detokenize`)")
    p.add_argument(
        "--allow-special",
        action="store_true",
        help="encode <|endoftext|> as the special token 50256 instead of refusing it",
    )
    add_vocab_arguments(p)
    p.set_defaults(run=run)


def add_vocab_arguments(p: argparse.ArgumentParser) -> None:
    """-m/--model (its tokenizer) and --vocab (a vocabulary by path): tokenize and detokenize."""
    add_model_argument(
        p,
        help="use this model's tokenizer: the vocabulary files in its directory, else GPT-2's "
        f"(default {DEFAULT_MODEL}; no weights are read)",
    )
    p.add_argument(
        "--vocab",
        metavar="PATH",
        help="a directory (encoder.json + vocab.bpe, vocab.json + merges.txt) "
        "or a .tiktoken file (default: the model's, GPT-2's for the published models)",
    )


def load_tokenizer(args: argparse.Namespace):
    from ..tokenizer import Tokenizer

    return Tokenizer.load(args.vocab) if args.vocab else Tokenizer.for_model(args.model)


def check_argument(text: str) -> str:
    """TEXT from the command line: bytes that were not UTF-8 arrive as lone surrogates
    (Python's surrogateescape); refuse them as stdin's are refused."""
    from ..tokenizer import TokenizerError

    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        byte = ord(text[exc.start]) - 0xDC00  # surrogateescape maps byte b to U+DC00 + b
        shown = f"byte 0x{byte:02x}" if 0x80 <= byte <= 0xFF else f"U+{ord(text[exc.start]):04X}"
        raise TokenizerError(f"TEXT is not UTF-8 text ({shown} at character {exc.start})") from None
    return text


def show_piece(piece: str) -> str:
    """Make whitespace you could not otherwise see visible: a newline is shown as \\n."""
    return piece.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")


def render(pieces: list[str], colour: bool) -> str:
    if colour:
        return "".join(
            f"\x1b[30;48;5;{_COLOURS[i % len(_COLOURS)]}m{show_piece(p)}\x1b[0m" for i, p in enumerate(pieces)
        )
    return "".join(f"[{show_piece(p)}]" for p in pieces)


def run(args: argparse.Namespace) -> int:
    from ..tokenizer import TokenizerError

    tokenizer = load_tokenizer(args)
    text = read_stdin() if args.text in ([], ["-"]) else check_argument(" ".join(args.text))
    if not args.allow_special:
        for special in sorted(tokenizer.special_tokens_set):
            if special in text:
                raise TokenizerError(
                    f"the text contains the special token {special}; pass --allow-special to encode it as one token"
                )
    ids = tokenizer.encode(text, allowed_special="all" if args.allow_special else frozenset())
    pieces = tokenizer.decode_pieces(ids)
    if args.json:
        write_text(json.dumps({"ids": ids, "tokens": pieces, "count": len(ids)}, ensure_ascii=False) + "\n")
    elif args.ids:
        print(" ".join(map(str, ids)))
    else:
        colour = sys.stdout.isatty() and "NO_COLOR" not in os.environ
        print(" ".join(map(str, ids)))
        write_text(render(pieces, colour) + "\n")
        print(f"{plural(len(ids), 'token')}, {plural(len(text), 'character')}", file=sys.stderr)
    return 0
