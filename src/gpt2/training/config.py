"""`TrainConfig`: every training hyper-parameter, in one frozen dataclass.

It is saved in the checkpoint, so `--resume` continues with the same settings;
options given again on the command line override the saved ones.

>>> s = TrainConfig(max_steps=100)
>>> s.resolved(n_ctx=256).context_length, s.resolved(n_ctx=256).warmup_steps
(256, 10)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import TrainConfigError

DTYPES = ("float32", "bfloat16", "float16")
# Seeds feed torch generators (64-bit) after mixing with the epoch; 32 bits leaves room.
MAX_SEED = 2**32


@dataclass(frozen=True)
class TrainConfig:
    max_steps: int = 1000
    batch_size: int = 8  # sequences per micro-batch, per process
    grad_accum: int = 1  # micro-batches per optimizer step
    context_length: int | None = None  # tokens per sequence; None: the model's n_ctx
    stride: int | None = None  # tokens between window starts; None: context_length (no overlap)
    lr: float = 6e-4
    min_lr: float | None = None  # None: lr / 10
    warmup_steps: int | None = None  # None: max_steps / 10, at most 100
    weight_decay: float = 0.1
    grad_clip: float = 1.0  # max global gradient norm; 0: off
    dropout: float | None = None  # None: keep the model's
    val_fraction: float = 0.1
    eval_interval: int = 100
    eval_batches: int = 10  # batches of validation (and of training) windows per evaluation
    sample_interval: int | None = None  # None: eval_interval; 0: never
    sample_tokens: int = 48
    checkpoint_interval: int = 500  # and always at the last step
    dtype: str = "float32"  # autocast dtype: float32 (off), bfloat16, float16 (CUDA)
    compile: bool = False
    device: str = "auto"
    seed: int = 1337

    def __post_init__(self) -> None:
        positive = ("max_steps", "batch_size", "grad_accum", "eval_interval", "eval_batches", "checkpoint_interval")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise TrainConfigError(f"{name.replace('_', '-')} must be a positive integer, got {value!r}")
        for name in ("context_length", "stride"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value <= 0):
                raise TrainConfigError(f"{name.replace('_', '-')} must be a positive integer, got {value!r}")
        for name in ("warmup_steps", "sample_interval", "sample_tokens"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 0):
                raise TrainConfigError(f"{name.replace('_', '-')} must be an integer >= 0, got {value!r}")
        # `not 0 < x < inf` rather than `x <= 0`: NaN fails every comparison, so it is refused too
        if not 0 < self.lr < math.inf:
            raise TrainConfigError(f"lr must be a finite number > 0, got {self.lr!r}")
        if self.min_lr is not None and not 0 <= self.min_lr <= self.lr:
            raise TrainConfigError(f"min-lr must be in [0, lr], got {self.min_lr!r}")
        for name in ("weight_decay", "grad_clip"):
            if not 0 <= getattr(self, name) < math.inf:
                raise TrainConfigError(
                    f"{name.replace('_', '-')} must be a finite number >= 0, got {getattr(self, name)!r}"
                )
        if not isinstance(self.seed, int) or not 0 <= self.seed < MAX_SEED:
            raise TrainConfigError(f"seed must be an integer in [0, 2**32), got {self.seed!r}")
        if self.dropout is not None and not 0.0 <= self.dropout < 1.0:
            raise TrainConfigError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise TrainConfigError(f"val-fraction must be in [0, 1), got {self.val_fraction!r}")
        if self.dtype not in DTYPES:
            raise TrainConfigError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def resolved(self, n_ctx: int) -> TrainConfig:
        """The same settings with every None default made concrete for a model of n_ctx."""
        context = self.context_length or n_ctx
        if context > n_ctx:
            raise TrainConfigError(f"context length {context} is longer than the model's context window {n_ctx}")
        return self.replace(
            context_length=context,
            stride=self.stride or context,
            min_lr=self.lr / 10 if self.min_lr is None else self.min_lr,
            warmup_steps=min(100, self.max_steps // 10) if self.warmup_steps is None else self.warmup_steps,
            sample_interval=self.eval_interval if self.sample_interval is None else self.sample_interval,
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise TrainConfigError(f"unknown training option {unknown[0]!r}")
        return cls(**dict(d))
