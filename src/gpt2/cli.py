"""The `gpt2` command line: a thin dispatcher over one module per subcommand.

Each module in `gpt2.commands` defines `add_parser(subparsers)`, which registers
its subcommand and sets `run=` to a function taking the parsed arguments and
returning an exit status. Subcommands call typed library functions; the library
never prints. User mistakes arrive here as `Gpt2Error` and leave as one line on
stderr with exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from . import __version__
from .errors import Gpt2Error

# In the order `gpt2 --help` lists them.
COMMANDS = (
    "generate",
    "score",
    "tokenize",
    "detokenize",
    "info",
    "convert",
    "train",
    "eval",
    "verify",
    "serve",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gpt2",
        description="GPT-2 from first principles: generate, score, tokenize, convert, train, verify and serve.",
    )
    parser.add_argument("--version", action="version", version=f"gpt2 {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f".commands.{name.replace('-', '_')}", __package__)
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "run", None) is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.run(args) or 0)
    except Gpt2Error as exc:
        print(f"gpt2 {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"gpt2 {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `gpt2 generate ... | head`: the reader went away; that is not an error.
        sys.stdout = None
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
