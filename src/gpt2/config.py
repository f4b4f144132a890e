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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError

POSITION_EMBEDDINGS = ("learned", "sinusoidal")

# GPT-2's one special token, `<|endoftext|>`: the last id of its vocabulary. It separated the
# documents GPT-2 was trained on, so it also starts unconditional samples and ends generation.
END_OF_TEXT = 50256


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
        for name in ("n_layer", "n_embd", "n_head", "vocab_size", "n_ctx"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if self.n_embd % self.n_head:
            raise ConfigError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if not self.layer_norm_epsilon > 0:
            raise ConfigError(f"layer_norm_epsilon must be > 0, got {self.layer_norm_epsilon!r}")
        if self.position_embedding not in POSITION_EMBEDDINGS:
            raise ConfigError(
                f"position_embedding must be one of {POSITION_EMBEDDINGS}, got {self.position_embedding!r}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout!r}")

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def n_inner(self) -> int:
        return 4 * self.n_embd

    def num_parameters(self) -> int:
        """Parameters in the tree (the output projection is tied to `wte`, so counted once)."""
        from .params import block_parameters  # the block's tensor list lives with the tree

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
    def from_hf_dict(cls, d: dict[str, Any]) -> Config:
        """Read a Hugging Face `config.json` (or OpenAI's `hparams.json`) mapping."""
        try:
            n_inner = d.get("n_inner")
            if n_inner not in (None, 4 * int(d["n_embd"])):
                raise ConfigError(f"n_inner={n_inner} is not 4 * n_embd; not a GPT-2 layout")
            act = d.get("activation_function", "gelu_new")
            if act not in ("gelu_new", "gelu_pytorch_tanh"):
                raise ConfigError(f"activation_function {act!r} is not GPT-2's tanh GELU")
            return cls(
                n_layer=int(d["n_layer"]),
                n_embd=int(d["n_embd"]),
                n_head=int(d["n_head"]),
                vocab_size=int(d.get("vocab_size", d.get("n_vocab", 50257))),
                n_ctx=int(d.get("n_positions", d.get("n_ctx", 1024))),
                layer_norm_epsilon=float(d.get("layer_norm_epsilon", 1e-5)),
                qkv_bias=bool(d.get("qkv_bias", True)),
                position_embedding=str(d.get("position_embedding", "learned")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, ConfigError):
                raise
            raise ConfigError(f"not a GPT-2 config: {exc!r}") from None

    @classmethod
    def from_json_file(cls, path: str | Path) -> Config:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read config {path}: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"config {path} is not a JSON object")
        return cls.from_hf_dict(data)


PRESETS: dict[str, Config] = {
    "gpt2": Config(n_layer=12, n_embd=768, n_head=12),  # 124M
    "gpt2-medium": Config(n_layer=24, n_embd=1024, n_head=16),  # 355M
    "gpt2-large": Config(n_layer=36, n_embd=1280, n_head=20),  # 774M
    "gpt2-xl": Config(n_layer=48, n_embd=1600, n_head=25),  # 1558M
    # A few million parameters (most of them the 50257-row embedding): trains on a CPU in minutes.
    "tiny": Config(n_layer=4, n_embd=128, n_head=4, n_ctx=256),
}
