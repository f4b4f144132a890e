"""The metrics log (JSON lines, one record per line) and the loss plot.

Records are plain dicts with a "kind":

    {"kind": "train", "step": 12, "loss": 4.21, "lr": 0.0003, "tokens": 49152, "tokens_per_s": 8123.4}
    {"kind": "eval", "step": 50, "train_loss": 3.9, "val_loss": 4.1, "val_perplexity": 60.3, "sample": "..."}

A resumed run first drops the records after its checkpoint's step (a killed run may
have logged steps it never saved), so the log always describes one straight run.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path

from ..atomic import atomic_write_bytes, atomic_writer

METRICS_FILE = "metrics.jsonl"
PLOT_FILE = "loss.png"


class MetricsLog:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def append(self, record: dict) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def records(self) -> list[dict]:
        return read_metrics(self.path)

    def truncate_after(self, step: int) -> None:
        """Keep only records of steps <= `step` (atomically rewritten)."""
        kept = [r for r in self.records() if r.get("step", 0) <= step]
        atomic_write_bytes(self.path, "".join(json.dumps(r) + "\n" for r in kept).encode())

    def reset(self) -> None:
        if self.path.exists():
            os.unlink(self.path)


def read_metrics(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut by a kill mid-write
            continue
    return out


def _quiet_pyplot():
    """matplotlib.pyplot drawing to files only. When $HOME is not writable matplotlib logs
    two warnings on import and uses a temporary directory, which is all a plot needs:
    its logger is hushed for the import so the training output stays clean."""
    log = logging.getLogger("matplotlib")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only, never a window
        import matplotlib.pyplot as plt
    finally:
        log.setLevel(level)
    return plt


def plot_losses(records: Iterable[dict], path: str | Path, title: str = "training loss") -> None:
    """Train loss per step and validation loss per evaluation, written atomically as PNG.
    Raises ImportError when matplotlib is not installed."""
    plt = _quiet_pyplot()

    records = list(records)
    train = [(r["step"], r["loss"]) for r in records if r.get("kind") == "train"]
    evals = [r for r in records if r.get("kind") == "eval"]
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=100)
    try:
        if train:
            ax.plot(*zip(*train), lw=0.8, alpha=0.6, label="train (batch)")
        if evals:
            ax.plot([r["step"] for r in evals], [r["train_loss"] for r in evals], "o-", ms=3, label="train (eval)")
            if any(r.get("val_loss") is not None for r in evals):
                pts = [(r["step"], r["val_loss"]) for r in evals if r.get("val_loss") is not None]
                ax.plot(*zip(*pts), "s-", ms=3, label="validation")
        ax.set_xlabel("step")
        ax.set_ylabel("cross-entropy (nats/token)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        with atomic_writer(path) as f:
            fig.savefig(f, format="png")
    finally:
        plt.close(fig)
