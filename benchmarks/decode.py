"""Decoding speed of every engine, and of `transformers`, on one model, prompt and token count.

    python benchmarks/decode.py                     # random 124M fp32 weights, 32 + 128 tokens
    python benchmarks/decode.py --engines numpy,torch --rounds 3
    python benchmarks/decode.py --model gpt2 --pure --pure-tokens 8
    python benchmarks/decode.py --engines numpy --new-tokens 64
    python benchmarks/decode.py --engines numpy,numpy@1,torch,torch+blas,torch@1+blas   # threads, kernels

Each engine runs in its own process (so its peak memory is its own), --rounds
times, interleaved with the others, and the best round is shown (the machine
may be shared: a burst of load elsewhere then spoils one round, not the table).
Each run loads the same weights, warms up, then times the prefill of a
32-token prompt and 128 greedy decoding steps. `transformers.GPT2LMHeadModel.generate` (greedy,
use_cache=True) runs the same prompt and count; its decode steps are timed by a
streamer that notes when each token arrives. The roofline is the fastest a batch-1 decoder can go:
each token reads every weight once, so tokens/s <= memory bandwidth / model bytes.
Bandwidth is measured here with a large NumPy sum (read only) and copy.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

SEED = 0
# One thread as well as the default: on a machine whose other core is busy, a two-thread
# kernel waits for it at every step, and one thread is several times faster.
DEFAULT_ENGINES = "numpy,numpy@1,torch,torch@1"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="a model to load (default: random weights, --size shape)")
    p.add_argument("--size", default="gpt2", help="preset shape of the random model (default gpt2 = 124M)")
    p.add_argument("--prompt-tokens", type=int, default=32)
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument(
        "--engines",
        default=DEFAULT_ENGINES,
        help=f"comma-separated (default {DEFAULT_ENGINES}); NAME@N runs with N threads (numpy: "
        "threadpoolctl; transformers@1 is added when a one-thread engine runs), "
        "torch+blas / torch+onednn picks the torch engine's CPU kernel",
    )
    p.add_argument("--pure", action="store_true", help="also the pure engine (with --pure-tokens new tokens)")
    p.add_argument("--pure-tokens", type=int, default=8)
    p.add_argument("--torch-dtype", default="float32")
    p.add_argument("--no-hf", action="store_true", help="skip transformers")
    p.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="run every engine this many times, interleaved, and keep each one's best (default 2)",
    )
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


# --- the model --------------------------------------------------------------------------------


def load(args):
    from gpt2.config import Config
    from gpt2.params import param_shapes
    from gpt2.tensor import Tensor

    if args.model:
        from gpt2.weights import load_model

        return load_model(args.model)
    config = Config.preset(args.size)
    rng = np.random.default_rng(SEED)
    params = {}
    for name, shape in param_shapes(config).items():
        if len(shape) == 2:
            values = rng.standard_normal(shape, dtype=np.float32) * np.float32(0.02)
        elif name.endswith("ln_1.weight") or name.endswith("ln_2.weight") or name == "ln_f.weight":
            values = np.ones(shape, np.float32)
        else:
            values = np.zeros(shape, np.float32)
        params[name] = Tensor(shape, "F32", values.tobytes())
    return config, params


def prompt_ids(config, n):
    return np.random.default_rng(SEED + 1).integers(0, config.vocab_size, n).tolist()


def peak_rss_mb() -> float:
    """This process's peak resident memory. VmHWM restarts at exec; ru_maxrss would
    include the parent's memory at fork time."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024 if sys.platform != "darwin" else 1024**2)


# --- one engine, in a worker process ------------------------------------------------------------


def run_engine(args, name: str) -> dict:
    from gpt2.engines import load_engine
    from gpt2.generation.sampling import Sampler, SamplingConfig

    label = name
    name, _, kernel = name.partition("+")  # "torch+blas": the torch engine's BLAS kernel
    name, _, threads = name.partition("@")  # "torch@1": one thread
    config, params = load(args)
    options = {"device": "cpu", "dtype": args.torch_dtype} if name == "torch" else {}
    if kernel:
        options["kernel"] = kernel
    if threads and name == "torch":
        options["threads"] = int(threads)
    elif threads:  # NumPy's BLAS threads, for this benchmark process only
        from threadpoolctl import threadpool_limits

        threadpool_limits(int(threads))
    start = time.perf_counter()
    engine = load_engine(name, config, params, **options)
    load_s = time.perf_counter() - start
    del params
    ids = prompt_ids(config, args.prompt_tokens)
    n_new = args.pure_tokens if name == "pure" else args.new_tokens
    greedy = Sampler(SamplingConfig(temperature=0))
    if name != "pure":  # warm up: first calls pay for lazy allocation and kernel selection
        cache = engine.new_cache()
        logits = engine.forward(ids, cache)
        for _ in range(4):
            logits = engine.forward([greedy.sample(logits)], cache)
    cache = engine.new_cache()
    t0 = time.perf_counter()
    logits = engine.forward(ids, cache)
    prefill_s = time.perf_counter() - t0
    steps = []
    for _ in range(n_new - 1):  # as generate(max_new_tokens=n_new): one prefill, n_new - 1 steps
        t = time.perf_counter()
        logits = engine.forward([greedy.sample(logits)], cache)
        steps.append(time.perf_counter() - t)
    engine.close()
    count = f"{threads} thread{'s' if threads != '1' else ''}" if threads else ""
    if name == "torch":
        label = f"torch ({engine.kernel}{', ' + count if count else ''})"
    elif threads:
        label = f"{name} ({count})"
    return {
        "engine": label,
        "load_s": load_s,
        "prefill_ms": 1e3 * prefill_s,
        "new_tokens": n_new,
        "tokens_per_s": len(steps) / sum(steps),
        "median_step_ms": 1e3 * statistics.median(steps),
        "peak_mb": peak_rss_mb(),
    }


def run_transformers(args, threads: str = "") -> dict:
    import torch
    import transformers

    if threads:
        torch.set_num_threads(int(threads))

    config, params = load(args)
    from gpt2.engines.torch.model import tensor_to_torch

    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(**config.to_hf_dict())).eval()
    hf.load_state_dict({"transformer." + k: tensor_to_torch(t).float() for k, t in params.items()}, strict=False)
    hf.tie_weights()
    del params
    ids = torch.tensor([prompt_ids(config, args.prompt_tokens)])
    n_new = args.new_tokens
    kwargs = dict(do_sample=False, use_cache=True, pad_token_id=0, eos_token_id=None)
    with torch.inference_mode():
        hf.generate(ids, max_new_tokens=4, min_new_tokens=4, **kwargs)  # warm up
        t0 = time.perf_counter()
        hf(ids, use_cache=True)
        prefill_s = time.perf_counter() - t0
        clock = Clock()
        t0 = time.perf_counter()
        out = hf.generate(ids, max_new_tokens=n_new, min_new_tokens=n_new, streamer=clock, **kwargs)
        generate_s = time.perf_counter() - t0
    assert out.shape[1] == ids.shape[1] + n_new
    steps = [b - a for a, b in zip(clock.times[1:], clock.times[2:])]  # times[0]: the prompt
    label = f"transformers ({threads} thread{'s' if threads != '1' else ''})" if threads else "transformers"
    return {
        "engine": label,
        "prefill_ms": 1e3 * prefill_s,
        "new_tokens": n_new,
        "tokens_per_s": len(steps) / sum(steps) if steps else (n_new - 1) / (generate_s - prefill_s),
        "median_step_ms": 1e3 * statistics.median(steps) if steps else None,
        "peak_mb": peak_rss_mb(),
        "load_s": None,
    }


class Clock:
    """A `generate(streamer=...)` that notes when each token arrives (the first call is the prompt)."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def put(self, value) -> None:
        self.times.append(time.perf_counter())

    def end(self) -> None:
        pass


# --- the machine --------------------------------------------------------------------------------


def memory_bandwidth_gbs() -> tuple[float, float]:
    """(read GB/s from a large sum, read+write GB/s from a large copy), best of 5."""
    a = np.ones(1 << 28 >> 2, dtype=np.float32)  # 256 MiB: far beyond any cache
    b = np.empty_like(a)
    best_sum = best_copy = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        a.sum()
        best_sum = min(best_sum, time.perf_counter() - t)
        t = time.perf_counter()
        np.copyto(b, a)
        best_copy = min(best_copy, time.perf_counter() - t)
    return a.nbytes / best_sum / 1e9, 2 * a.nbytes / best_copy / 1e9


def blas_info() -> str:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "threadpoolctl not installed"
    rows = [
        f"{i.get('internal_api')} {i.get('version')} kernel={i.get('architecture')} threads={i.get('num_threads')}"
        for i in threadpool_info()
    ]
    return "; ".join(rows) or "none found"


# --- the table --------------------------------------------------------------------------------


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        if args.worker.startswith("transformers"):
            result = run_transformers(args, args.worker.partition("@")[2])
        else:
            result = run_engine(args, args.worker)
        print(json.dumps(result))
        return 0
    from gpt2.config import Config

    config = load(args)[0] if args.model else Config.preset(args.size)
    names = [n for n in args.engines.split(",") if n] + (["pure"] if args.pure else [])
    if not args.no_hf:
        names += ["transformers"] + (["transformers@1"] if any("@1" in n for n in names) else [])
    read_gbs, copy_gbs = memory_bandwidth_gbs()
    weight_bytes = 4 * (config.num_parameters() - config.n_ctx * config.n_embd)  # fp32, one wpe row
    roofline = read_gbs * 1e9 / weight_bytes
    print(
        f"model: {args.model or 'random ' + args.size} ({config.num_parameters() / 1e6:.0f}M params, "
        f"{weight_bytes / 1e6:.0f} MB read per token in fp32); prompt {args.prompt_tokens} tokens, "
        f"{args.new_tokens} new tokens (pure: {args.pure_tokens})"
    )
    print(
        f"machine: {os.cpu_count()} cpus; memory bandwidth {read_gbs:.1f} GB/s read (sum), "
        f"{copy_gbs:.1f} GB/s copy; roofline {roofline:.1f} tokens/s"
    )
    print(f"BLAS (numpy): {blas_info()}; OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', 'unset')}")
    best: dict[str, dict] = {}  # per engine, the round with the highest decode rate
    for round_ in range(args.rounds):
        for name in names:  # interleaved, so that a burst of load elsewhere hits one round only
            cmd = [
                sys.executable,
                __file__,
                "--worker",
                name,
                "--size",
                args.size,
                "--prompt-tokens",
                str(args.prompt_tokens),
                "--new-tokens",
                str(args.new_tokens),
                "--pure-tokens",
                str(args.pure_tokens),
                "--torch-dtype",
                args.torch_dtype,
            ]
            if args.model:
                cmd += ["--model", args.model]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                print(f"{name}: failed\n{done.stderr.strip()[-2000:]}", file=sys.stderr)
                continue
            r = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"  round {round_ + 1}: {r['engine']}: {r['tokens_per_s']:.1f} tokens/s", file=sys.stderr)
            if name not in best or r["tokens_per_s"] > best[name]["tokens_per_s"]:
                best[name] = r
    results = [best[n] for n in names if n in best]
    hf = next((r["tokens_per_s"] for r in results if r["engine"] == "transformers"), None)
    hf1 = next((r["tokens_per_s"] for r in results if r["engine"] == "transformers (1 thread)"), None)
    # The machine may be shared: the mean rate counts every stall, the median step shows
    # the undisturbed speed. Compare engines within one run.
    print()
    print(
        "| engine | prefill ms | decode tokens/s | x transformers | % of roofline | median step ms "
        "(tokens/s) | peak RSS MB |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        base = hf1 if "1 thread" in r["engine"] and hf1 else hf  # compare like with like
        ratio = f"{r['tokens_per_s'] / base:.2f}" if base else "-"
        median = r["median_step_ms"]
        step = f"{median:.1f} ({1e3 / median:.1f})" if median else "-"
        label = r["engine"] + (f" ({r['new_tokens']} tokens)" if r["new_tokens"] != args.new_tokens else "")
        if r["engine"].startswith("torch") and args.torch_dtype != "float32":
            label += f" {args.torch_dtype}"
        print(
            f"| {label} | {r['prefill_ms']:.0f} | {r['tokens_per_s']:.1f} | {ratio} | "
            f"{100 * r['tokens_per_s'] / roofline:.0f}% | {step} | {r['peak_mb']:.0f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
