"""The pure-Python decoding engine: GPT-2 with a KV cache, on the standard library alone.

It computes what `gpt2.engines.pure.model.forward` computes, one position at a time:
each new token runs through the blocks once, attending to the keys and values
that earlier positions left in the cache, so after the prompt every token
costs one position, not a re-run of the sequence. The big matrix products go
through `gpt2.engines.pure.parallel` (rows of Python floats, split across processes).

>>> from gpt2 import Config
>>> from gpt2.params import init_params
>>> cfg = Config(n_layer=2, n_embd=16, n_head=4, vocab_size=50, n_ctx=8)
>>> engine = PureEngine(cfg, init_params(cfg, seed=1))
>>> cache = engine.new_cache()
>>> logits = engine.forward([1, 2, 3], cache)
>>> len(logits), len(cache)
(50, 3)
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping, Sequence
from typing import Any

from ...config import Config
from ...errors import GenerationError
from ...params import PROJECTIONS, validate_params
from ...quantized_tensor import dequantize_params, is_quantized
from ...tensor import Tensor
from ..base import check_ids, check_window
from ..plan import EnginePlan, plan_engine
from .layout import BEST_METHOD
from .ops import dot, gelu_vector, layer_norm, softmax
from .parallel import MatrixSpec, ShardedMatrices, usable_cpus

# The block's projections are stored in ShardedMatrices layer by layer, in PROJECTIONS order,
# then the tied output projection.
PROJECTION_INDEX = {name: i for i, (name, _, _) in enumerate(PROJECTIONS)}

# Below this many parameters a second process costs more in messages than it saves.
PARALLEL_MIN_PARAMS = 20_000_000
# Each extra process adds a message per matrix product; past a handful they cost more than they save.
MAX_DEFAULT_WORKERS = 8
# "auto" storage keeps rows as Python floats (32 bytes a weight) up to this many weights.
FAST_STORAGE_MAX_PARAMS = 400_000_000


class KVCache:
    """Keys and values of every position seen so far, per layer and head.

    keys[layer][head] is a list of [D] tuples (one per position); values are kept
    transposed, values[layer][head][d] is the list over positions of component d,
    so that the attention-weighted sum is D inner products.
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self.length = 0
        self.keys: list[list[list[list[float]]]] = [[[] for _ in range(config.n_head)] for _ in range(config.n_layer)]
        self.values: list[list[list[list[float]]]] = [
            [[[] for _ in range(config.head_dim)] for _ in range(config.n_head)] for _ in range(config.n_layer)
        ]

    def __len__(self) -> int:
        return self.length


class PureEngine:
    name = "pure"

    def __init__(self, config: Config, params: Mapping[str, Tensor], plan: EnginePlan | None = None, **options: Any):
        """`plan`: from `gpt2.engines.plan_engine("pure", ...)`; or the options themselves, planned
        here. `workers`: processes sharing the matrix products (None: one per core, at most 8,
        for models of 20M parameters or more, else 1). `storage`: "fast", "compact", "fp16" or "auto"
        (fast up to 400M parameters, compact above); see `gpt2.engines.pure.layout`. `method`: the
        inner product, see `gpt2.engines.pure.layout`."""
        plan = plan or plan_engine("pure", **options)
        validate_params(params, config)
        self.notices = list(plan.notices)
        # int8 weights (gpt2.quantized_tensor) become the floats they stand for, q * scale, here:
        # `dequantize(params[name]).to_array()` beside the original weights shows the rounding error.
        self.quantization = "int8" if is_quantized(params) else None
        params = dequantize_params(params)
        storage = plan.options.get("storage", "auto")
        if storage == "auto":
            storage = "fast" if config.num_parameters() <= FAST_STORAGE_MAX_PARAMS else "compact"
        workers = plan.options.get("workers")
        if workers is None:
            workers = min(usable_cpus(), MAX_DEFAULT_WORKERS) if config.num_parameters() >= PARALLEL_MIN_PARAMS else 1
        method = plan.options.get("method", BEST_METHOD)
        self.config = config
        self.storage = storage
        c = config.n_embd
        vec = lambda name: params[name].to_array().tolist()  # noqa: E731
        self.wte = params["wte.weight"].as_floats()  # [V * C] flat, for embedding lookups
        self.wpe = params["wpe.weight"].as_floats()  # [n_ctx * C] flat
        self.norms = []  # per layer: (ln_1 gain, bias, ln_2 gain, bias)
        specs = []
        for i in range(config.n_layer):
            p = f"h.{i}."
            self.norms.append(tuple(vec(p + n) for n in ("ln_1.weight", "ln_1.bias", "ln_2.weight", "ln_2.bias")))
            for name, n_in, n_out in PROJECTIONS:  # sizes in units of C
                weight = params[p + name + ".weight"].as_floats()  # (in, out) checkpoint layout
                specs.append(MatrixSpec(weight, n_in * c, n_out * c, transposed=True, bias=vec(p + name + ".bias")))
        specs.append(MatrixSpec(self.wte, c, config.vocab_size, transposed=False, bias=None))
        self.ln_f = (vec("ln_f.weight"), vec("ln_f.bias"))
        self.matrices = ShardedMatrices(specs, workers=workers, storage=storage, method=method)
        self.workers = self.matrices.workers

    @property
    def kv_bytes_per_position(self) -> int:
        """Keys and values of every layer, counted as float64s (they are Python floats)."""
        return 2 * self.config.n_layer * self.config.n_embd * 8

    def details(self) -> list[str]:
        return []

    def free_memory(self) -> int | None:
        return None  # the host's

    def close(self) -> None:
        """Stop the worker processes (also done when the engine is garbage-collected)."""
        self.matrices.close()

    def new_cache(self) -> KVCache:
        return KVCache(self.config)

    # --- the forward pass ----------------------------------------------------------------

    def forward(self, ids: Sequence[int], cache: KVCache, *, all_logits: bool = False, recorder: Any = None):
        """Run new token ids after the cached positions; return the last position's
        logits [V] (or every new position's, [T][V], with all_logits). `recorder`: see
        `gpt2.engines.recorder`."""
        cfg = self.config
        ids = check_ids(ids, cfg)
        if not ids:
            raise GenerationError("forward needs at least one token id")
        check_window(len(cache), len(ids), cfg)
        xs = [self.embed(t, len(cache) + i) for i, t in enumerate(ids)]  # [T][C]
        if recorder is not None:
            recorder.residual(-1, xs)
        for layer in range(cfg.n_layer):
            xs = self.block(xs, layer, cache, recorder)
            if recorder is not None:
                recorder.residual(layer, xs)
        cache.length += len(ids)
        if not all_logits:
            xs = xs[-1:]
        eps = cfg.layer_norm_epsilon
        xs = [layer_norm(x, *self.ln_f, eps) for x in xs]  # [T][C]
        logits = self.matrices.matvecs(len(self.matrices.local) - 1, xs)  # [T][V], tied to wte
        return logits if all_logits else logits[0]

    def embed(self, token: int, position: int) -> list[float]:
        """wte[token] + wpe[position]: [C]."""
        c = self.config.n_embd
        return list(
            map(operator.add, self.wte[token * c : (token + 1) * c], self.wpe[position * c : (position + 1) * c])
        )

    def block(self, xs: list[list[float]], layer: int, cache: KVCache, recorder: Any = None) -> list[list[float]]:
        """One pre-norm transformer block over T new positions: [T][C] -> [T][C]."""
        eps = self.config.layer_norm_epsilon
        g1, b1, g2, b2 = self.norms[layer]
        h = [layer_norm(x, g1, b1, eps) for x in xs]  # [T][C]
        qkv = self.project(layer, "attn.c_attn", h)  # [T][3C]
        weights: list[list[float]] | None = [] if recorder is not None else None  # [T * H] rows, ragged
        a = [self.attend(row, layer, cache, weights) for row in qkv]  # [T][C]
        if recorder is not None and weights is not None:
            H = self.config.n_head
            recorder.attention(layer, [weights[h::H] for h in range(H)])  # [H][T][positions seen]
        a = self.project(layer, "attn.c_proj", a)  # [T][C]
        xs = [list(map(operator.add, x, y)) for x, y in zip(xs, a)]  # residual
        h = [layer_norm(x, g2, b2, eps) for x in xs]  # [T][C]
        h = [gelu_vector(row) for row in self.project(layer, "mlp.c_fc", h)]  # [T][4C]
        m = self.project(layer, "mlp.c_proj", h)  # [T][C]
        return [list(map(operator.add, x, y)) for x, y in zip(xs, m)]  # residual

    def project(self, layer: int, name: str, xs: list[list[float]]) -> list[list[float]]:
        """x @ W + b for each row of xs, W the projection `h.{layer}.{name}`: [T][in] -> [T][out]."""
        return self.matrices.matvecs(len(PROJECTIONS) * layer + PROJECTION_INDEX[name], xs)

    def attend(
        self, qkv: list[float], layer: int, cache: KVCache, weights_out: list[list[float]] | None = None
    ) -> list[float]:
        """Append this position's keys and values to the cache and attend over every cached
        position (the causal mask is implicit: later positions are not there yet). [3C] -> [C].
        `weights_out`, if given, receives each head's attention probabilities in turn."""
        cfg = self.config
        c, d = cfg.n_embd, cfg.head_dim
        scale = 1.0 / math.sqrt(d)
        out: list[float] = []
        for h in range(cfg.n_head):
            q = qkv[h * d : (h + 1) * d]  # [D]
            k = qkv[c + h * d : c + (h + 1) * d]  # [D]
            v = qkv[2 * c + h * d : 2 * c + (h + 1) * d]  # [D]
            keys, values = cache.keys[layer][h], cache.values[layer][h]
            keys.append(k)
            for component, value in zip(values, v):
                component.append(value)
            weights = softmax([dot(q, key) * scale for key in keys])  # [positions]
            if weights_out is not None:
                weights_out.append(weights)
            out.extend(dot(weights, component) for component in values)  # [D]
        return out
