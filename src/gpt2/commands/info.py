"""`gpt2 info` (not built yet)."""

from __future__ import annotations

import argparse
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="(not built yet)", description="Not built yet.")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    print("gpt2 info: not built yet", file=sys.stderr)
    return 2
