"""Model configuration: a frozen dataclass with GPT-2's published sizes as presets.

>>> Config.preset("gpt2-xl").n_head
25
>>> Config.preset("gpt2").head_dim
64
>>> Config(n_layer=2, n_embd=64, n_head=4).n_inner
256
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .block import block_parameters
from .errors import ConfigError
from .regular_file import read_regular

POSITION_EMBEDDINGS = ("learned", "sinusoidal")

# GPT-2's one special token, `<|endoftext|>`: the last id of its vocabulary. It separated the
# documents GPT-2 was trained on, so it also starts unconditional samples and ends generation.
END_OF_TEXT = 50256

# The integer sizes, and bounds far above any GPT-2-family model (GPT-3 175B has 96 layers,
# width 12288, 2048 positions): a typo or a forged config.json is refused at once, before
# anything is allocated or a per-layer table of a billion entries is built.
SIZE_FIELDS = ("n_layer", "n_embd", "n_head", "vocab_size", "n_ctx")
SIZE_LIMITS = {"n_layer": 4096, "n_embd": 1 << 17, "n_head": 1 << 17, "vocab_size": 1 << 24, "n_ctx": 1 << 24}
XL_SIZES = {"n_layer": 48, "n_embd": 1600, "n_head": 25, "vocab_size": 50257, "n_ctx": 1024}
MAX_PARAMETERS = 10**12
MAX_CONFIG_BYTES = 16 * 1024 * 1024  # a config.json is about 1 KB; /dev/zero must not be read to exhaustion


@dataclass(frozen=True)
class Config:
    n_layer: int = 12
    n_embd: int = 768
    n_head: int = 12
    vocab_size: int = 50257
    n_ctx: int = 1024  # context window: the number of learned positions
    layer_norm_epsilon: float = 1e-5
    # GPT-2 always has a QKV bias and learned positions; these two switches exist
    # for models trained from scratch (the seeds' variants). Either way the
    # parameter tree keeps the same names: a disabled bias is stored as zeros and
    # a sinusoidal table is stored in `wpe.weight`, so every engine and every
    # checkpoint reader treats all models alike.
    qkv_bias: bool = True
    position_embedding: str = "learned"
    dropout: float = 0.0  # training only; inference ignores it

    def __post_init__(self) -> None:
        for name in SIZE_FIELDS:
            value = getattr(self, name)
            if not _is_int(value) or value <= 0:
                raise ConfigError(f"{name} must be a positive integer, got {show_value(value)}")
            if value > SIZE_LIMITS[name]:
                raise ConfigError(
                    f"{name}={show_value(value)} is absurd: at most {SIZE_LIMITS[name]:,} "
                    f"(GPT-2 XL has {XL_SIZES[name]})"
                )
        if self.n_embd % self.n_head:
            raise ConfigError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if not _is_real(self.layer_norm_epsilon) or not 0 < self.layer_norm_epsilon < math.inf:
            raise ConfigError(
                f"layer_norm_epsilon must be a finite number > 0, got {show_value(self.layer_norm_epsilon)}"
            )
        if not isinstance(self.qkv_bias, bool):
            raise ConfigError(f"qkv_bias must be true or false, got {show_value(self.qkv_bias)}")
        if self.position_embedding not in POSITION_EMBEDDINGS:
            raise ConfigError(
                f"position_embedding must be one of {POSITION_EMBEDDINGS}, got {show_value(self.position_embedding)}"
            )
        if not _is_real(self.dropout) or not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {show_value(self.dropout)}")
        if self.num_parameters() > MAX_PARAMETERS:
            raise ConfigError(
                f"{self.num_parameters():,} parameters is absurd (at most {MAX_PARAMETERS:,}; GPT-2 XL has 1.6 billion)"
            )

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def n_inner(self) -> int:
        return 4 * self.n_embd

    def num_parameters(self) -> int:
        """Parameters in the tree (the output projection is tied to `wte`, so counted once)."""
        d = self.n_embd
        return self.vocab_size * d + self.n_ctx * d + self.n_layer * block_parameters(d) + 2 * d

    def replace(self, **changes: Any) -> Config:
        return dataclasses.replace(self, **changes)

    # --- presets -----------------------------------------------------------------

    @classmethod
    def preset(cls, name: str) -> Config:
        try:
            return PRESETS[name]
        except KeyError:
            raise ConfigError(f"unknown model size {name!r}; choose one of {', '.join(PRESETS)}") from None

    @classmethod
    def from_spec(cls, value: str) -> Config:
        """What a `--config` option names: a preset (tiny, gpt2, ...), a JSON file of sizes,
        or a model directory holding config.json (`--config runs/tiny` reuses that shape)."""
        if value in PRESETS:
            return PRESETS[value]
        path = Path(value)
        if path.is_dir() and (path / "config.json").is_file():
            return cls.from_json_file(path / "config.json")
        if path.exists() or value.endswith(".json"):
            return cls.from_json_file(path)  # a clear error for a directory or a missing .json
        return cls.preset(value)  # raises: unknown preset, with the list

    # --- Hugging Face config.json ------------------------------------------------

    def to_hf_dict(self) -> dict[str, Any]:
        """The `config.json` that `transformers.GPT2LMHeadModel` reads."""
        out: dict[str, Any] = {
            "architectures": ["GPT2LMHeadModel"],
            "model_type": "gpt2",
            "vocab_size": self.vocab_size,
            "n_positions": self.n_ctx,
            "n_ctx": self.n_ctx,
            "n_embd": self.n_embd,
            "n_layer": self.n_layer,
            "n_head": self.n_head,
            "n_inner": None,
            "activation_function": "gelu_new",
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "resid_pdrop": self.dropout,
            "embd_pdrop": self.dropout,
            "attn_pdrop": self.dropout,
            "bos_token_id": END_OF_TEXT,
            "eos_token_id": END_OF_TEXT,
            "tie_word_embeddings": True,
        }
        # Our own extensions; transformers ignores unknown keys.
        if not self.qkv_bias:
            out["qkv_bias"] = False
        if self.position_embedding != "learned":
            out["position_embedding"] = self.position_embedding
        return out

    @classmethod
    def from_hf_dict(cls, d: Mapping[str, Any]) -> Config:
        """Read a Hugging Face `config.json` (or OpenAI's `hparams.json`) mapping.

        Values are checked, never converted: `"n_layer": "2"`, `2.7` or `2.0`, and
        `"qkv_bias": "false"` are errors, not 2 and True.

        >>> Config.from_hf_dict({"n_layer": 2, "n_embd": 64, "n_head": 4}).n_ctx
        1024
        >>> Config.from_hf_dict({"n_layer": 2.7, "n_embd": 64, "n_head": 4})
        Traceback (most recent call last):
        ...
        gpt2.errors.ConfigError: config field n_layer must be an integer, got 2.7
        """
        if not isinstance(d, Mapping):
            raise ConfigError(f"a config must be a JSON object, got {type(d).__name__}")
        n_embd = _field(d, ("n_embd",), _is_int, "an integer")
        n_inner = _field(d, ("n_inner",), lambda v: v is None or _is_int(v), "null or an integer", None)
        if n_inner is not None and n_embd is not None and n_inner != 4 * n_embd:
            raise ConfigError(f"n_inner={n_inner} is not 4 * n_embd; not a GPT-2 layout")
        act = _field(d, ("activation_function",), lambda v: isinstance(v, str), "a string", "gelu_new")
        if act not in ("gelu_new", "gelu_pytorch_tanh"):
            raise ConfigError(f"activation_function {show_value(act)} is not GPT-2's tanh GELU")
        return cls(
            n_layer=_field(d, ("n_layer",), _is_int, "an integer"),
            n_embd=n_embd,
            n_head=_field(d, ("n_head",), _is_int, "an integer"),
            vocab_size=_field(d, ("vocab_size", "n_vocab"), _is_int, "an integer", 50257),
            n_ctx=_field(d, ("n_positions", "n_ctx"), _is_int, "an integer", 1024),
            layer_norm_epsilon=_field(d, ("layer_norm_epsilon",), _is_real, "a number", 1e-5),
            qkv_bias=_field(d, ("qkv_bias",), lambda v: isinstance(v, bool), "true or false", True),
            position_embedding=_field(d, ("position_embedding",), lambda v: isinstance(v, str), "a string", "learned"),
        )

    @classmethod
    def from_json_file(cls, path: str | Path) -> Config:
        """A config.json (or hparams.json): a regular file of at most MAX_CONFIG_BYTES,
        UTF-8 JSON, an object of checked values. Every failure is a one-line ConfigError."""
        try:
            raw = read_regular(path, MAX_CONFIG_BYTES)
        except OSError as exc:
            raise ConfigError(f"cannot read config {path}: {exc.strerror or exc}") from None
        try:
            data = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise ConfigError(f"config {path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        except RecursionError:
            raise ConfigError(f"config {path} nests its JSON too deeply to be a config") from None
        except ValueError as exc:  # JSONDecodeError, and integers past Python's 4300-digit limit
            raise ConfigError(f"config {path} is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"config {path} is not a JSON object")
        try:
            return cls.from_hf_dict(data)
        except ConfigError as exc:
            raise ConfigError(f"config {path}: {exc}") from None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


_MISSING = object()


def _field(d: Mapping[str, Any], names: tuple[str, ...], check: Any, kind: str, default: Any = _MISSING) -> Any:
    """The value of the first of `names` present (all present ones must agree), checked with
    `check`; `default` when none is present, a ConfigError when there is no default."""
    present = [(name, d[name]) for name in names if name in d]
    if not present:
        if default is _MISSING:
            raise ConfigError(f"not a GPT-2 config: no {names[0]!r}")
        return default
    for name, value in present:
        if not check(value):
            raise ConfigError(f"config field {name} must be {kind}, got {show_value(value)}")
    name, value = present[0]
    for other, v in present[1:]:
        if v != value:
            raise ConfigError(f"config fields {name}={show_value(value)} and {other}={show_value(v)} disagree")
    return value


def show_value(value: object, limit: int = 60) -> str:
    """A user's value for an error message: short, and never itself an error (a 5,000-digit
    integer cannot be repr()'d past Python's digit limit, a deep list not past the recursion limit).

    >>> show_value(10**5000), show_value("x" * 100)[-5:], show_value(2.5)
    ('an integer of about 5000 digits', 'xxxx…', '2.5')
    """
    if isinstance(value, int) and value.bit_length() > 200:
        return f"an integer of about {round(value.bit_length() * math.log10(2))} digits"
    try:
        text = repr(value)
    except (ValueError, RecursionError):
        return f"a {type(value).__name__} too large to show"
    return text if len(text) <= limit else text[: limit - 1] + "…"


PRESETS: dict[str, Config] = {
    "gpt2": Config(n_layer=12, n_embd=768, n_head=12),  # 124M
    "gpt2-medium": Config(n_layer=24, n_embd=1024, n_head=16),  # 355M
    "gpt2-large": Config(n_layer=36, n_embd=1280, n_head=20),  # 774M
    "gpt2-xl": Config(n_layer=48, n_embd=1600, n_head=25),  # 1558M
    # A few million parameters (most of them the 50257-row embedding): trains on a CPU in minutes.
    "tiny": Config(n_layer=4, n_embd=128, n_head=4, n_ctx=256),
}
