"""The code behind each panel: the functions that computed what the page shows, and their source.

Every part of a trace names the function that computed it (`computed_by`), and the page
can show that function's source, read from the installed package with `inspect`, so the
numbers and the code that made them sit side by side. Only the functions listed here are
served (read-only): the API is not a way to read arbitrary files.

>>> "def attention(" in source_of("gpt2.engines.pure.model.attention")["source"]
True
>>> source_of("os.system")
Traceback (most recent call last):
...
gpt2.explore.errors.ExploreError: no source for 'os.system': the explorer shows only the functions it names
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from typing import Any

from .errors import ExploreError

__all__ = ["SOURCES", "COMPUTED_BY", "computed_by", "source_of"]

# What each engine's trace runs: attention weights, and the block that updates the residual stream.
ENGINE_FUNCTIONS = {
    "pure": {
        "attention": "gpt2.engines.pure.engine.PureEngine.attend",
        "residual": "gpt2.engines.pure.engine.PureEngine.block",
    },
    "numpy": {
        "attention": "gpt2.engines.numpy_engine.attend",
        "residual": "gpt2.engines.numpy_engine.NumpyEngine.hidden_states",
    },
    "torch": {
        "attention": "gpt2.engines.torch.attention.attention_weights",
        "residual": "gpt2.engines.torch.model.GPT2.forward",
    },
}

# The functions behind the other panels, whatever the engine.
COMPUTED_BY = {
    "tokens": "gpt2.tokenizer.tokenizer.Tokenizer.encode",
    "merges": "gpt2.explore.bpe_steps.merge_steps",
    "logit_lens": "gpt2.explore.lens.logit_lens",
    "next_token": "gpt2.explore.distribution.next_token_distribution",
    "step": "gpt2.generation.sampling.Sampler.sample",
    "neighbours": "gpt2.explore.embeddings.nearest_neighbours",
    "positions": "gpt2.explore.embeddings.position_similarity",
    "compare": "gpt2.explore.compare.compare_traces",
}

# Readable companions a reader may want beside them: the model written for reading.
COMPANIONS = (
    "gpt2.engines.pure.model.attention",
    "gpt2.engines.pure.model.transformer_block",
    "gpt2.engines.pure.model.embed",
    "gpt2.engines.pure.model.output_projection",
    "gpt2.engines.pure.ops.causal_softmax",
    "gpt2.engines.pure.ops.layer_norm",
    "gpt2.engines.pure.ops.gelu",
    "gpt2.explore.lens.lens_logits",
    "gpt2.tokenizer.bpe.merge_short",
    "gpt2.generation.sampling.Sampler.candidates",
    "gpt2.generation.vectorised.sample_array",
)

SOURCES: tuple[str, ...] = tuple(
    dict.fromkeys(
        [
            *(f for functions in ENGINE_FUNCTIONS.values() for f in functions.values()),
            *COMPUTED_BY.values(),
            *COMPANIONS,
        ]
    )
)

PACKAGE_ROOT = Path(__file__).resolve().parent.parent  # src/gpt2


def computed_by(engine: str) -> dict[str, str]:
    """The function behind each part of a trace made by `engine`."""
    return {**ENGINE_FUNCTIONS[engine], **COMPUTED_BY}


def source_of(name: str) -> dict[str, Any]:
    """{"name", "file" (inside the package), "line", "source"} of one of `SOURCES`."""
    if name not in SOURCES:
        raise ExploreError(f"no source for {name!r}: the explorer shows only the functions it names")
    obj = _resolve(name)
    lines, start = inspect.getsourcelines(obj)
    path = Path(inspect.getsourcefile(obj) or "")
    try:
        where = str(path.resolve().relative_to(PACKAGE_ROOT.parent))
    except ValueError:
        where = path.name
    return {"name": name, "file": where, "line": start, "source": "".join(lines)}


def _resolve(name: str) -> Any:
    """'gpt2.a.b.Class.method' -> the object: the longest importable module prefix, then attributes."""
    parts = name.split(".")
    for split in range(len(parts) - 1, 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        try:
            for attr in parts[split:]:
                obj = getattr(obj, attr)
        except AttributeError:
            break
        return obj
    raise ExploreError(f"cannot import {name} here (is its engine installed?)")
