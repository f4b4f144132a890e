"""Training throughput: tokens/s, peak memory and model FLOPs utilisation (MFU).

    python benchmarks/train.py                    # tiny preset, CPU, batch 4 x 128 tokens
    python benchmarks/train.py --device cuda --config gpt2 --batch-size 8 --context 1024 --dtype bfloat16

MFU is the share of the machine's peak the training step achieves. The peak is
measured in this same run with a large float32 matmul (the best the hardware and
torch's BLAS can do here), and a training step is counted as
6 * (matmul parameters) + 12 * n_layer * n_embd * context FLOPs per token
(forward 2, backward 4 per parameter per token, plus attention scores; PaLM, appendix B).
Numbers from a shared machine are noisy: compare runs taken side by side.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time

import torch

from gpt2 import Config
from gpt2.engines.torch.model import GPT2
from gpt2.training.evaluate import autocast_context, pick_device
from gpt2.training.optim import make_optimizer


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_flops(device: torch.device, dtype: torch.dtype, n: int, repeats: int) -> float:
    """Best FLOP/s of an n x n matmul (2 n^3 FLOPs each)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b  # warm up the kernels
    best = float("inf")
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        a @ b
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def training_flops_per_token(config: Config, context: int) -> float:
    d = config.n_embd
    matmul_params = config.vocab_size * d + config.n_layer * 12 * d * d  # tied head + blocks
    return 6 * matmul_params + 12 * config.n_layer * d * context


def peak_rss_mib() -> float:
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return kib / 1024 / (1024 if sys.platform == "darwin" else 1)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="tiny", help="preset (default tiny)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--context", type=int, default=128)
    p.add_argument("--steps", type=int, default=10, help="timed steps (after 2 warm-up steps)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--matmul-size", type=int, default=2048, help="n of the n x n peak-FLOP/s matmul")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    device = pick_device(args.device)
    config = Config.preset(args.config)
    torch.manual_seed(0)
    model = GPT2(config).to(device)
    optimizer = make_optimizer(model, lr=3e-4, weight_decay=0.1)
    x = torch.randint(0, config.vocab_size, (args.batch_size, args.context + 1), device=device)
    inputs, targets = x[:, :-1], x[:, 1:]

    def step() -> float:
        with autocast_context(device, args.dtype):
            _, loss = model(inputs, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()

    for _ in range(2):
        step()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    synchronize(device)
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    synchronize(device)
    elapsed = time.perf_counter() - start

    tokens_per_s = args.steps * args.batch_size * args.context / elapsed
    achieved = tokens_per_s * training_flops_per_token(config, args.context)
    peak_dtype = torch.float32 if args.dtype == "float32" else getattr(torch, args.dtype)
    peak = peak_flops(device, peak_dtype, args.matmul_size, repeats=5)
    memory = (
        f"{torch.cuda.max_memory_allocated(device) / 2**20:,.0f} MiB (CUDA allocated)"
        if device.type == "cuda"
        else f"{peak_rss_mib():,.0f} MiB (process peak RSS)"
    )

    rows = [
        (
            "model",
            f"{args.config}: {config.n_layer} layers, {config.n_embd} wide, "
            f"{model.num_parameters() / 1e6:.2f}M parameters",
        ),
        ("device / dtype / threads", f"{device} / {args.dtype} / {torch.get_num_threads()}"),
        ("batch x context", f"{args.batch_size} x {args.context} = {args.batch_size * args.context} tokens/step"),
        ("step time", f"{1000 * elapsed / args.steps:,.1f} ms"),
        ("training throughput", f"{tokens_per_s:,.0f} tokens/s"),
        ("model FLOP/s (6N + attention)", f"{achieved / 1e9:,.2f} GFLOP/s"),
        (f"measured peak ({args.matmul_size}^3 matmul)", f"{peak / 1e9:,.2f} GFLOP/s"),
        ("MFU", f"{100 * achieved / peak:.1f} %"),
        ("peak memory", memory),
    ]
    width = max(len(k) for k, _ in rows)
    print(f"{'metric':<{width}}  value")
    print(f"{'-' * width}  {'-' * 40}")
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
