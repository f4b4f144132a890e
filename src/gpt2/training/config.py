"""`TrainConfig`: every training hyper-parameter, in one frozen dataclass.

It is saved in the checkpoint, so `--resume` continues with the same settings;
options given again on the command line override the saved ones.

Defaults that depend on the model (the learning rate, the context length) stay None
until :meth:`TrainConfig.resolved` makes them concrete for a model's shape:

>>> from gpt2.config import Config
>>> r = TrainConfig(max_steps=100).resolved(Config.preset("tiny"))
>>> r.context_length, r.warmup_steps, r.lr, round(r.min_lr, 6)
(256, 10, 0.002, 0.0002)
>>> TrainConfig().resolved(Config.preset("gpt2")).lr
0.0006
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..config import Config
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
    lr: float | None = None  # None: by the model's width, see default_lr
    min_lr: float | None = None  # None: lr / 10
    warmup_steps: int | None = None  # None: max_steps / 10, at most 100
    weight_decay: float = 0.1
    beta1: float = 0.9  # AdamW's moment decay rates
    beta2: float = 0.95
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
    threads: int | None = None  # CPU threads; None: PyTorch's count when the run starts (threads.py)

    def __post_init__(self) -> None:
        positive = ["max_steps", "batch_size", "grad_accum", "eval_interval", "eval_batches", "checkpoint_interval"]
        if self.threads is not None:
            positive.append("threads")
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
        if self.lr is not None and not 0 < self.lr < math.inf:
            raise TrainConfigError(f"lr must be a finite number > 0, got {self.lr!r}")
        if self.min_lr is not None and not 0 <= self.min_lr <= (math.inf if self.lr is None else self.lr):
            raise TrainConfigError(f"min-lr must be in [0, lr], got {self.min_lr!r}")
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise TrainConfigError(f"{name} must be in [0, 1), got {getattr(self, name)!r}")
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

    def resolved(self, model: Config, threads: int = 1, fine_tune: bool = False) -> ResolvedTrainConfig:
        """The same settings with every None default made concrete for `model`'s shape
        (`threads`: the thread count when none was given; `fine_tune`: the model is a trained
        one, `--init`, which takes a smaller default rate: see `default_lr`)."""
        n_ctx = model.n_ctx
        context = self.context_length or n_ctx
        if context > n_ctx:
            raise TrainConfigError(f"context length {context} is longer than the model's context window {n_ctx}")
        lr = default_lr(model, fine_tune) if self.lr is None else self.lr
        if self.min_lr is not None and self.min_lr > lr:
            raise TrainConfigError(f"min-lr {self.min_lr!r} is above the learning rate {lr!r}")
        concrete = dict(
            context_length=context,
            stride=self.stride or context,
            lr=lr,
            min_lr=lr / 10 if self.min_lr is None else self.min_lr,
            warmup_steps=min(100, self.max_steps // 10) if self.warmup_steps is None else self.warmup_steps,
            sample_interval=self.eval_interval if self.sample_interval is None else self.sample_interval,
            threads=self.threads or threads,
        )
        return ResolvedTrainConfig(**{**self.to_dict(), **concrete})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise TrainConfigError(f"unknown training option {unknown[0]!r}")
        return cls(**dict(d))


@dataclass(frozen=True)
class ResolvedTrainConfig(TrainConfig):
    """A TrainConfig whose model-dependent defaults are concrete (see `TrainConfig.resolved`)."""

    context_length: int = 0
    stride: int = 0
    lr: float = 0.0
    min_lr: float = 0.0
    warmup_steps: int = 0
    sample_interval: int = 0
    threads: int = 0


# A fine-tune's default peak rate, as a share of the from-scratch rate (see default_lr).
FINE_TUNE_SHARE = 0.5


def default_lr(model: Config, fine_tune: bool = False) -> float:
    """The peak learning rate a model of this width trains well with from scratch (or, with
    `fine_tune`, from trained weights: `FINE_TUNE_SHARE` of it, measured in docs/training.md,
    "Fine-tune": nearly all of the full rate's gain on the new text, for much less forgetting).

    A narrow model takes a larger rate: the updates of a matrix add up over its
    n_embd inputs, so the same rate moves a wide layer's outputs further. 6e-4 at
    GPT-2's 768 (GPT-3's 125M recipe, nanoGPT's) scaled by 768 / n_embd, between
    1.5e-4 and 2e-3. The ceiling is measured (benchmarks/train_recipes.py, the tiny
    preset, docs/training.md): 2e-3 beat 1.5e-3 and 3e-3 after 300 steps on
    tinyshakespeare, and 5e-3 diverged on the-verdict.

    >>> [default_lr(Config.preset(p)) for p in ("tiny", "gpt2", "gpt2-medium", "gpt2-xl")]
    [0.002, 0.0006, 0.00045, 0.000288]
    >>> [default_lr(Config.preset(p), fine_tune=True) for p in ("tiny", "gpt2")]
    [0.001, 0.0003]
    """
    scratch = min(2e-3, max(1.5e-4, 6e-4 * 768 / model.n_embd))
    return float(f"{scratch * (FINE_TUNE_SHARE if fine_tune else 1.0):.3g}")
