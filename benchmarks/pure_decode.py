"""Speed and memory of the pure-Python engine: prefill time, seconds per token, peak memory.

    python benchmarks/pure_decode.py                      # random 124M weights, 4-token prompt, 8 tokens
    python benchmarks/pure_decode.py --size gpt2-xl --storage compact --tokens 2
    python benchmarks/pure_decode.py --model path/to/model   # real weights (needs gpt2.weights)

The bar (issue 2): the seeds' pure-Python GPT-2 needs ~5 GB and ~2 minutes to hold
random 124M weights and ~54 s per token after a 4-token prompt on this 2-core
machine. Target: 124M greedy decode <= 0.6 s/token on 2 cores, CPython 3.11.
Random weights come from `gpt2.params.init_params` (standard library only) unless
--init numpy asks NumPy for them (same distribution, much quicker to make).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from gpt2 import Config  # noqa: E402
from gpt2.engines.pure.engine import PureEngine  # noqa: E402
from gpt2.generation.sampling import argmax  # noqa: E402
from gpt2.params import init_params  # noqa: E402


def memory_of(pid: int) -> tuple[int, int]:
    """(peak RSS, current PSS) in bytes of one process, from /proc (Linux)."""
    peak = pss = 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peak = int(line.split()[1]) * 1024
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                pss = int(line.split()[1]) * 1024
    except OSError:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return peak, pss


def numpy_random_params(config: Config) -> dict:
    """GPT-2's initialisation made with NumPy, float32, held without copies."""
    import numpy as np

    from gpt2.params import RESIDUAL_PROJECTIONS, param_shapes
    from gpt2.tensor import Tensor

    rng = np.random.default_rng(0)
    params = {}
    for name, shape in param_shapes(config).items():
        if len(shape) == 2:
            std = 0.02 / (2 * config.n_layer) ** 0.5 if name.endswith(RESIDUAL_PROJECTIONS) else 0.02
            values = rng.standard_normal(shape, dtype=np.float32) * np.float32(std)
        else:
            values = np.full(shape, 1.0 if name.endswith(".weight") else 0.0, dtype=np.float32)
        params[name] = Tensor(shape, "F32", memoryview(values).cast("B"))
    return params


def time_naive_token(config: Config, params: dict, prompt_tokens: int) -> float:
    """Seconds for one token the seeds' way: re-run the readable model on the whole sequence."""
    from gpt2.engines.pure.model import forward, nested_params

    weights = nested_params(params)
    prompt = [(7454 + 13 * i) % config.vocab_size for i in range(prompt_tokens)]
    t0 = time.perf_counter()
    argmax(forward(prompt, weights, config)[-1])
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="gpt2", help="preset for random weights (default gpt2 = 124M)")
    ap.add_argument("--model", help="load real weights instead (name or path)")
    ap.add_argument("--prompt-tokens", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=8, help="new tokens to decode")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--storage", default="auto", choices=["auto", "fast", "compact", "fp16"])
    ap.add_argument("--method", default=None, choices=["sumprod", "dist", "map"])
    ap.add_argument(
        "--naive",
        action="store_true",
        help="also time the seeds' way, back to back: the readable uncached model "
        "(nested lists, sum(map(mul)), the whole sequence re-run for each token)",
    )
    ap.add_argument(
        "--init",
        default="stdlib",
        choices=["stdlib", "numpy"],
        help="how to make random weights: gpt2.params.init_params (standard library, "
        "~30 s for 124M) or NumPy (same distribution, seconds; use it for gpt2-xl)",
    )
    args = ap.parse_args()

    t0 = time.perf_counter()
    if args.model:
        from gpt2.weights import load_model

        config, params = load_model(args.model)
    elif args.init == "numpy":
        config = Config.preset(args.size)
        params = numpy_random_params(config)
    else:
        config = Config.preset(args.size)
        params = init_params(config, seed=0)
    t_weights = time.perf_counter() - t0

    t0 = time.perf_counter()
    options = {"workers": args.workers, "storage": args.storage}
    if args.method:
        options["method"] = args.method
    engine = PureEngine(config, params, **options)
    t_build = time.perf_counter() - t0
    if not args.naive:
        del params

    prompt = [(7454 + 13 * i) % config.vocab_size for i in range(args.prompt_tokens)]
    cache = engine.new_cache()
    t0 = time.perf_counter()
    logits = engine.forward(prompt, cache)
    t_prefill = time.perf_counter() - t0
    steps = []
    for _ in range(args.tokens):
        token = argmax(logits)
        t0 = time.perf_counter()
        logits = engine.forward([token], cache)
        steps.append(time.perf_counter() - t0)

    peaks, psses = zip(*(memory_of(pid) for pid in [os.getpid()] + [p.pid for p in engine.matrices._processes]))
    engine.close()
    naive = time_naive_token(config, params, args.prompt_tokens) if args.naive else None
    per_token = sorted(steps)[len(steps) // 2]
    print(
        f"pure engine, {config.num_parameters() / 1e6:.0f}M parameters ({args.model or args.size}), "
        f"{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} cores"
    )
    print(f"storage={engine.storage} workers={engine.workers} method={engine.matrices.local[0].method}")
    rows = [
        ("make weights", f"{t_weights:.1f} s"),
        ("lay out for the engine", f"{t_build:.1f} s"),
        (f"prefill ({args.prompt_tokens} tokens)", f"{t_prefill:.2f} s"),
        ("decode, median per token", f"{per_token:.3f} s"),
        ("decode, mean per token", f"{sum(steps) / len(steps):.3f} s"),
        ("peak RSS, main process", f"{peaks[0] / 2**30:.2f} GiB"),
        ("memory of all processes (PSS)", f"{sum(psses) / 2**30:.2f} GiB"),
        ("seeds' pure-Python GPT-2 (124M)", "~120 s to hold weights, ~5 GB, ~54 s/token"),
    ]
    if naive is not None:
        rows.append(("naive: uncached, sum(map(mul)), 1 token", f"{naive:.1f} s"))
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")


if __name__ == "__main__":
    main()
