"""The API's requests: JSON bodies checked into frozen dataclasses, every mistake one clear sentence.

The checks are written here rather than left to a web framework, so that the router
mounts into any FastAPI app (whose validation errors would be a 422 with the framework's
words) and so that a program calling `Explorer` directly gets the same checks. Limits
are constants below and in docs/explorer.md.

>>> parse_trace({"text": "Hello", "temperature": 0.5}).sampling
SamplingConfig(temperature=0.5, top_k=40, top_p=1.0)
>>> parse_trace({"text": ""})
Traceback (most recent call last):
...
gpt2.explore.errors.ExploreError: the text is empty: type a prompt
>>> parse_trace({"ids": [1, "2"]})
Traceback (most recent call last):
...
gpt2.explore.errors.ExploreError: ids must be a list of integers (token ids), got '2' at index 1
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..generation.sampling import SamplingConfig
from ..tokenizer.checks import checked_text
from .encoding import ENCODINGS
from .errors import ExploreError

__all__ = [
    "MAX_TOKENS",
    "MAX_TEXT_CHARS",
    "Input",
    "TraceRequest",
    "StepRequest",
    "NeighboursRequest",
    "PositionsRequest",
    "CompareRequest",
    "parse_trace",
    "parse_next",
    "parse_step",
    "parse_neighbours",
    "parse_positions",
    "parse_bpe",
    "parse_compare",
]

MAX_TOKENS = 128  # tokens a trace covers (and at most the model's context window)
MAX_TEXT_CHARS = 4000  # characters of text accepted before tokenizing
MAX_TOP = 100  # next-token candidates listed
MAX_LENS_TOP = 20  # tokens per logit-lens cell
MAX_NEIGHBOURS = 100
MAX_POSITIONS = 256  # rows of the position-similarity matrix
MAX_DRAW = 1_000_000  # draws a sampler is advanced by before a step
# The library's defaults, which `gpt2 generate` uses too: stepping here samples what it samples.
DEFAULT_SAMPLING = SamplingConfig()


@dataclass(frozen=True)
class Input:
    """A sequence: text to tokenize, or token ids (exactly one of the two)."""

    text: str | None = None
    ids: tuple[int, ...] | None = None


@dataclass(frozen=True)
class TraceRequest:
    input: Input
    engine: str | None = None  # None: the explorer's default
    sampling: SamplingConfig = DEFAULT_SAMPLING
    top: int = 20  # next-token candidates
    lens_top: int = 5  # tokens per logit-lens cell
    attention: str = "tril-u16-base64"  # see gpt2.explore.encoding


@dataclass(frozen=True)
class StepRequest:
    trace: TraceRequest  # the sequence before the step, and how to trace the sequence after it
    token: int | None = None  # append this token; None: sample one
    seed: int | None = None  # the sampler's seed (None: draw one, returned in the answer)
    draw: int = 0  # draws the seed has made before this step (a stateless sampler resumes here)
    include_trace: bool = True


@dataclass(frozen=True)
class NeighboursRequest:
    id: int | None = None
    text: str | None = None  # a piece that is one token
    k: int = 10


@dataclass(frozen=True)
class PositionsRequest:
    count: int = 64
    stride: int = 1


@dataclass(frozen=True)
class CompareRequest:
    input: Input
    engines: tuple[str, ...] | None = None  # None: every installed engine


# --- the parsers ---------------------------------------------------------------------------------


def parse_trace(body: Any) -> TraceRequest:
    """POST /api/trace and /api/next."""
    body = _object(body)
    _known(body, ("text", "ids", "engine", "temperature", "top_k", "top_p", "top", "lens_top", "attention"))
    encoding = body.get("attention", "tril-u16-base64")
    if encoding not in ENCODINGS:
        raise ExploreError(f"attention must be one of {', '.join(ENCODINGS)}, got {encoding!r}")
    return TraceRequest(
        input=_input(body),
        engine=_engine(body),
        sampling=_sampling(body),
        top=_int(body, "top", 20, 1, MAX_TOP),
        lens_top=_int(body, "lens_top", 5, 1, MAX_LENS_TOP),
        attention=encoding,
    )


parse_next = parse_trace


def parse_step(body: Any) -> StepRequest:
    """POST /api/step: a trace request, plus the token to append or the sampler's state."""
    body = _object(body)
    own = ("token", "seed", "draw", "trace")
    trace = parse_trace({k: v for k, v in body.items() if k not in own})
    token = body.get("token")
    if token is not None:
        _check_int("token", token, 0, None)
    seed = body.get("seed")
    if seed is not None:
        _check_int("seed", seed, 0, 2**64 - 1)
    include = body.get("trace", True)
    if not isinstance(include, bool):
        raise ExploreError(f"trace must be true or false, got {include!r}")
    return StepRequest(trace, token, seed, _int(body, "draw", 0, 0, MAX_DRAW), include)


def parse_neighbours(body: Any) -> NeighboursRequest:
    """POST /api/embeddings/neighbours: {"id": 123} or {"text": " king"}, and "k"."""
    body = _object(body)
    _known(body, ("id", "text", "k"))
    if ("id" in body) == ("text" in body):
        raise ExploreError('give the token as "id" (an integer) or "text" (a piece that is one token), not both')
    k = _int(body, "k", 10, 1, MAX_NEIGHBOURS)
    if "id" in body:
        _check_int("id", body["id"], 0, None)
        return NeighboursRequest(id=body["id"], k=k)
    text = body["text"]
    if not isinstance(text, str) or not text:
        raise ExploreError("text must be a non-empty string")
    return NeighboursRequest(text=text, k=k)


def parse_positions(body: Any) -> PositionsRequest:
    """POST /api/embeddings/positions: {"count": 64, "stride": 1}."""
    body = _object(body)
    _known(body, ("count", "stride"))
    return PositionsRequest(_int(body, "count", 64, 1, MAX_POSITIONS), _int(body, "stride", 1, 1, 1 << 20))


def parse_bpe(body: Any) -> str:
    """POST /api/bpe: {"text": "unbelievable"}."""
    body = _object(body)
    _known(body, ("text",))
    text = body.get("text")
    if not isinstance(text, str):
        raise ExploreError('give the word as "text", a string')
    return checked_text(text)  # a lone surrogate is U+FFFD, as the tokenizer reads it everywhere


def parse_compare(body: Any) -> CompareRequest:
    """POST /api/compare: a sequence and, optionally, the engines to run."""
    body = _object(body)
    _known(body, ("text", "ids", "engines"))
    engines = body.get("engines")
    if engines is not None:
        if not isinstance(engines, list) or not engines or not all(isinstance(e, str) for e in engines):
            raise ExploreError('engines must be a non-empty list of engine names, e.g. ["pure", "numpy"]')
        engines = tuple(dict.fromkeys(engines))
    return CompareRequest(_input(body), engines)


# --- the pieces --------------------------------------------------------------------------------


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ExploreError("the request body must be a JSON object")
    return body


def _known(body: dict[str, Any], fields: tuple[str, ...]) -> None:
    unknown = sorted(set(body) - set(fields))
    if unknown:
        raise ExploreError(f"unknown field {unknown[0]!r}; the fields are {', '.join(fields)}")


def _input(body: dict[str, Any]) -> Input:
    has_text, has_ids = body.get("text") is not None, body.get("ids") is not None
    if has_text == has_ids:
        raise ExploreError('give the sequence as "text" (a string) or "ids" (token ids), exactly one of them')
    if has_text:
        text = body["text"]
        if not isinstance(text, str):
            raise ExploreError(f"text must be a string, got {type(text).__name__}")
        if not text:
            raise ExploreError("the text is empty: type a prompt")
        if len(text) > MAX_TEXT_CHARS:
            raise ExploreError(f"the text is {len(text)} characters long; the explorer takes at most {MAX_TEXT_CHARS}")
        return Input(text=text)
    ids = body["ids"]
    if not isinstance(ids, list):
        raise ExploreError("ids must be a list of integers (token ids)")
    if not ids:
        raise ExploreError("ids is empty: give at least one token id")
    if len(ids) > MAX_TOKENS:
        raise ExploreError(f"{len(ids)} tokens is too long: a trace covers at most {MAX_TOKENS}")
    for i, t in enumerate(ids):
        if isinstance(t, bool) or not isinstance(t, int):
            raise ExploreError(f"ids must be a list of integers (token ids), got {t!r} at index {i}")
    return Input(ids=tuple(ids))


def _engine(body: dict[str, Any]) -> str | None:
    engine = body.get("engine")
    if engine is not None and not isinstance(engine, str):
        raise ExploreError(f"engine must be a name (pure, numpy, torch), got {engine!r}")
    return engine


def _sampling(body: dict[str, Any]) -> SamplingConfig:
    d = DEFAULT_SAMPLING
    temperature = body.get("temperature", d.temperature)
    top_p = body.get("top_p", d.top_p)
    for name, value in (("temperature", temperature), ("top_p", top_p)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ExploreError(f"{name} must be a number, got {value!r}")
    top_k = _int(body, "top_k", d.top_k, 0, None)
    try:
        return SamplingConfig(temperature=float(temperature), top_k=top_k, top_p=float(top_p))
    except ValueError as exc:  # GenerationError: the sampler's own words
        raise ExploreError(str(exc)) from None


def _int(body: dict[str, Any], name: str, default: int, low: int, high: int | None) -> int:
    value = body.get(name, default)
    _check_int(name, value, low, high)
    return int(value)


def _check_int(name: str, value: Any, low: int, high: int | None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ExploreError(f"{name} must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        bounds = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ExploreError(f"{name} must be {bounds}, got {value}")
