"""What the trainer reports. The library never prints: it hands these to a callback,
and the command line (or a notebook, or a test) decides how to show them."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Tokenizing:
    """The text is not in the token cache yet: tokenising it may take a while (once)."""

    files: int
    characters: int


@dataclass(frozen=True)
class TrainStarted:
    step: int  # the first step to run (0, or the checkpoint's step on resume)
    max_steps: int
    parameters: int
    train_tokens: int
    val_tokens: int
    tokens_per_step: int
    device: str
    world_size: int
    resumed: bool
    train_config: dict = field(default_factory=dict)  # the resolved TrainConfig, as a dict


@dataclass(frozen=True)
class StepDone:
    step: int  # steps completed so far (1-based)
    max_steps: int
    loss: float
    lr: float
    tokens_per_s: float
    seconds: float = 0.0  # this step's wall time


@dataclass(frozen=True)
class Evaluated:
    step: int
    train_loss: float
    val_loss: float | None
    val_perplexity: float | None
    sample: str | None
    best: bool = False  # the lowest validation loss of the run so far (its model goes to RUN/best)


@dataclass(frozen=True)
class ValidationRising:
    """The validation loss has stayed above its best for `evaluations` evaluations in a row
    (`gpt2.training.best.PATIENCE`) while training went on: the model is probably learning
    the training text by heart (overfitting). Emitted once per run; the best model so far is
    in `best_directory` (None: it could not be saved)."""

    step: int
    val_loss: float
    train_loss: float
    best_step: int
    best_val_loss: float
    best_train_loss: float | None
    evaluations: int
    best_directory: str | None


@dataclass(frozen=True)
class CheckpointSaved:
    step: int
    directory: str


@dataclass(frozen=True)
class Notice:
    """Something the user should know once (for example: no matplotlib, no loss plot)."""

    message: str
