"""The best model by validation loss, kept beside the last one, and the sign of overfitting.

A run directory's root always holds the model of its newest checkpoint: the one `--resume`
continues, and the one `gpt2 generate --model RUN` loads (so the root never goes back in
time, and stays in step with `train_state.pt`). Whenever an evaluation's validation loss
is the lowest of the run so far, the trainer also exports the model to `RUN/best/`, a
complete Hugging Face directory of its own (`gpt2 generate --model RUN/best`), whose
safetensors metadata records its `step` and `val_loss`. The first evaluation (step 0)
counts: after `--init`, the model before any fine-tuning step may stay the best one.

When the validation loss has stayed above its best for `PATIENCE` evaluations in a row
while training went on, the model is probably learning its training text by heart; the
trainer then emits one `ValidationRising` event per run (the command line prints it as a
warning). What the tracker knows is saved with the checkpoint, so a resumed run warns
and keeps the best exactly as a run that was never stopped.

>>> b = BestValidation()
>>> [b.observe(s, v, 0.0) for s, v in [(0, 10.8), (100, 6.0), (200, 5.6), (300, 5.8), (400, 5.7)]]
[True, True, True, False, False]
>>> b.step, b.loss, b.evaluations_since, b.rising
(200, 5.6, 2, False)
>>> b.observe(500, 5.9, 0.0), b.rising, b.warn_once(), b.warn_once()
(False, True, True, False)
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import Config
from ..params import Params
from . import checkpoint
from .errors import CheckpointError
from .events import Notice, ValidationRising

BEST_DIR = "best"  # inside the run directory
# Evaluations in a row above the best before the warning: one or two can be noise (a
# validation set of a few windows moves by a few hundredths), three is a trend.
PATIENCE = 3


@dataclass
class BestValidation:
    """The lowest validation loss of a run so far, and how many evaluations have not beaten it."""

    step: int | None = None
    loss: float | None = None
    train_loss: float | None = None  # the training loss measured at that evaluation
    evaluations_since: int = 0
    warned: bool = False

    def observe(self, step: int, val_loss: float, train_loss: float) -> bool:
        """Record an evaluation; True when it is the new best (its model should be kept)."""
        if self.loss is None or val_loss < self.loss:
            self.step, self.loss, self.train_loss, self.evaluations_since = step, val_loss, train_loss, 0
            return True
        self.evaluations_since += 1
        return False

    @property
    def rising(self) -> bool:
        return self.evaluations_since >= PATIENCE

    def warn_once(self) -> bool:
        """True the first time (in the run, resumes included) the loss has been rising."""
        if self.rising and not self.warned:
            self.warned = True
            return True
        return False

    def state_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_state(cls, state: dict[str, Any] | None) -> BestValidation:
        """From `state_dict()`; an empty tracker for checkpoints written before it existed."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in (state or {}).items() if k in names})


def export_best(
    out: Path, config: Config, params: Params, step: int, val_loss: float, chat_template: str | None = None
) -> Path:
    """Write the model to `out/best/` (each file atomically; raises CheckpointError)."""
    directory = out / BEST_DIR
    checkpoint.export_model(
        directory, config, params, step, metadata={"val_loss": repr(val_loss)}, chat_template=chat_template
    )
    return directory


def best_on_disk(out: Path) -> tuple[int, float] | None:
    """(step, validation loss) of the model in `out/best/` (None: none, or unreadable)."""
    meta = checkpoint.exported_metadata(out / BEST_DIR)
    try:
        return int(meta["step"]), float(meta["val_loss"])
    except (KeyError, ValueError):
        return None


def forget_best_after(out: Path, step: int) -> int | None:
    """A killed run may have exported a best model after its last checkpoint; the resumed run
    forgets those steps (as its log does) and will find that model again if it retraces them.
    Removes such a `best/`; returns its step (None: nothing to forget)."""
    found = best_on_disk(out)
    if found is None or found[0] <= step:
        return None
    shutil.rmtree(out / BEST_DIR, ignore_errors=True)
    return found[0]


class BestKeeper:
    """A run's best model: the tracker, its export to `out/best/` (main process only) and the
    one warning. Export failures are warnings: the checkpoints are not at stake."""

    def __init__(self, out: Path, state: dict[str, Any] | None, is_main: bool, emit: Callable[[Any], None]) -> None:
        self.out, self.is_main, self.emit = out, is_main, emit
        self.tracker = BestValidation.from_state(state)
        self.chat_template: str | None = None  # instruction tuning's template, for the export

    def forget_after(self, step: int) -> None:
        """On resume: see `forget_best_after`."""
        forgotten = forget_best_after(self.out, step) if self.is_main else None
        if forgotten is not None:
            self.emit(
                Notice(
                    f"{self.out / BEST_DIR} held the model of step {forgotten}, after the checkpoint this run "
                    f"resumes from (step {step}); it was removed and is kept again if the run beats it"
                )
            )

    def observe(self, step: int, val_loss: float | None, train_loss: float) -> bool:
        return val_loss is not None and self.tracker.observe(step, val_loss, train_loss)

    def keep(self, config: Config, params: Callable[[], Params], step: int, val_loss: float) -> None:
        """Export the model of a new best (`params()` is called on the main process only)."""
        if not self.is_main:
            return
        try:
            export_best(self.out, config, params(), step, val_loss, self.chat_template)
        except CheckpointError as exc:
            self.emit(Notice(f"{exc}; training goes on"))

    def warn_if_rising(self, step: int, val_loss: float | None, train_loss: float) -> None:
        b = self.tracker
        if val_loss is None or b.step is None or b.loss is None or not b.warn_once():
            return
        where = self.directory()
        self.emit(
            ValidationRising(step, val_loss, train_loss, b.step, b.loss, b.train_loss, b.evaluations_since, where)
        )

    def directory(self) -> str | None:
        """out/best when it holds the tracker's best model (None: it does not, or not this process)."""
        found = best_on_disk(self.out) if self.is_main else None
        return str(self.out / BEST_DIR) if found is not None and found[0] == self.tracker.step else None
