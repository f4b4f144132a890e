"""How fast and how large a trace of the explorer is: `POST /api/trace` over real HTTP.

    python benchmarks/explore.py                         # random 124M weights, 64 tokens, numpy engine
    python benchmarks/explore.py --tokens 128 --rounds 5
    python benchmarks/explore.py --model runs/tiny --engine pure

The target (issue 14): a trace of 64 tokens of the 124M shape on the NumPy engine answers
in at most 1.5 s with at most 2 MB of JSON. The app runs under uvicorn on 127.0.0.1 in
this process (a thread); the client is urllib, so the time is what a browser waits for:
the forward pass with its recorder, the logit lens (12 layers x 64 positions x 50257 logits),
the next-token distribution, and encoding the JSON. Each round traces a different text
(the explorer keeps no traces, only the last logits). The table shows the best and the
median of the rounds, the server's own split of the time, the size of each part, and the
CPU time the process spent per answer (all its threads): on a machine shared with other
work the wall-clock times stretch, the CPU time much less, so it says what a quiet machine
would take (with one BLAS thread, OPENBLAS_NUM_THREADS=1, CPU time is that wall time).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

SEED = 1234
TEXT = ROOT / "tests" / "data" / "the-verdict.txt"
TARGET_SECONDS = 1.5
TARGET_BYTES = 2_000_000


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="a model to load (default: random weights of --size)")
    p.add_argument("--size", default="gpt2", help="preset shape of the random model (default gpt2 = 124M)")
    p.add_argument("--engine", default="numpy", help="engine that traces (default numpy)")
    p.add_argument("--tokens", type=int, default=64, help="tokens in each traced text (default 64)")
    p.add_argument("--rounds", type=int, default=5, help="traces to time (default 5)")
    p.add_argument(
        "--threads", type=int, default=None, help="BLAS threads of the numpy engine (default: the library's)"
    )
    return p.parse_args(argv)


def load(args: argparse.Namespace):
    if args.model:
        from gpt2.weights import load_model

        return load_model(args.model)
    from random_weights import random_model

    return random_model(args.size, SEED)


def texts(tokenizer, n_tokens: int, rounds: int) -> list[list[int]]:
    """`rounds` different windows of n_tokens ids from the-verdict.txt."""
    ids = tokenizer.encode(TEXT.read_text(encoding="utf-8"))
    step = max(1, (len(ids) - n_tokens) // max(1, rounds))
    return [ids[i * step : i * step + n_tokens] for i in range(rounds)]


def post(url: str, body: dict) -> tuple[float, float, bytes]:
    """(wall seconds, CPU seconds of this process, the answer's bytes)."""
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    start, cpu = time.perf_counter(), time.process_time()
    with urllib.request.urlopen(request, timeout=300) as response:
        data = response.read()
    return time.perf_counter() - start, time.process_time() - cpu, data


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from gpt2.explore.app import create_app
    from gpt2.explore.explorer import Explorer
    from gpt2.server.run import BackgroundServer

    print(f"loading {'random ' + args.size if not args.model else args.model} ...", file=sys.stderr)
    config, params = load(args)
    options = {"threads": args.threads} if args.threads else {}
    explorer = Explorer(
        config, params, name=args.model or f"random {args.size}", engine=args.engine, engine_options=options
    )
    explorer.engine()
    server = BackgroundServer(create_app(explorer), start_timeout=30).start()
    base = server.url
    n_tokens = min(args.tokens, explorer.max_tokens)
    windows = texts(explorer.tokenizer, n_tokens, args.rounds + 1)
    post(base + "/api/trace", {"ids": windows[-1]})  # warm-up: first-touch of buffers and caches
    seconds, cpu_seconds, sizes, splits = [], [], [], []
    for ids in windows[: args.rounds]:
        elapsed, cpu, data = post(base + "/api/trace", {"ids": ids})
        answer = json.loads(data)
        seconds.append(elapsed)
        cpu_seconds.append(cpu)
        sizes.append(len(data))
        splits.append(answer["timings_ms"])
        parts = {key: len(json.dumps(value, separators=(",", ":"))) for key, value in answer.items()}
    server.stop()
    explorer.close()

    best, median = min(seconds), statistics.median(seconds)
    c = config
    print(
        f"\nPOST /api/trace: {c.n_layer} layers x {c.n_head} heads, d {c.n_embd}, {c.num_parameters() / 1e6:.0f}M "
        f"parameters, {n_tokens} tokens, {args.engine} engine, {args.rounds} rounds\n"
    )
    rows = [
        ("answer time, best", f"{1e3 * best:.0f} ms"),
        ("answer time, median", f"{1e3 * median:.0f} ms"),
        ("  server: forward + recorder", f"{statistics.median(s['forward'] for s in splits):.0f} ms"),
        ("  server: logit lens", f"{statistics.median(s['logit_lens'] for s in splits):.0f} ms"),
        ("  server: whole answer", f"{statistics.median(s['total'] for s in splits):.0f} ms"),
        ("CPU time per answer, median", f"{1e3 * statistics.median(cpu_seconds):.0f} ms"),
        ("JSON size", f"{max(sizes) / 1e6:.2f} MB"),
        *((f"  {key}", f"{size / 1e3:.0f} KB") for key, size in sorted(parts.items(), key=lambda kv: -kv[1])[:5]),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"| {'':{width}} | {'':>10} |\n| {'-' * width} | {'-' * 10}: |")
    for label, value in rows:
        print(f"| {label:{width}} | {value:>10} |")
    target = f"target: <= {TARGET_SECONDS} s and <= {TARGET_BYTES / 1e6:.0f} MB"
    ok = median <= TARGET_SECONDS and max(sizes) <= TARGET_BYTES
    print(f"\n{target} (median time, largest answer): {'met' if ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
