"""Training throughput per precision: tokens/s, CPU time, MFU, peak memory and the loss curve.

    python benchmarks/train.py                          # tiny, CPU, batch 4 x 128, float32 and bfloat16
    python benchmarks/train.py --config gpt2 --batch-size 4 --context 256 --steps 6     # the 124M shape
    python benchmarks/train.py --device cuda --config gpt2 --batch-size 8 --context 1024 --dtypes bfloat16

Every precision trains the same model (same initial weights) on the same batches of
real text (`--data`, default tinyshakespeare from ../shared/data, random tokens if it
is missing), each in a fresh process, so peak memory and the allocator start clean.
The table gives, per precision:

- wall and process CPU milliseconds per step (the CPU time is what a busy shared
  machine does not distort: on one thread, CPU time per step is the step's cost);
- tokens/s from the wall time, and MFU: model FLOP/s (6 x matmul parameters + 12 x
  layers x width x context per token; PaLM, appendix B) over the peak FLOP/s of a large
  matmul in that precision, measured in the same process; once from wall time, once
  from process CPU time (on a shared machine the second is the one to trust);
- peak memory (process RSS on the CPU, allocated memory on CUDA);

then the loss of every step side by side: a lower precision must follow float32's
curve within noise. The header names the CPU and the features that decide whether
bfloat16 is native there (AMX, AVX512-BF16; see gpt2.training.cpu_features): where
it is not, oneDNN emulates it and the bfloat16 row is slower, not faster.

`--malloc default` measures without `gpt2.training.allocator.keep_freed_memory`
(which `gpt2 train` applies on the CPU), to show what the page faults cost.
Numbers from a shared machine are noisy: compare rows taken in one run.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

from gpt2 import Config
from gpt2.engines.torch.model import GPT2
from gpt2.training.allocator import keep_freed_memory
from gpt2.training.cpu_features import cpu_bf16_support
from gpt2.training.evaluate import autocast_context, pick_device
from gpt2.training.optim import make_optimizer

REPO = Path(__file__).resolve().parents[1]
# ../shared beside a clone, or ../../shared beside a worktree under wt/
DEFAULT_DATA = (
    next(
        (
            p
            for p in (REPO.parent / "shared", REPO.parents[1] / "shared")
            if (p / "data" / "tinyshakespeare.txt").is_file()
        ),
        REPO.parent / "shared",
    )
    / "data"
    / "tinyshakespeare.txt"
)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_flops(device: torch.device, dtype: torch.dtype, n: int, repeats: int) -> tuple[float, float]:
    """Best FLOP/s of an n x n matmul (2 n^3 FLOPs each): per second of wall time, and
    per second of process CPU time (what a shared machine does not distort)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b  # warm up the kernels
    best = best_cpu = float("inf")
    for _ in range(repeats):
        synchronize(device)
        start, cpu_start = time.perf_counter(), cpu_seconds()
        a @ b
        synchronize(device)
        best = min(best, time.perf_counter() - start)
        best_cpu = min(best_cpu, max(cpu_seconds() - cpu_start, 1e-9))
    return 2 * n**3 / best, 2 * n**3 / best_cpu


def training_flops_per_token(config: Config, context: int) -> float:
    d = config.n_embd
    matmul_params = config.vocab_size * d + config.n_layer * 12 * d * d  # tied head + blocks
    return 6 * matmul_params + 12 * config.n_layer * d * context


def peak_rss_mib() -> float:
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return kib / 1024 / (1024 if sys.platform == "darwin" else 1)


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def batches(args: argparse.Namespace, config: Config, device: torch.device) -> list[torch.Tensor]:
    """args.steps + 2 batches of [B, context + 1] tokens: windows of the text, or random ids."""
    g = torch.Generator().manual_seed(0)
    n = args.steps + 2
    data = Path(args.data) if args.data else None
    if data is not None and data.is_file():
        from gpt2.tokenizer import Tokenizer

        ids = torch.tensor(Tokenizer.gpt2().encode_ordinary(data.read_text(encoding="utf-8")))
        starts = torch.randint(0, len(ids) - args.context - 1, (n, args.batch_size), generator=g)
        rows = [torch.stack([ids[s : s + args.context + 1] for s in step.tolist()]) for step in starts]
        return [r.to(device) for r in rows]
    shape = (args.batch_size, args.context + 1)
    return [torch.randint(0, config.vocab_size, shape, generator=g).to(device) for _ in range(n)]


def measure(args: argparse.Namespace, dtype: str) -> dict:
    """One precision, in this process: 2 warm-up steps, then args.steps timed ones."""
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.malloc == "keep":
        keep_freed_memory()
    device = pick_device(args.device)
    config = Config.preset(args.config)
    data = batches(args, config, device)
    torch.manual_seed(0)
    model = GPT2(config).to(device)
    optimizer = make_optimizer(model, lr=args.lr, weight_decay=0.1)

    def step(x: torch.Tensor) -> float:
        with autocast_context(device, dtype):
            _, loss = model(x[:, :-1], x[:, 1:])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()

    losses = [step(x) for x in data[:2]]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    synchronize(device)
    start, cpu_start = time.perf_counter(), cpu_seconds()
    losses += [step(x) for x in data[2:]]
    synchronize(device)
    elapsed, cpu = time.perf_counter() - start, cpu_seconds() - cpu_start
    peak_dtype = torch.float32 if dtype == "float32" else getattr(torch, dtype)
    tokens = args.steps * args.batch_size * args.context
    flops = tokens * training_flops_per_token(config, args.context)
    peak, peak_cpu = peak_flops(device, peak_dtype, args.matmul_size, repeats=5)
    return {
        "dtype": dtype,
        "wall_ms": 1000 * elapsed / args.steps,
        "cpu_ms": 1000 * cpu / args.steps,
        "tokens_per_s": tokens / elapsed,
        "model_flops": flops / elapsed,
        "model_flops_cpu": flops / cpu,
        "peak_flops": peak,
        "peak_flops_cpu": peak_cpu,
        "memory": (
            f"{torch.cuda.max_memory_allocated(device) / 2**20:,.0f} MiB (CUDA)"
            if device.type == "cuda"
            else f"{peak_rss_mib():,.0f} MiB (RSS)"
        ),
        "losses": losses,
        "threads": torch.get_num_threads(),
        "parameters": model.num_parameters(),
    }


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="tiny", help="preset (default tiny)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--context", type=int, default=128)
    p.add_argument("--steps", type=int, default=10, help="timed steps (after 2 warm-up steps)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtypes", default=None, help="comma-separated (default float32,bfloat16)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--matmul-size", type=int, default=2048, help="n of the n x n peak-FLOP/s matmul")
    p.add_argument("--data", default=str(DEFAULT_DATA), help="text to train on (missing: random tokens)")
    p.add_argument("--lr", type=float, default=3e-4, help="AdamW learning rate of the timed steps")
    p.add_argument("--malloc", choices=("keep", "default"), default="keep", help="see the module doc")
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: measure one dtype, print JSON
    args = p.parse_args(argv)
    if args.one:
        print(json.dumps(measure(args, args.one)))
        return 0

    dtypes = (args.dtypes or "float32,bfloat16").split(",")
    rows = []
    for dtype in dtypes:  # a fresh process each: clean peak memory, allocator and caches
        cmd = [sys.executable, __file__, *(argv if argv is not None else sys.argv[1:]), "--one", dtype]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"{dtype}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
            continue
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    if not rows:
        return 1

    config = Config.preset(args.config)
    support = cpu_bf16_support()
    data = Path(args.data).name if args.data and Path(args.data).is_file() else "random tokens"
    size = f"{config.n_layer} layers, {config.n_embd} wide, {rows[0]['parameters'] / 1e6:.2f}M parameters"
    print(f"model      {args.config}: {size}")
    print(f"batch      {args.batch_size} x {args.context} tokens of {data}, {args.steps} timed steps")
    print(f"device     {args.device}, {rows[0]['threads']} thread(s), torch {torch.__version__}, malloc {args.malloc}")
    if args.device == "cpu":
        print(f"cpu        {cpu_name()}")
        print(f"native bf16 {support.describe()}; also: {', '.join(support.context) or '-'}")
    print()
    header = (
        "dtype",
        "wall ms/step",
        "CPU ms/step",
        "tokens/s",
        "model GFLOP/s",
        "peak GFLOP/s",
        "MFU",
        "MFU (CPU time)",
        "peak memory",
    )
    table = [
        (
            r["dtype"],
            f"{r['wall_ms']:,.0f}",
            f"{r['cpu_ms']:,.0f}",
            f"{r['tokens_per_s']:,.0f}",
            f"{r['model_flops'] / 1e9:,.1f}",
            f"{r['peak_flops'] / 1e9:,.1f}",
            f"{100 * r['model_flops'] / r['peak_flops']:.1f} %",
            f"{100 * r['model_flops_cpu'] / r['peak_flops_cpu']:.1f} %",
            r["memory"],
        )
        for r in rows
    ]
    widths = [max(len(h), *(len(t[i]) for t in table)) for i, h in enumerate(header)]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |")
    print("| " + " | ".join("-" * w for w in widths) + " |")
    for t in table:
        print("| " + " | ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(t, widths))) + " |")
    base = rows[0]
    for r in rows[1:]:
        print(
            f"\n{r['dtype']} vs {base['dtype']}: {base['wall_ms'] / r['wall_ms']:.2f}x wall, "
            f"{base['cpu_ms'] / r['cpu_ms']:.2f}x CPU time"
        )
    print("\nloss per step (the first two are the warm-up):")
    print("step  " + "  ".join(f"{r['dtype']:>9}" for r in rows))
    for i in range(len(base["losses"])):
        print(f"{i + 1:>4}  " + "  ".join(f"{r['losses'][i]:9.4f}" for r in rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
