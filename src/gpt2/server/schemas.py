"""What clients send, checked field by field before any work is done.

Request bodies are parsed by hand rather than by a schema library so that
every refusal is OpenAI's: a 400 whose `param` names the field at fault and
whose message says what was expected. The rules are OpenAI's for
`/v1/completions` (temperature in [0, 2], `logprobs` 0-5, up to 4 stop
strings, `best_of` only equal to `n`, `suffix` refused: GPT-2 cannot insert),
plus three extensions other servers share: `top_k` and `repetition_penalty`
(vLLM, llama-server) and `ignore_eos` (vLLM). An unknown field is refused,
as OpenAI refuses it, rather than silently ignored.

JSON is parsed strictly: the body must be UTF-8, NaN and Infinity are not
numbers, and a body nested too deeply to parse is a 400, not a crash.

>>> p = parse_completion(parse_json(b'{"model": "gpt2", "prompt": "Hi", "stop": "\\\\n"}'))
>>> p.prompts, p.max_tokens, p.stop
(('Hi',), 16, ('\\n',))
>>> try:
...     parse_completion({"model": "gpt2", "prompt": "Hi", "n": 0})
... except ApiError as err:
...     print(err.status, err.param, err.message)
400 n n must be an integer in [1, 128], got 0
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ApiError, bad_request

__all__ = [
    "CompletionParams",
    "Prompt",
    "parse_json",
    "parse_completion",
    "parse_tokenize",
    "parse_detokenize",
    "MAX_STOP_CHARS",
]

MAX_LOGPROBS = 5  # OpenAI's limit for the completions API
MAX_STOPS = 4
MAX_STOP_CHARS = 256  # matching held-back text costs up to len(stop)**2 per token: keep it small
MAX_N = 128
DEFAULT_MAX_TOKENS = 16  # OpenAI's default for /v1/completions

Prompt = str | tuple[int, ...]  # text, or token ids


@dataclass(frozen=True)
class CompletionParams:
    """A checked `/v1/completions` request (the server's own limits are checked later)."""

    model: str
    prompts: tuple[Prompt, ...]
    max_tokens: int | None = DEFAULT_MAX_TOKENS  # None (sent as null): as many as fit the window
    max_tokens_given: bool = False  # False: the default, which a lower server limit lowers
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    n: int = 1
    stream: bool = False
    include_usage: bool = False
    stop: tuple[str, ...] = ()
    logprobs: int | None = None
    echo: bool = False
    seed: int | None = None
    logit_bias: Mapping[int, float] = field(default_factory=dict)
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    ignore_eos: bool = False
    user: str | None = None


FIELDS = frozenset(CompletionParams.__dataclass_fields__) - {"prompts", "include_usage", "max_tokens_given"} | {
    "prompt",
    "stream_options",
    "best_of",
    "suffix",
}


# --- JSON ------------------------------------------------------------------------------------


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range for a number")
    return value


def parse_json(raw: bytes) -> Any:
    """A request body as JSON: UTF-8 only, finite numbers only; anything else is a 400."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise bad_request(
            f"the request body is not UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start})"
        ) from None
    if not text.strip():
        raise bad_request("the request body is empty; send a JSON object")
    try:
        return json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    except RecursionError:
        raise bad_request("the request body is nested too deeply") from None
    except ValueError as exc:  # json.JSONDecodeError is a ValueError; so is a 5000-digit integer
        raise bad_request(f"the request body is not valid JSON: {exc}") from None


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise bad_request(f"the request body must be a JSON object, got {_kind(body)}")
    return body


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


# --- fields -----------------------------------------------------------------------------------


def _int(body: Mapping[str, Any], name: str, default: Any, low: int, high: int | None = None) -> Any:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        span = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise bad_request(f"{name} must be an integer {span}, got {_show(value)}", name)
    return value


def _number(body: Mapping[str, Any], name: str, default: float, low: float, high: float | None) -> float:
    value = body.get(name)
    if value is None:
        return default
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or value < low
        or (high is not None and value > high)
    ):
        span = f"in [{low:g}, {high:g}]" if high is not None else f">= {low:g}"
        raise bad_request(f"{name} must be a number {span}, got {_show(value)}", name)
    return float(value)


def _bool(body: Mapping[str, Any], name: str) -> bool:
    value = body.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise bad_request(f"{name} must be true or false, got {_show(value)}", name)
    return value


def _show(value: Any) -> str:
    """A value for an error message, cut short (a client may send megabytes)."""
    text = json.dumps(value, ensure_ascii=True) if not isinstance(value, float) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _prompts(value: Any) -> tuple[Prompt, ...]:
    """OpenAI's four prompt forms: a string, a list of strings, a list of ids, a list of id lists."""
    if value is None:
        return ("",)  # OpenAI: no prompt means generating from <|endoftext|>
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list) or not value:
        raise bad_request(
            "prompt must be a string, a list of strings, a list of token ids, or a list of lists of token ids", "prompt"
        )
    if all(isinstance(p, str) for p in value):
        return tuple(value)
    if all(_is_id(t) for t in value):
        return (tuple(value),)
    if all(isinstance(p, list) and all(_is_id(t) for t in p) for p in value):
        return tuple(tuple(p) for p in value)
    raise bad_request(
        "prompt must be a string, a list of strings, a list of token ids (integers >= 0), "
        "or a list of lists of token ids; it cannot mix them",
        "prompt",
    )


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _stop(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or len(stops) > MAX_STOPS or not all(isinstance(s, str) for s in stops):
        raise bad_request(f"stop must be a string or a list of up to {MAX_STOPS} strings", "stop")
    for s in stops:
        if not s or len(s) > MAX_STOP_CHARS:
            raise bad_request(f"each stop string must have 1 to {MAX_STOP_CHARS} characters", "stop")
    return tuple(stops)


def _logit_bias(value: Any) -> dict[int, float]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad_request("logit_bias must be an object mapping token ids to numbers in [-100, 100]", "logit_bias")
    out: dict[int, float] = {}
    for key, bias in value.items():
        if not (key.isascii() and key.isdigit() and len(key) <= 9):
            raise bad_request(f"logit_bias keys must be token ids, got {_show(key)}", "logit_bias")
        if isinstance(bias, bool) or not isinstance(bias, (int, float)) or not -100 <= bias <= 100:
            raise bad_request(f"logit_bias values must be numbers in [-100, 100], got {_show(bias)}", "logit_bias")
        out[int(key)] = float(bias)
    return out


def _seed(value: Any) -> int | None:
    """Any 64-bit seed, signed or not (clients send both), folded into [0, 2**64)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not -(2**63) <= value < 2**64:
        raise bad_request(f"seed must be a 64-bit integer, got {_show(value)}", "seed")
    return value % 2**64


# --- requests ----------------------------------------------------------------------------------


def parse_completion(body: Any) -> CompletionParams:
    """A `/v1/completions` body (parsed JSON) -> CompletionParams, or a 400 naming the field."""
    body = _object(body)
    for name in body:
        if name not in FIELDS:
            raise bad_request(f"Unrecognized request argument supplied: {name}", name)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad_request("you must name the model (a string; see GET /v1/models)", "model")
    if body.get("suffix") is not None:
        raise bad_request("suffix is not supported: GPT-2 continues text, it cannot insert into it", "suffix")
    n = _int(body, "n", 1, 1, MAX_N)
    best_of = _int(body, "best_of", n, 1, MAX_N)
    if best_of != n:
        raise bad_request(f"best_of is supported only equal to n ({n}), got {best_of}", "best_of")
    stream = _bool(body, "stream")
    include_usage = False
    options = body.get("stream_options")
    if options is not None:
        if not stream:
            raise bad_request("stream_options is only allowed when stream is true", "stream_options")
        if not isinstance(options, dict) or set(options) - {"include_usage"}:
            raise bad_request('stream_options must be {"include_usage": true|false}', "stream_options")
        include_usage = _bool(options, "include_usage")
    top_p = _number(body, "top_p", 1.0, 0.0, 1.0)
    top_k = body.get("top_k")
    top_k = 0 if top_k == -1 else _int(body, "top_k", 0, 0)  # -1 is vLLM's "off"
    if top_p == 0.0:  # OpenAI accepts 0: only the most probable token, which top_k=1 says exactly
        top_p, top_k = 1.0, 1
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise bad_request("user must be a string", "user")
    return CompletionParams(
        model=model,
        prompts=_prompts(body.get("prompt")),
        max_tokens=_int(body, "max_tokens", None, 0) if "max_tokens" in body else DEFAULT_MAX_TOKENS,
        max_tokens_given="max_tokens" in body,
        temperature=_number(body, "temperature", 1.0, 0.0, 2.0),
        top_p=top_p,
        top_k=top_k,
        n=n,
        stream=stream,
        include_usage=include_usage,
        stop=_stop(body.get("stop")),
        logprobs=_int(body, "logprobs", None, 0, MAX_LOGPROBS),
        echo=_bool(body, "echo"),
        seed=_seed(body.get("seed")),
        logit_bias=_logit_bias(body.get("logit_bias")),
        presence_penalty=_number(body, "presence_penalty", 0.0, -2.0, 2.0),
        frequency_penalty=_number(body, "frequency_penalty", 0.0, -2.0, 2.0),
        repetition_penalty=_number(body, "repetition_penalty", 1.0, 0.01, 100.0),
        ignore_eos=_bool(body, "ignore_eos"),
        user=user,
    )


def parse_tokenize(body: Any) -> tuple[str, bool]:
    """`/tokenize`: {"content": text} (llama-server) or {"prompt": text} (vLLM); "with_pieces"
    asks for each token's text too. -> (text, with_pieces)"""
    body = _object(body)
    unknown = set(body) - {"content", "prompt", "with_pieces", "add_special", "add_special_tokens", "model"}
    if unknown:
        raise bad_request(f"Unrecognized request argument supplied: {sorted(unknown)[0]}", sorted(unknown)[0])
    key = "content" if "content" in body else "prompt"
    text = body.get(key)
    if not isinstance(text, str):
        raise bad_request('send the text to tokenize as {"content": "..."} (or "prompt")', key)
    return text, _bool(body, "with_pieces")


def parse_detokenize(body: Any, vocab_size: int) -> list[int]:
    """`/detokenize`: {"tokens": [ids]} -> the ids, each checked against the vocabulary."""
    body = _object(body)
    unknown = set(body) - {"tokens", "model"}
    if unknown:
        raise bad_request(f"Unrecognized request argument supplied: {sorted(unknown)[0]}", sorted(unknown)[0])
    tokens = body.get("tokens")
    if not isinstance(tokens, list) or not all(_is_id(t) for t in tokens):
        raise bad_request('send the ids as {"tokens": [integers >= 0]}', "tokens")
    outside = [t for t in tokens if t >= vocab_size]
    if outside:
        raise bad_request(f"token id {outside[0]} is outside the vocabulary [0, {vocab_size})", "tokens")
    return tokens


def check_model(requested: str, served: str) -> None:
    """404 in OpenAI's words when a request names another model."""
    if requested != served:
        raise ApiError(
            404,
            f"The model `{requested[:100]}` does not exist; this server serves `{served}` (see GET /v1/models)",
            param="model",
            code="model_not_found",
        )
