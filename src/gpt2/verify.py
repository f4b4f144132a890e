"""`gpt2 verify`: every component of the pure engine against independent references.

For each component (each op, one block, the decoder, the full forward pass,
cached against uncached decoding) the pure engine and a reference written with
NumPy (float64) and with PyTorch (float32) run on the same random inputs and
weights; then the NumPy and PyTorch engines are checked against the pure engine.
The error measure is max |pure - reference| / max |reference|; it
must stay within 1e-9 for NumPy and 1e-4 for PyTorch.

>>> seen = []
>>> report = run_verification(references=(), progress=lambda *p: seen.append(p))   # pure only
>>> [r.component for r in report.rows][:1]
['cached vs uncached decoding']
>>> seen[-1] == ("components", len(COMPONENTS), len(COMPONENTS))
True
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from . import references as refs
from .config import Config
from .engines.pure import model, ops
from .engines.pure.engine import PureEngine
from .engines.pure.parallel import can_fork
from .errors import install_hint
from .params import param_shapes
from .references import composite
from .tensor import Tensor

# A small model whose every dimension differs, so a transposed or misplaced axis cannot pass.
VERIFY_CONFIG = Config(n_layer=2, n_embd=24, n_head=3, vocab_size=97, n_ctx=16)
PURE_TOLERANCE = 1e-9
SELF_CHECK = "pure, uncached"  # the reference of the pure engine's check against itself
ENGINE_TOLERANCE = 1e-4  # the NumPy and PyTorch engines compute in float32

# `progress(stage, done, total)`: stage "random weights" counts parameters drawn (the
# long part at the large sizes), "components" the components checked, "engines" the
# NumPy and PyTorch engines checked against the pure one.
Progress = Callable[[str, int, int], None]

# What `components` yields, in order (so progress knows the total before the first one).
COMPONENTS = (
    "matmul",
    "add",
    "transpose",
    "softmax",
    "causal softmax",
    "layer norm",
    "GELU (tanh)",
    "linear",
    "token + position embeddings",
    "scaled dot-product attention",
    "multi-head attention",
    "MLP",
    "transformer block",
    "decoder stack",
    "final layer norm",
    "output projection",
    "forward pass (logits)",
    "engine prefill (KV cache)",
    "engine cached decoding",
)


@dataclass
class Row:
    component: str
    reference: str
    max_abs_error: float | None
    max_rel_error: float | None  # max |error| / max |reference|
    tolerance: float | None
    status: str  # "pass", "fail" or "unavailable"
    note: str = ""


@dataclass
class Report:
    config: dict
    seed: int
    rows: list[Row] = field(default_factory=list)
    unavailable: dict[str, str] = field(default_factory=dict)

    @property
    def references_ran(self) -> bool:
        """Whether any independent reference (NumPy, PyTorch) ran: the pure engine's check of its
        own cache proves nothing about its math."""
        return any(r.status != "unavailable" and r.reference != SELF_CHECK for r in self.rows)

    @property
    def ok(self) -> bool:
        """Verified: at least one reference ran, and every check that ran passed."""
        ran = [r for r in self.rows if r.status != "unavailable"]
        return self.references_ran and all(r.status == "pass" for r in ran)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "references_ran": self.references_ran,
            "config": self.config,
            "seed": self.seed,
            "unavailable": self.unavailable,
            "rows": [asdict(r) for r in self.rows],
        }


def random_params(config: Config, rng: random.Random, progress: Progress | None = None) -> dict[str, Tensor]:
    """Weights with every entry random (gains near 1, biases and matrices near 0), so a
    dropped bias or gain shows up, unlike with GPT-2's init (zero biases, unit gains)."""
    params = {}
    total, done = config.num_parameters(), 0
    for name, shape in param_shapes(config).items():
        n = math.prod(shape)
        if len(shape) == 2:
            values = [rng.gauss(0.0, 0.3) for _ in range(n)]
        elif name.endswith(".weight"):
            values = [1.0 + rng.gauss(0.0, 0.2) for _ in range(n)]
        else:
            values = [rng.gauss(0.0, 0.2) for _ in range(n)]
        params[name] = Tensor.from_floats(values, shape, dtype="F64")
        done += n
        if progress is not None:
            progress("random weights", done, total)
    return params


def flatten(x: Any) -> list[float]:
    if isinstance(x, (int, float)):
        return [float(x)]
    return [v for item in x for v in flatten(item)]


def compare(pure: Any, reference: Any) -> tuple[float, float]:
    """(max absolute error, max absolute error / max |reference|)."""
    a, b = flatten(pure), flatten(reference)
    if len(a) != len(b):
        return math.inf, math.inf
    err = max((abs(x - y) for x, y in zip(a, b)), default=0.0)
    scale = max((abs(y) for y in b), default=0.0)
    if math.isnan(err) or any(math.isnan(x) for x in a):
        return math.nan, math.nan
    return err, err / scale if scale else err


def cached_logits(engine: PureEngine, ids: Sequence[int]) -> list[list[float]]:
    """Logits at every position, decoding one token at a time through the KV cache."""
    cache = engine.new_cache()
    first = engine.forward(ids[:2], cache, all_logits=True)
    return first + [engine.forward([t], cache) for t in ids[2:]]


def components(config: Config, rng: random.Random, params: dict[str, Tensor]):
    """(name, pure result, reference function of `ops`) for every component."""
    w = model.nested_params(params)
    c, t = config.n_embd, 7
    mat = lambda rows, cols: [[rng.gauss(0.0, 1.0) for _ in range(cols)] for _ in range(rows)]  # noqa: E731
    A, B, S, X = mat(5, 6), mat(6, 4), mat(t, t), mat(t, c)
    S2 = [[3.0 * v for v in row] for row in S]
    gain, bias, W, b = flatten(mat(1, c)), flatten(mat(1, c)), mat(c, 2 * c), flatten(mat(1, 2 * c))
    Q, K, V = mat(t, 8), mat(t, 8), mat(t, 8)
    ids = [rng.randrange(config.vocab_size) for _ in range(t)]
    eps = config.layer_norm_epsilon

    yield "matmul", ops.matmul(A, B), lambda r: r.matmul(r.asarray(A), r.asarray(B))
    yield "add", ops.add_matrices(A, A[::-1]), lambda r: r.add(r.asarray(A), r.asarray(A[::-1]))
    yield "transpose", ops.transpose(A), lambda r: r.transpose(r.asarray(A))
    yield "softmax", [ops.softmax(row) for row in S2], lambda r: r.softmax(r.asarray(S2))
    yield "causal softmax", ops.causal_softmax(S2), lambda r: r.causal_softmax(r.asarray(S2))
    yield (
        "layer norm",
        [ops.layer_norm(x, gain, bias, eps) for x in X],
        lambda r: r.layer_norm(r.asarray(X), r.asarray(gain), r.asarray(bias), eps),
    )
    yield "GELU (tanh)", [ops.gelu_vector(row) for row in S2], lambda r: r.gelu(r.asarray(S2))
    yield "linear", ops.linear(X, W, b), lambda r: r.linear(r.asarray(X), r.asarray(W), r.asarray(b))

    def weights(r):
        return {name: r.asarray(value) for name, value in w.items()}

    yield (
        "token + position embeddings",
        model.embed(ids, w["wte.weight"], w["wpe.weight"]),
        lambda r: r.embed(ids, r.asarray(w["wte.weight"]), r.asarray(w["wpe.weight"])),
    )
    yield (
        "scaled dot-product attention",
        model.attention(Q, K, V),
        lambda r: r.attention(r.asarray(Q), r.asarray(K), r.asarray(V)),
    )
    yield (
        "multi-head attention",
        model.multi_head_attention(X, w, "h.0.attn.", config.n_head),
        lambda r: r.multi_head_attention(r.asarray(X), weights(r), "h.0.attn.", config.n_head),
    )
    yield "MLP", model.mlp(X, w, "h.0.mlp."), lambda r: composite.mlp(r, r.asarray(X), weights(r), "h.0.mlp.")
    yield (
        "transformer block",
        model.transformer_block(X, w, 1, config),
        lambda r: composite.block(r, r.asarray(X), weights(r), 1, config),
    )
    yield (
        "decoder stack",
        model.decoder(X, w, config),
        lambda r: composite.decoder(r, r.asarray(X), weights(r), config),
    )
    yield (
        "final layer norm",
        model.norm_rows(X, w["ln_f.weight"], w["ln_f.bias"], eps),
        lambda r: r.layer_norm(r.asarray(X), r.asarray(w["ln_f.weight"]), r.asarray(w["ln_f.bias"]), eps),
    )
    yield (
        "output projection",
        model.output_projection(X, w["wte.weight"]),
        lambda r: r.output_projection(r.asarray(X), r.asarray(w["wte.weight"])),
    )
    reference_logits = lambda r: composite.forward(r, ids, weights(r), config)  # noqa: E731
    yield "forward pass (logits)", model.forward(ids, w, config), reference_logits
    engine = PureEngine(config, params, workers=2 if can_fork() else 1)
    try:
        cache = engine.new_cache()
        yield "engine prefill (KV cache)", engine.forward(ids, cache, all_logits=True), reference_logits
        yield "engine cached decoding", cached_logits(engine, ids), reference_logits
    finally:
        engine.close()


def run_verification(
    references: Iterable[str] = ("numpy", "torch"),
    config: Config = VERIFY_CONFIG,
    seed: int = 0,
    progress: Progress | None = None,
) -> Report:
    """Run every check; `references` names the frameworks to compare against;
    `progress(stage, done, total)` follows the work (see `Progress`)."""
    rng = random.Random(seed)
    params = random_params(config, rng, progress)
    report = Report(config=config.to_hf_dict(), seed=seed)

    # The pure engine against itself: the KV cache must change nothing.
    engine = PureEngine(config, params, workers=1)
    ids = [rng.randrange(config.vocab_size) for _ in range(9)]
    uncached = model.forward(ids, model.nested_params(params), config)
    err, rel = compare(cached_logits(engine, ids), uncached)
    report.rows.append(
        Row(
            "cached vs uncached decoding",
            SELF_CHECK,
            err,
            rel,
            PURE_TOLERANCE,
            "pass" if rel <= PURE_TOLERANCE else "fail",
        )
    )
    engine.close()

    loaded = {}
    for name in references:
        if not refs.available(name):
            report.unavailable[name] = f"{refs.FRAMEWORKS[name]} is not installed ({install_hint(name)})"
            continue
        loaded[name] = refs.load(name)
    for done, (component, pure, reference_fn) in enumerate(components(config, rng, params), 1):
        for name in references:
            if name not in loaded:
                report.rows.append(Row(component, name, None, None, None, "unavailable", report.unavailable[name]))
                continue
            r = loaded[name]
            err, rel = compare(pure, r.tolist(reference_fn(r)))
            status = "pass" if rel <= r.TOLERANCE else "fail"
            report.rows.append(Row(component, r.NAME, err, rel, r.TOLERANCE, status))
        if progress:
            progress("components", done, len(COMPONENTS))
    report.rows.extend(check_other_engines(config, params, rng, tuple(loaded), progress))
    return report


def check_other_engines(
    config: Config,
    params: dict[str, Tensor],
    rng: random.Random,
    engines: Sequence[str],
    progress: Progress | None = None,
) -> list[Row]:
    """All three engines give the same logits: the NumPy and PyTorch engines (float32)
    against the pure engine's float64 forward pass, prefill and cached decoding."""
    from .engines import load_engine

    ids = [rng.randrange(config.vocab_size) for _ in range(7)]
    expected = model.forward(ids, model.nested_params(params), config)
    rows = []
    for name in engines:
        engine = load_engine(name, config, params)
        cache = engine.new_cache()
        got = [list(map(float, row)) for row in engine.forward(ids[:4], cache, all_logits=True)]
        got += [list(map(float, engine.forward([t], cache))) for t in ids[4:]]
        err, rel = compare(got, expected)
        rows.append(
            Row(
                f"{name} engine, cached decoding",
                "pure float64",
                err,
                rel,
                ENGINE_TOLERANCE,
                "pass" if rel <= ENGINE_TOLERANCE else "fail",
            )
        )
        if progress:
            progress("engines", len(rows), len(engines))
    return rows


def format_table(report: Report) -> str:
    """The report as a text table."""
    header = ("component", "reference", "max abs error", "max rel error", "tolerance", "result")
    lines = []
    for r in report.rows:
        fmt = lambda v: "-" if v is None else f"{v:.2e}"  # noqa: E731
        lines.append(
            (
                r.component,
                r.reference,
                fmt(r.max_abs_error),
                fmt(r.max_rel_error),
                fmt(r.tolerance),
                "PASS" if r.status == "pass" else "FAIL" if r.status == "fail" else "n/a",
            )
        )
    widths = [max(len(str(x)) for x in col) for col in zip(header, *lines)]
    out = ["  ".join(h.ljust(wd) for h, wd in zip(header, widths)), "  ".join("-" * wd for wd in widths)]
    out += ["  ".join(str(x).ljust(wd) for x, wd in zip(line, widths)) for line in lines]
    return "\n".join(out)
