"""The training pipeline's typed errors (user mistakes: one line, exit status 2)."""

from __future__ import annotations

from ..errors import Gpt2Error


class DataError(Gpt2Error, ValueError):
    """The training text is missing, empty, binary, or too short for the context length."""


class CheckpointError(Gpt2Error, OSError):
    """A checkpoint could not be written or read, or does not match this run."""


class TrainConfigError(Gpt2Error, ValueError):
    """A training hyper-parameter is impossible (negative learning rate, context > n_ctx, ...)."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training. Its message says where the run stopped and which checkpoint
    is safe on disk; being a KeyboardInterrupt, it still stops everything that does not
    look for it."""
