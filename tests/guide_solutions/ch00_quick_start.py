"""Chapter 0, quick start: the exercises, answered through the command line's own entry point."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

from gpt2.cli import main
from gpt2.config import Config


def run(*argv: str) -> str:
    """`gpt2 ARGV...` in this process; its standard output (it must succeed)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        status = main(list(argv))
    assert status == 0, (argv, out.getvalue())
    return out.getvalue()


def train_quick(data: Path, out: Path, steps: int) -> None:
    """Exercise 1: the quick start's run, for `steps` steps."""
    run(
        "train",
        "--data",
        str(data),
        "--config",
        "tiny",
        "--out",
        str(out),
        "--max-steps",
        str(steps),
        "--batch-size",
        "4",
        "--context-length",
        "64",
        "--lr",
        "3e-3",
        "--warmup-steps",
        "2",
        "--eval-interval",
        str(steps),
        "--eval-batches",
        "4",
        "--sample-interval",
        "0",
        "--quiet",
    )


def eval_loss(model: Path, data: Path) -> float:
    return float(json.loads(run("eval", "--model", str(model), "--data", str(data), "--json"))["loss"])


def greedy_ids(model: Path, engine: str, prompt: str = "It was", n: int = 12) -> list[int]:
    """Exercise 2: the ids `gpt2 generate --temperature 0 --json` produces with `engine`."""
    out = run(
        "generate",
        "--model",
        str(model),
        "--engine",
        engine,
        "--temperature",
        "0",
        "--max-new-tokens",
        str(n),
        "--json",
        prompt,
    )
    return list(json.loads(out)["samples"][0]["ids"])


def info_parameters(model: Path) -> int:
    """Exercise 3: the parameter count `gpt2 info --json` reports."""
    return int(json.loads(run("info", str(model), "--json"))["parameters"])


def token_table_share(config: Config) -> float:
    """Exercise 3: the share of the parameters in the token table wte."""
    return config.vocab_size * config.n_embd / config.num_parameters()
