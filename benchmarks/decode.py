"""Decoding speed of every engine at every precision, beside transformers and llama.cpp, in one run.

    python benchmarks/decode.py                     # random 124M weights, 32-token prompt + 128 tokens
    python benchmarks/decode.py --rounds 3
    python benchmarks/decode.py --engines numpy,torch:int8 --no-llama
    python benchmarks/decode.py --engines numpy,numpy@1,numpy+blas,torch+blas,torch@1:bf16   # threads, kernels
    python benchmarks/decode.py --model gpt2 --pure --pure-tokens 8

An engine is written NAME[@THREADS][+KERNEL][:PRECISION] (numpy's kernels: its C products by
default, +blas for NumPy and BLAS only; torch's: see pick_kernel): precision fp32 (default), bf16 or fp16
(the weights rounded to half precision: the torch engine's dtype; NumPy's dtype="bfloat16" keeps
bf16 weights for its C kernels, and widens an fp16 file to fp32 as it loads), int8
(load_engine(quantize="int8"); NumPy multiplies int8 in its C kernels), int8-load (NumPy
dequantizes once, at load) or int8-layer (NumPy dequantizes slice by slice before each product).

Each of ours runs in its own process (so its peak memory is its own), --rounds times,
interleaved with the others, and the best round is shown (the machine may be shared: a burst
of load elsewhere then spoils one round, not the table). Each run loads the same weights, warms
up, then times the prefill of a 32-token prompt and 128 greedy decoding steps.
`transformers.GPT2LMHeadModel.generate` (greedy, use_cache=True) runs the same prompt and count;
its decode steps are timed by a streamer that notes when each token arrives. llama.cpp's own
benchmark (`../shared/tools/llama-bench.sh`: llama-bench, 2 threads, pp32 and tg128, 3
repetitions) runs on the same weights written as a Hugging Face directory, at F32, F16 and Q8_0,
in the same run, when the script is there (it says so when it is not).

The roofline is the fastest a batch-1 decoder can go: each token reads every weight once, so
tokens/s <= memory bandwidth / bytes of weights read per token (which depends on the precision
the products read: int8 dequantized at load reads fp32). Bandwidth is measured with every core
reading at once (one process per core, each summing its own 256 MiB array), since decoding
streams the weights with every core.
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SEED = 0
HERE = Path(__file__).resolve().parent
DEFAULT_ENGINES = "numpy,numpy+blas,numpy:bf16,numpy:int8,numpy:int8-load,torch,torch:bf16,torch:fp16,torch:int8"
# ../shared/tools/llama-bench.sh beside the repository (a worktree may sit one level deeper)
LLAMA_BENCH = next(
    (
        d / "shared" / "tools" / "llama-bench.sh"
        for d in HERE.parents
        if (d / "shared" / "tools" / "llama-bench.sh").is_file()
    ),
    HERE.parent.parent / "shared" / "tools" / "llama-bench.sh",
)
LLAMA_TYPES = ("f32", "f16", "q8_0")
PRECISIONS = ("fp32", "bf16", "fp16", "int8", "int8-load", "int8-layer")
TORCH_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
# The CPU flags that decide the precision paths (see gpt2.engines.cpu).
RELEVANT_FLAGS = (
    "avx2 fma f16c avx512f avx512bw avx512_vnni avx_vnni avx512_bf16 avx512_fp16 amx_tile amx_bf16 amx_int8 amx_fp16"
).split()


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="a model to load (default: random weights, --size shape)")
    p.add_argument("--size", default="gpt2", help="preset shape of the random model (default gpt2 = 124M)")
    p.add_argument("--prompt-tokens", type=int, default=32)
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--engines", default=DEFAULT_ENGINES, help=f"comma-separated (default {DEFAULT_ENGINES})")
    p.add_argument("--pure", action="store_true", help="also the pure engine (with --pure-tokens new tokens)")
    p.add_argument("--pure-tokens", type=int, default=8)
    p.add_argument("--no-hf", action="store_true", help="skip transformers")
    p.add_argument("--no-llama", action="store_true", help="skip llama.cpp")
    p.add_argument("--llama-script", default=str(LLAMA_BENCH), help="llama-bench.sh (default %(default)s)")
    p.add_argument("--rounds", type=int, default=2, help="interleaved runs of each engine; the best is kept")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="run every engine (without its own @N), transformers and llama.cpp with N threads "
        "(default: each library's own, and llama.cpp's 2); --threads 1 is the steadier comparison on a busy machine",
    )
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


# --- the model --------------------------------------------------------------------------------


def load(args):
    if args.model:
        from gpt2.weights import load_model

        return load_model(args.model)
    from random_weights import random_model

    return random_model(args.size, SEED)


def prompt_ids(config, n):
    return np.random.default_rng(SEED + 1).integers(0, config.vocab_size, n).tolist()


def rss_mb() -> float | None:
    """This process's resident memory now (Linux), after the weights it loaded from were freed."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return None


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


def parse_engine(spec: str) -> tuple[str, str, str, str]:
    """NAME[@THREADS][+KERNEL][:PRECISION] -> (name, threads, kernel, precision)."""
    rest, _, precision = spec.partition(":")
    rest, _, kernel = rest.partition("+")
    name, _, threads = rest.partition("@")
    precision = precision or "fp32"
    if precision not in PRECISIONS:
        raise SystemExit(f"{spec}: unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    return name, threads, kernel, precision


def bytes_per_token(config, precision: str, name: str) -> int:
    """Bytes of weights the products read per token at batch 1 (one row of wpe, the rest all)."""
    matrices = config.vocab_size * config.n_embd + config.n_layer * 12 * config.n_embd**2
    vectors = config.num_parameters() - config.n_ctx * config.n_embd - matrices + config.n_embd
    if name == "numpy" and precision in ("fp16", "int8-load"):  # widened to fp32 at load
        precision = "fp32"
    per_weight = {"fp32": 4, "bf16": 2, "fp16": 2, "int8": 1, "int8-layer": 1}[precision]
    return matrices * per_weight + 4 * vectors


# --- one engine, in a worker process ------------------------------------------------------------


def run_engine(args, spec: str) -> dict:
    from gpt2.engines import load_engine
    from gpt2.generation.sampling import Sampler, SamplingConfig
    from gpt2.weights.half import cast_params

    name, threads, kernel, precision = parse_engine(spec)
    config, params = load(args)
    options: dict = {"device": "cpu"} if name == "torch" else {}
    if kernel and name == "numpy":  # numpy+blas: NumPy and BLAS only, no C kernels
        if kernel != "blas":
            raise SystemExit(f"{spec}: the numpy engine's kernels are C (default) or blas")
        options["native"] = False
    elif kernel:
        options["kernel"] = kernel
    if threads and name == "torch":
        options["threads"] = int(threads)
    elif threads:  # NumPy's BLAS threads, for this benchmark process only
        from threadpoolctl import threadpool_limits

        threadpool_limits(int(threads))
    quantize = "int8" if precision.startswith("int8") else None
    if precision in ("int8-load", "int8-layer"):
        options.update(native=False, dequantize=precision.split("-")[1])
    if precision == "bf16" and name == "numpy":
        options["dtype"] = "bfloat16"
    elif precision in ("bf16", "fp16"):
        if name == "torch":
            options["dtype"] = TORCH_DTYPES[precision]
        else:  # a half-precision file: the engine widens it as it loads
            params = cast_params(params, TORCH_DTYPES[precision])
    start = time.perf_counter()
    engine = load_engine(name, config, params, quantize=quantize, **options)
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
        # The timed run reuses the warmed cache, emptied, as llama-bench reuses its context: a
        # fresh cache's first writes fault its pages in (about 3 ms of a 124M prefill here).
        cache.clear_row(0)
    else:
        cache = engine.new_cache()
    t0 = time.perf_counter()
    logits = engine.forward(ids, cache)
    prefill_s = time.perf_counter() - t0
    steps = []
    cpu = time.process_time()
    for _ in range(n_new - 1):  # as generate(max_new_tokens=n_new): one prefill, n_new - 1 steps
        t = time.perf_counter()
        logits = engine.forward([greedy.sample(logits)], cache)
        steps.append(time.perf_counter() - t)
    cpu = time.process_time() - cpu
    gc.collect()
    resident = rss_mb()  # the engine, its cache and the interpreter: what serving would keep
    engine.close()
    details = [f"{threads} thread{'s' if threads != '1' else ''}"] if threads else []
    if name == "torch":
        native = engine.kernel == "native"
        details.insert(0, engine.kernel if precision == "fp32" or native else "int8 kernel" if quantize else "")
    if name == "numpy":
        details.insert(0, "C" if getattr(engine, "kernels", None) is not None else "blas")
    label = f"{name} {precision}" + (f" ({', '.join(d for d in details if d)})" if any(details) else "")
    return {
        "engine": label,
        "bytes_per_token": bytes_per_token(config, precision, name),
        "load_s": load_s,
        "prefill_ms": 1e3 * prefill_s,
        "new_tokens": n_new,
        "tokens_per_s": len(steps) / sum(steps),
        "median_step_ms": 1e3 * statistics.median(steps),
        "cpu_ms": 1e3 * cpu / len(steps),
        "rss_mb": resident,
        "peak_mb": peak_rss_mb(),
        "notices": list(getattr(engine, "notices", [])),
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
    label = "transformers fp32" + (f" ({threads} thread{'s' if threads != '1' else ''})" if threads else "")
    return {
        "engine": label,
        "bytes_per_token": bytes_per_token(config, "fp32", "transformers"),
        "prefill_ms": 1e3 * prefill_s,
        "new_tokens": n_new,
        "tokens_per_s": len(steps) / sum(steps) if steps else (n_new - 1) / (generate_s - prefill_s),
        "median_step_ms": 1e3 * statistics.median(steps) if steps else None,
        "cpu_ms": None,
        "peak_mb": peak_rss_mb(),
        "load_s": None,
        "notices": [],
    }


class Clock:
    """A `generate(streamer=...)` that notes when each token arrives (the first call is the prompt)."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def put(self, value) -> None:
        self.times.append(time.perf_counter())

    def end(self) -> None:
        pass


# --- llama.cpp ------------------------------------------------------------------------------------


def model_directory(args) -> Path:
    """A Hugging Face directory holding the benchmark's weights (written once per shape and seed;
    llama-bench.sh converts it to GGUF and caches that by the directory's path)."""
    if args.model and Path(args.model).is_dir() and (Path(args.model) / "config.json").is_file():
        return Path(args.model)
    from gpt2.weights import save_model

    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "gpt2-bench"
    directory = cache / (f"random-{args.size}-seed{SEED}" if not args.model else Path(args.model).name)
    if not (directory / "model.safetensors").is_file():
        config, params = load(args)
        save_model(directory, config, params)
    return directory


def run_llama(args, llama_type: str, directory: Path) -> dict | str:
    """llama-bench's pp and tg rows for one weight type, or why there are none."""
    script = Path(args.llama_script)
    if not script.is_file() or shutil.which("bash") is None:
        return f"llama.cpp: not run ({script} is not here)"
    cmd = ["bash", str(script), str(directory), llama_type]
    threads = args.threads or 2  # the script's own -t 2; llama-bench adds a -t to the list
    if threads != 2:
        cmd += ["-t", str(threads)]
    # the script runs pp32 and tg128; llama-bench adds further sizes rather than replacing them
    if args.prompt_tokens != 32:
        cmd += ["-p", str(args.prompt_tokens)]
    if args.new_tokens != 128:
        cmd += ["-n", str(args.new_tokens)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    rates = {}
    wanted = {"pp": args.prompt_tokens, "tg": args.new_tokens}
    for line in done.stdout.splitlines():  # | model | size | params | backend | threads | ... | test | t/s |
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        m = re.fullmatch(r"(pp|tg)(\d+)", cells[-2]) if len(cells) >= 5 else None
        if m and int(m.group(2)) == wanted[m.group(1)] and cells[4] == str(threads):
            rates[m.group(1)] = float(cells[-1].split("±")[0])
    if done.returncode != 0 or set(rates) != {"pp", "tg"}:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return f"llama.cpp {llama_type}: failed ({tail})"
    from gpt2.config import Config

    config = load(args)[0] if args.model else Config.preset(args.size)
    precision = {"f32": "fp32", "f16": "fp16", "q8_0": "int8"}[llama_type]
    q8_bytes = bytes_per_token(config, "int8", "llama") * 34 // 32  # Q8_0: a 2-byte scale per 32 weights
    return {
        "engine": f"llama.cpp {llama_type.upper()}"
        + (f" ({threads} thread{'s' * (threads != 1)})" if args.threads else ""),
        "bytes_per_token": q8_bytes if llama_type == "q8_0" else bytes_per_token(config, precision, "llama"),
        "prefill_ms": 1e3 * args.prompt_tokens / rates["pp"],
        "new_tokens": args.new_tokens,
        "tokens_per_s": rates["tg"],
        "median_step_ms": None,
        "cpu_ms": None,
        "peak_mb": None,
        "load_s": None,
        "notices": [],
    }


# --- the machine --------------------------------------------------------------------------------


def _reader(array_bytes: int, rounds: int, barrier, results) -> None:
    a = np.ones(array_bytes // 4, dtype=np.float32)  # touched: every page mapped before timing
    spans = []
    for _ in range(rounds):
        barrier.wait()
        t = time.perf_counter()
        a.sum()
        spans.append((t, time.perf_counter()))
    results.put(spans)


def memory_bandwidth_gbs(workers: int, array_bytes: int = 1 << 28, rounds: int = 5) -> float:
    """Read bandwidth with `workers` processes summing their own arrays at once (best round):
    all the bytes read / (last reader's end - first reader's start). perf_counter is the
    system-wide monotonic clock on Linux, so the processes' times compare."""
    ctx = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
    barrier, results = ctx.Barrier(workers), ctx.Queue()
    procs = [ctx.Process(target=_reader, args=(array_bytes, rounds, barrier, results)) for _ in range(workers)]
    for p in procs:
        p.start()
    spans = [results.get() for _ in procs]
    for p in procs:
        p.join()
    best = min(max(s[r][1] for s in spans) - min(s[r][0] for s in spans) for r in range(rounds))
    return workers * array_bytes / best / 1e9


def cpu_header() -> str:
    from gpt2.engines.cpu import cpu_flags, cpu_name

    flags = cpu_flags()
    have = [f for f in RELEVANT_FLAGS if f in flags]
    missing = [f for f in ("avx512_bf16", "amx_bf16", "avx512_fp16") if f not in flags]
    return f"cpu: {cpu_name()}, {os.cpu_count()} cpus; flags: {' '.join(have) or 'none found'}" + (
        f" (no {', '.join(missing)})" if missing else ""
    )


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


def worker_command(args, name: str) -> list[str]:
    cmd = [sys.executable, __file__, "--worker", name, "--size", args.size]
    cmd += ["--prompt-tokens", str(args.prompt_tokens), "--new-tokens", str(args.new_tokens)]
    cmd += ["--pure-tokens", str(args.pure_tokens)]
    return cmd + (["--model", args.model] if args.model else [])


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
    if args.threads:  # NAME[+KERNEL][:PRECISION] -> NAME@N[+KERNEL][:PRECISION]
        names = [n if "@" in n else re.sub(r"^([a-z]+)", rf"\1@{args.threads}", n) for n in names]
    for n in names:
        parse_engine(n)  # a typo fails now, not after minutes of benchmarking
    if not args.no_hf:
        hf = f"transformers@{args.threads}" if args.threads else "transformers"
        names += [hf] + (["transformers@1"] if hf != "transformers@1" and any("@1" in n for n in names) else [])
    bandwidth = memory_bandwidth_gbs(os.cpu_count() or 1)
    fp32_bytes = bytes_per_token(config, "fp32", "")
    print(
        f"model: {args.model or 'random ' + args.size} ({config.num_parameters() / 1e6:.0f}M params, "
        f"{fp32_bytes / 1e6:.0f} MB of weights read per token in fp32); prompt {args.prompt_tokens} tokens, "
        f"{args.new_tokens} new tokens (pure: {args.pure_tokens})"
    )
    print(cpu_header())
    print(
        f"memory bandwidth {bandwidth:.1f} GB/s (read, {os.cpu_count()} processes at once); "
        f"roofline {bandwidth * 1e9 / fp32_bytes:.1f} tokens/s in fp32, "
        f"{bandwidth * 1e9 / bytes_per_token(config, 'int8', 'torch'):.1f} in int8"
    )
    print(f"BLAS (numpy): {blas_info()}; OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', 'unset')}")
    best: dict[str, dict] = {}  # per engine, the round with the highest decode rate
    peers: list[str] = []  # llama.cpp's rows
    notes: list[str] = []
    llama_types = [] if args.no_llama else list(LLAMA_TYPES)
    directory = model_directory(args) if llama_types and Path(args.llama_script).is_file() else None
    for round_ in range(args.rounds):
        for name in names:  # interleaved, so that a burst of load elsewhere hits one round only
            done = subprocess.run(worker_command(args, name), capture_output=True, text=True)
            if done.returncode != 0:
                print(f"{name}: failed\n{done.stderr.strip()[-2000:]}", file=sys.stderr)
                continue
            r = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"  round {round_ + 1}: {r['engine']}: {r['tokens_per_s']:.1f} tokens/s", file=sys.stderr)
            if name not in best or r["tokens_per_s"] > best[name]["tokens_per_s"]:
                best[name] = r
        if round_ == 0:  # llama-bench repeats its own runs three times: once is enough here
            for t in llama_types:
                r = run_llama(args, t, directory) if directory else f"llama.cpp: not run ({args.llama_script} absent)"
                if isinstance(r, str):
                    notes.append(r)
                    print(r, file=sys.stderr)
                    if directory is None:
                        break
                    continue
                print(f"  llama.cpp {t}: {r['tokens_per_s']:.1f} tokens/s", file=sys.stderr)
                best[r["engine"]] = r
                peers.append(r["engine"])
    results = [best[n] for n in names + peers if n in best]
    print()
    print(
        "| engine | prefill ms | decode tokens/s | x llama.cpp (same precision) | MB/token | % of roofline "
        "| median step ms | CPU ms/token | RSS MB | peak RSS MB |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    llama = {
        p: r["tokens_per_s"]
        for r in results
        for p in ("F32", "F16", "Q8_0")
        if r["engine"].split(" (")[0] == f"llama.cpp {p}"
    }
    for r in results:
        precision = r["engine"].split()[1] if len(r["engine"].split()) > 1 and "llama" not in r["engine"] else ""
        peer = {"fp32": "F32", "bf16": "F16", "fp16": "F16"}.get(
            precision, "Q8_0" if precision.startswith("int8") else None
        )
        ratio = f"{r['tokens_per_s'] / llama[peer]:.2f}" if peer in llama else "-"
        roofline = bandwidth * 1e9 / r["bytes_per_token"]
        median = f"{r['median_step_ms']:.1f}" if r["median_step_ms"] else "-"
        peak = f"{r['peak_mb']:.0f}" if r["peak_mb"] else "-"
        cpu = f"{r['cpu_ms']:.1f}" if r.get("cpu_ms") else "-"
        rss = f"{r['rss_mb']:.0f}" if r.get("rss_mb") else "-"
        label = r["engine"] + (f" ({r['new_tokens']} tokens)" if r["new_tokens"] != args.new_tokens else "")
        print(
            f"| {label} | {r['prefill_ms']:.0f} | {r['tokens_per_s']:.1f} | {ratio} | "
            f"{r['bytes_per_token'] / 1e6:.0f} | {100 * r['tokens_per_s'] / roofline:.0f}% | "
            f"{median} | {cpu} | {rss} | {peak} |"
        )
    for r in results:
        for notice in r.get("notices", []):
            print(f"note ({r['engine']}): {notice}")
    for note in notes:
        print(f"note: {note}")
    print(
        "CPU ms/token: the decode loop's processor time (every thread's, spinning included) per token; "
        "on a busy machine it is steadier than the wall clock for one-thread runs. RSS: resident memory "
        "after decoding (the engine, its cache, the interpreter); peak: including the float32 weights "
        "the worker generated (and quantized or rounded) first."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
