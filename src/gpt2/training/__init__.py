"""Training and fine-tuning GPT-2 with PyTorch (optional: needs torch, numpy; matplotlib for plots).

>>> from gpt2.training import train, TrainConfig, evaluate_text   # doctest: +SKIP
>>> train("input.txt", "run/", tokenizer=Tokenizer.gpt2(), options={"max_steps": 200})  # doctest: +SKIP

Modules, in the order data flows: `data` (text -> cached tokens -> windows ->
seeded order), `config` (TrainConfig), `schedule`, `optim`, `threads` (the
run's thread count), `loop` (the trainer, and what its state holds), `resume`
(where a run starts), `checkpoint` (atomic files), `best` (the best model by
validation loss), `metrics` (log + plot), `evaluate`,
`distributed` (torchrun / DDP), `events` (what the trainer reports).
"""

from .config import TrainConfig
from .errors import CheckpointError, DataError, TrainConfigError, TrainingInterrupted
from .evaluate import EvalPlan, EvalResult, evaluate_text
from .events import CheckpointSaved, Evaluated, Notice, StepDone, Tokenizing, TrainStarted, ValidationRising
from .loop import TrainResult, train

__all__ = [
    "train",
    "TrainConfig",
    "TrainResult",
    "evaluate_text",
    "EvalResult",
    "EvalPlan",
    "Tokenizing",
    "TrainStarted",
    "StepDone",
    "Evaluated",
    "CheckpointSaved",
    "ValidationRising",
    "Notice",
    "DataError",
    "CheckpointError",
    "TrainConfigError",
    "TrainingInterrupted",
]
