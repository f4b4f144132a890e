"""`gpt2 serve` under concurrent streaming clients: aggregate throughput, time to first token,
time between tokens, and where a step's time goes.

    python benchmarks/serve.py                            # random 124M weights, the engine gpt2 serve runs
    python benchmarks/serve.py --clients 1,8 --rounds 3 --new-tokens 64
    python benchmarks/serve.py --engine torch --threads 2
    python benchmarks/serve.py --engine torch --device cuda --dtype bfloat16

The server runs in its own process (as `gpt2 serve` would: uvicorn, the scheduler thread, the
engine) on 127.0.0.1 with random weights of the --size shape (no download). For each client
count C, C clients each send one streaming completion at the same moment (a --prompt-tokens
prompt of random ids, --new-tokens tokens, `ignore_eos` so every request runs to its length),
--rounds times; the timings of all rounds are pooled. Each client count is measured greedy and
sampled (temperature 1 and no top-k: OpenAI's default sampling, each stream seeded), side by
side (`--temperatures`):

- sampling: greedy (temperature 0) or "t=1" (every candidate of 50,257 may be drawn);
- tokens/s: all completion tokens over the wall time of the round (prefill included);
- decode tokens/s: the sum over streams of (tokens - 1) / (last token time - first token time),
  the decoding rate the batch sustains; "x1" is its ratio to the one-client rate of the same
  sampling;
- TTFT: from sending the request to its first streamed token (queueing and prefill);
- TBT: the time between consecutive streamed chunks of one stream (one chunk per step; a step
  whose text is held back, half a UTF-8 character, sends nothing, so its gap counts twice);
- per step: from the server's /metrics, the engine's forward time per decoding step and the
  rest of the scheduler's time per step (sampling one token per row, stream bookkeeping):
  what limits the scaling (weights read once per step vs per-row Python work);
- the engine alone: one `forward_batch` decoding step per batch size, timed in the server's
  process before it serves: the most the batch can give, whatever the server does.

The machine may be shared: compare rows of one run, and rerun on a quiet machine for figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time

SEED = 0


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="gpt2", help="preset shape of the random model (default gpt2 = 124M)")
    p.add_argument("--engine", default=None, help="numpy | torch | pure (default: what gpt2 serve runs)")
    p.add_argument("--device", default=None, help="torch: cpu | cuda | mps")
    p.add_argument("--dtype", default=None, help="the engine's compute dtype")
    p.add_argument(
        "--kernel", default=None, help="the torch engine's float32 CPU kernel (default batched, as gpt2 serve)"
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="compute threads of the server's engine (numpy: OpenBLAS/MKL threads; default: the library's)",
    )
    p.add_argument("--quantize", default=None, help="int8: the weights quantized as they load")
    p.add_argument("--clients", default="1,4,8,16", help="concurrent streaming clients per row (default 1,4,8,16)")
    p.add_argument("--prompt-tokens", type=int, default=32)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--rounds", type=int, default=2, help="rounds per client count, pooled (default 2)")
    p.add_argument(
        "--temperatures",
        default="0,1",
        help="temperatures measured side by side: 0 = greedy, 1 = OpenAI's default sampling (default 0,1)",
    )
    p.add_argument("--serve-worker", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


# --- the server, in its own process ---------------------------------------------------------------


def serve_worker(args) -> None:
    """Build the engine, serve it on 127.0.0.1 (a free port), print the URL, serve until SIGINT."""
    from random_weights import random_model

    from gpt2.engines import build_engine, plan_engine
    from gpt2.server import ModelHolder, ServerSettings
    from gpt2.server.app import create_app
    from gpt2.server.run import listen, make_server, url_of
    from gpt2.tokenizer import Tokenizer

    config, params = random_model(args.size, SEED)
    options = {
        k: v for k, v in (("device", args.device), ("dtype", args.dtype), ("kernel", args.kernel)) if v is not None
    }
    if args.threads is not None and args.engine == "torch":
        options["threads"] = args.threads  # numpy: the BLAS variables the parent set for this process
    plan = plan_engine(args.engine, quantize=args.quantize, serving=True, **options)  # as gpt2 serve plans it
    engine = build_engine(plan, config, params)
    del params
    print(json.dumps(engine_steps(engine, parse_clients(args.clients), args.prompt_tokens)), flush=True)
    settings = ServerSettings(max_batch=max(16, *parse_clients(args.clients)), max_queue=256)
    holder = ModelHolder("bench")
    holder.attach(engine, Tokenizer.gpt2(), settings=settings)
    sock = listen("127.0.0.1", 0)
    server = make_server(create_app(holder, settings), sock)
    print(url_of(sock), flush=True)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # the parent's SIGINT, once uvicorn has shut down
        pass


def engine_steps(engine, batches: list[int], past: int, repeats: int = 5) -> dict[str, float]:
    """The engine alone: ms of one decoding step (`forward_batch`, one new token a row) for each
    batch size, rows holding `past` positions; the best of `repeats`, sizes interleaved. This is
    the ceiling the server's scaling can reach: batch B decodes B tokens a step."""
    from gpt2.engines import BatchEngine

    if not isinstance(engine, BatchEngine):
        return {}
    caches = {b: engine.new_batch_cache(b) for b in batches}
    for b, cache in caches.items():  # fill the rows, and warm up
        engine.forward_batch([[1] * past] * b, cache)
    best = {b: float("inf") for b in batches}
    for _ in range(repeats):
        for b, cache in caches.items():
            for row in range(b):
                cache.lengths[row] = past
            start = time.perf_counter()
            engine.forward_batch([[2]] * b, cache)
            best[b] = min(best[b], 1e3 * (time.perf_counter() - start))
    return {str(b): ms for b, ms in best.items()}


def parse_clients(text: str) -> list[int]:
    return [int(c) for c in text.split(",") if c.strip()]


# --- the clients -------------------------------------------------------------------------------


async def one_stream(client, url: str, body: dict) -> dict:
    """One streaming completion: when it was sent, when each chunk came, how many tokens."""
    sent = time.perf_counter()
    arrivals, tokens = [], 0
    async with client.stream("POST", url + "/v1/completions", json=body) as response:
        if response.status_code != 200:
            raise RuntimeError(f"HTTP {response.status_code}: {await response.aread()!r}")
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            data = json.loads(line[6:])
            if data.get("usage"):
                tokens = data["usage"]["completion_tokens"]
            if data["choices"]:
                arrivals.append(time.perf_counter())
    return {"sent": sent, "arrivals": arrivals, "tokens": tokens}


async def one_round(url: str, clients: int, args, round_index: int, temperature: float = 0.0) -> dict:
    import httpx
    import numpy as np

    rng = np.random.default_rng(SEED + 100 * round_index + clients)
    bodies = [
        {
            "model": "bench",
            "prompt": rng.integers(0, 50256, args.prompt_tokens).tolist(),
            "max_tokens": args.new_tokens,
            "temperature": temperature,
            "seed": i,
            "stream": True,
            "stream_options": {"include_usage": True},
            "ignore_eos": True,
        }
        for i in range(clients)
    ]
    limits = httpx.Limits(max_connections=clients + 2)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:
        start = time.perf_counter()
        streams = await asyncio.gather(*(one_stream(client, url, b) for b in bodies))
        wall = time.perf_counter() - start
    return {"wall": wall, "streams": streams}


def scrape(url: str) -> dict[str, float]:
    import urllib.request

    with urllib.request.urlopen(url + "/metrics", timeout=30) as r:
        text = r.read().decode()
    return {k: float(v) for k, v in (line.rsplit(" ", 1) for line in text.splitlines() if line and line[0] != "#")}


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def measure(url: str, clients: int, args, temperature: float) -> dict:
    before = scrape(url)
    rounds = [asyncio.run(one_round(url, clients, args, r, temperature)) for r in range(args.rounds)]
    after = scrape(url)
    tokens = sum(s["tokens"] for r in rounds for s in r["streams"])
    wall = sum(r["wall"] for r in rounds)
    ttft = [1e3 * (s["arrivals"][0] - s["sent"]) for r in rounds for s in r["streams"] if s["arrivals"]]
    tbt = [1e3 * (b - a) for r in rounds for s in r["streams"] for a, b in zip(s["arrivals"], s["arrivals"][1:])]
    decode = []  # per round: the sum of its streams' decoding rates
    for r in rounds:
        rate = 0.0
        for s in r["streams"]:
            span = s["arrivals"][-1] - s["arrivals"][0] if len(s["arrivals"]) > 1 else 0
            rate += (s["tokens"] - 1) / span if span > 0 else 0
        decode.append(rate)

    def delta(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    steps = delta("gpt2_steps_total") or 1
    forward_ms = 1e3 * delta("gpt2_step_seconds_total") / steps
    engine_s = delta("gpt2_step_seconds_total") + delta("gpt2_prefill_seconds_total")
    other_ms = 1e3 * (delta("gpt2_scheduler_busy_seconds_total") - engine_s) / steps
    return {
        "clients": clients,
        "temperature": temperature,
        "tokens_per_s": tokens / wall,
        "decode_per_s": statistics.mean(decode),
        "ttft_p50": percentile(ttft, 50),
        "ttft_p95": percentile(ttft, 95),
        "tbt_p50": percentile(tbt, 50),
        "tbt_p95": percentile(tbt, 95),
        "batch": delta("gpt2_step_rows_total") / steps,
        "forward_ms": forward_ms,
        "other_ms": other_ms,
    }


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.engine is None:  # what gpt2 serve runs (gpt2.server.state.serving_engine is gone)
        from gpt2.engines import plan_engine

        args.engine = plan_engine(device=args.device, serving=True).engine
    if args.serve_worker:
        serve_worker(args)
        return
    command = [sys.executable, os.path.abspath(__file__), "--serve-worker", *sys.argv[1:]]
    env = dict(os.environ)
    if args.threads is not None and args.engine == "numpy":  # read by OpenBLAS / MKL at import
        for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env[name] = str(args.threads)
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    try:
        alone = json.loads(server.stdout.readline() or "{}")
        url = server.stdout.readline().strip()
        if not url.startswith("http://"):
            raise SystemExit("the server did not start")
        warm = argparse.Namespace(**{**vars(args), "new_tokens": 8})
        asyncio.run(one_round(url, 2, warm, 99))  # first passes pay for lazy allocation
        temperatures = [float(t) for t in args.temperatures.split(",") if t.strip()]
        rows = [measure(url, c, args, t) for t in temperatures for c in parse_clients(args.clients)]
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(60)
    print(
        f"gpt2 serve, {args.size} shape (random weights), {args.engine} engine"
        f"{' ' + args.device if args.device else ''}{' ' + args.dtype if args.dtype else ''}"
        f"{' kernel ' + args.kernel if args.kernel else ''}{' ' + args.quantize if args.quantize else ''}"
        f"{f', {args.threads} threads' if args.threads else ''}, "
        f"{args.prompt_tokens}-token prompts, {args.new_tokens} new tokens, "
        f"{args.rounds} rounds, "
        f"{os.cpu_count()} CPUs\n"
    )
    ones = {r["temperature"]: r["decode_per_s"] for r in rows if r["clients"] == 1}
    header = (
        "| sampling | clients | tokens/s | decode tokens/s | x1 | TTFT p50 ms | TTFT p95 ms | TBT p50 ms "
        "| TBT p95 ms | mean batch | forward ms/step | other ms/step |"
    )
    print(header)
    print("| :--- |" + " ---: |" * 11)
    for r in rows:
        one = ones.get(r["temperature"])
        ratio = f"{r['decode_per_s'] / one:.2f}" if one else "-"
        sampling = "greedy" if r["temperature"] == 0 else f"t={r['temperature']:g}"
        print(
            f"| {sampling} | {r['clients']} | {r['tokens_per_s']:.1f} | {r['decode_per_s']:.1f} | {ratio} "
            f"| {r['ttft_p50']:.0f} | {r['ttft_p95']:.0f} | {r['tbt_p50']:.1f} | {r['tbt_p95']:.1f} "
            f"| {r['batch']:.1f} | {r['forward_ms']:.1f} | {r['other_ms']:.1f} |"
        )
    if alone:
        print("\nThe engine alone, one decoding step (best of 5): the ceiling of the scaling above\n")
        print("| batch | forward ms | tokens/s | x1 |")
        print("| ---: | ---: | ---: | ---: |")
        first = alone.get("1")
        for b, ms in alone.items():
            ratio = f"{int(b) * first / ms:.2f}" if first else "-"
            print(f"| {b} | {ms:.1f} | {1e3 * int(b) / ms:.1f} | {ratio} |")


if __name__ == "__main__":
    main()
