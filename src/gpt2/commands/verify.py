"""`gpt2 verify`: check every component of the pure engine against NumPy and PyTorch."""

from __future__ import annotations

import argparse
import json
import sys

from .common import add_json_argument
from .progress import Bar


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "verify",
        help="check every component of the pure engine against NumPy and PyTorch references",
        description=(
            "Run each component of the pure-Python engine (every op, a block, the decoder, the full "
            "forward pass, cached against uncached decoding) and independent references written with "
            "NumPy (float64, tolerance 1e-9) and PyTorch (float32, tolerance 1e-4) on the same random "
            "inputs and weights, and print a table; then check the NumPy and PyTorch engines against the "
            "pure one (tolerance 1e-4). The error is max |pure - reference| / max |reference|. "
            "Exits 1 if any check fails or no reference could run."
        ),
    )
    add_json_argument(p, "the table as one JSON object")
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs and weights (default 0)")
    p.add_argument(
        "--reference",
        action="append",
        choices=["numpy", "torch"],
        help="compare against this reference only (repeatable; default both)",
    )
    p.add_argument(
        "--config",
        metavar="PRESET|JSON|DIR",
        help="model size to verify at: a preset name, a config.json or a model directory "
        "(default: a small 2-layer model)",
    )
    p.set_defaults(run=run)


class StageBars:
    """verify's `progress(stage, done, total)`: one bar per stage on stderr (a line every
    5% off a terminal); random weights are counted in parameters."""

    def __init__(self, stream) -> None:
        self.stream = stream
        self.bar: Bar | None = None

    def __call__(self, stage: str, done: int, total: int) -> None:
        if self.bar is None or self.bar.label != stage:
            self.close()
            count = "{:,}".format
            unit = " parameters/s" if stage == "random weights" else f" {stage}/s"
            self.bar = Bar(stage, total, self.stream, amount=count, rate_unit=unit)
        self.bar.update(done, total)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run(args: argparse.Namespace) -> int:
    from ..config import Config
    from ..errors import install_hint
    from ..verify import VERIFY_CONFIG, format_table, run_verification

    config = Config.from_spec(args.config) if args.config else VERIFY_CONFIG
    progress = StageBars(sys.stderr)
    try:
        report = run_verification(
            references=tuple(args.reference or ("numpy", "torch")), config=config, seed=args.seed, progress=progress
        )
    finally:
        progress.close()
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        c = config
        print(
            f"Pure engine vs references: {c.n_layer} layers, n_embd {c.n_embd}, {c.n_head} heads, "
            f"vocab {c.vocab_size}, seed {args.seed}\n"
        )
        print(format_table(report))
        for name, why in report.unavailable.items():
            print(f"\nreference {name} unavailable: {why}")
        passed = sum(r.status == "pass" for r in report.rows)
        failed = sum(r.status == "fail" for r in report.rows)
        print(f"\n{passed} passed, {failed} failed" + ("" if report.ok else "  -> NOT VERIFIED"))
        if not report.references_ran:
            print(
                "\nNOT VERIFIED: no reference could run, so only the pure engine's cache was checked "
                f"against itself. Install one: {install_hint('numpy')} (or torch)."
            )
    return 0 if report.ok else 1
