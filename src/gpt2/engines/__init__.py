"""The engines: three implementations of one model over one parameter tree.

Every engine has the same small surface (see :class:`Engine`): build it from a
`Config` and a parameter tree, make a KV cache, and call `forward` with new
token ids to get the logits of the last position. `gpt2.generation.generate`
drives any of them.

    pure   standard library only: the readable, verifiable reference
    numpy  fast CPU inference              (needs numpy)
    torch  GPUs, half precision, training  (needs torch)

Engines are imported only when asked for, so the core never imports NumPy or PyTorch.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from ..config import Config
from ..errors import EngineUnavailable, Gpt2Error
from ..tensor import Tensor

# name -> (module, class, the optional package it needs)
ENGINES: dict[str, tuple[str, str, str | None]] = {
    "pure": ("gpt2.engines.pure", "PureEngine", None),
    "numpy": ("gpt2.engines.numpy_engine", "NumpyEngine", "numpy"),
    "torch": ("gpt2.engines.torch_engine", "TorchEngine", "torch"),
}
FASTEST_FIRST = ("numpy", "torch", "pure")


class Engine(Protocol):
    name: str
    config: Config

    def new_cache(self) -> Any:
        """An empty KV cache; `len(cache)` is the number of positions it holds."""

    def forward(self, ids: Sequence[int], cache: Any, *, all_logits: bool = False) -> Any:
        """Run `ids` at the positions after those already in `cache`, append their keys
        and values to it, and return the logits of the last position (a sequence of
        vocab_size floats), or of every new position when `all_logits` is true."""

    # Optional, used when present (the NumPy and PyTorch engines have them):
    #   sample(logits, sampler) -> int
    #       `sampler.sample(logits)` vectorised: the same token from the same single draw.
    #   new_batch_cache(n) and forward_batch(rows, cache, *, all_logits=False)
    #       several sequences at once, each row with its own number of past positions; the
    #       batch cache has `.row(b)` (a view) and `.reorder(rows)` (for beam search).
    #       `gpt2.beam` uses them for batched sampling and beam search.


class BatchKVCache:
    """What the NumPy and PyTorch caches share: keys and values preallocated as
    [batch, n_layer, n_head, n_ctx, head_dim] arrays of their framework, and
    `lengths[b]`, the positions row b holds. Subclasses add `reorder`."""

    def __init__(self, keys: Any, values: Any, lengths: Any) -> None:
        self.keys, self.values, self.lengths = keys, values, lengths

    def __len__(self) -> int:
        """The longest row's length (for a one-row cache, simply the positions held)."""
        return int(self.lengths.max())

    @property
    def batch_size(self) -> int:
        return len(self.lengths)

    def row(self, b: int) -> BatchKVCache:
        """Row `b` as a one-row cache sharing this one's memory (filling it fills this)."""
        return type(self)(self.keys[b : b + 1], self.values[b : b + 1], self.lengths[b : b + 1])


def available_engines() -> list[str]:
    """Engine names whose dependencies are installed, fastest first."""
    return [
        name
        for name in FASTEST_FIRST
        if ENGINES[name][2] is None or importlib.util.find_spec(ENGINES[name][2]) is not None
    ]


def default_engine() -> str:
    return available_engines()[0]


def load_engine(name: str, config: Config, params: Mapping[str, Tensor], **options: Any) -> Engine:
    """Build engine `name` ("pure", "numpy", "torch") over a parameter tree."""
    if name not in ENGINES:
        raise Gpt2Error(f"unknown engine {name!r}; choose one of {', '.join(ENGINES)}")
    module_name, class_name, needs = ENGINES[name]
    if needs is not None and importlib.util.find_spec(needs) is None:
        raise EngineUnavailable(
            f"the {name} engine needs {needs}: pip install 'gpt2[{needs}]' "
            f"(installed engines: {', '.join(available_engines())})"
        )
    module = importlib.import_module(module_name)
    return getattr(module, class_name)(config, params, **options)
