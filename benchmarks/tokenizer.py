"""Tokenizer throughput: ours (pure Python) against tiktoken (Rust), side by side, in one run.

    python benchmarks/tokenizer.py [--file ../shared/data/tinyshakespeare.txt] [--repeat 5] [--huge 0.25,1,4]

Prints the time to import and load each tokenizer (in a fresh interpreter), and
encode throughput on the file: cold (empty piece cache, as the first text a
process sees) and warm (best of --repeat runs), in MB/s of UTF-8 and tokens/s.
Then pathological text, one huge pre-token: random lower-case letters with no
space, and one letter repeated, at each --huge size in MB, with the time ratio
of the largest size to the 1 MB one (linear: 4.0 for 4 MB), timed in CPU
seconds of this process (both encoders run on one thread, and CPU time is
less disturbed than wall time by other jobs on a shared machine). Both are
single-threaded. tiktoken cannot download here, so its GPT-2 encoding is built
from the local gpt2.tiktoken file.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

# ../shared/data beside the repository (or beside any folder above it, as from a git worktree)
DATA = next(
    (p / "shared" / "data" for p in Path(__file__).resolve().parents if (p / "shared" / "data").is_dir()),
    Path(__file__).resolve().parents[1].parent / "shared" / "data",
)
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

LOAD_OURS = """
import time; t0 = time.perf_counter()
from gpt2.tokenizer import Tokenizer; t1 = time.perf_counter()
Tokenizer.gpt2(); t2 = time.perf_counter()
import json; print(json.dumps({"import": t1 - t0, "load": t2 - t1}))
"""

LOAD_TIKTOKEN = """
import sys, time; t0 = time.perf_counter()
import tiktoken, tiktoken.load; t1 = time.perf_counter()
tiktoken.Encoding(name="gpt2", pat_str=sys.argv[2], mergeable_ranks=tiktoken.load.load_tiktoken_bpe(sys.argv[1]),
                  special_tokens={"<|endoftext|>": 50256}).encode("warm up the regex"); t2 = time.perf_counter()
import json; print(json.dumps({"import": t1 - t0, "load": t2 - t1}))
"""


def load_times(code: str, *argv: str) -> dict[str, float]:
    """Import and load time measured in a fresh interpreter (best of 3)."""
    best: dict[str, float] = {}
    for _ in range(3):
        out = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, check=True)
        times = json.loads(out.stdout.strip().splitlines()[-1])
        best = {k: min(v, best.get(k, v)) for k, v in times.items()}
    return best


def throughput(encode, text: str, repeat: int) -> tuple[float, float, list[int]]:
    """(seconds of the first run, best seconds of `repeat` runs, ids)."""
    start = time.perf_counter()
    ids = encode(text)
    first = time.perf_counter() - start
    best = first
    for _ in range(repeat):
        start = time.perf_counter()
        encode(text)
        best = min(best, time.perf_counter() - start)
    return first, best, ids


def huge_pieces(encoders: dict[str, Callable[[str], list[int]]], sizes: list[float]) -> None:
    """MB/s on one huge pre-token per text kind and size, and the time ratio of the largest size to 1 MB."""
    kinds = {
        "random a-z": lambda n: "".join(random.Random(0).choices("abcdefghijklmnopqrstuvwxyz", k=n)),
        "one letter": lambda n: "a" * n,
    }
    head = "".join(f"{size:>8g} MB" for size in sizes)
    ratio_head = f"{max(sizes):g} MB / 1 MB time" if 1 in sizes and max(sizes) > 1 else ""
    print(f"\none huge pre-token (no space): MB/s of CPU time\n{'':28}{head}   {ratio_head}")
    for kind, make in kinds.items():
        texts = {size: make(int(size * 1e6)) for size in sizes}
        ids: dict[str, list[list[int]]] = {}
        for name, encode in encoders.items():
            seconds = {}
            for size, text in texts.items():
                start = time.process_time()
                ids.setdefault(name, []).append(encode(text))
                seconds[size] = time.process_time() - start
            speeds = "".join(f"{size / seconds[size]:11.2f}" for size in sizes)
            ratio = f"{seconds[max(sizes)] / seconds[1]:10.2f}" if ratio_head else ""
            print(f"{kind + ', ' + name:28}{speeds}   {ratio}")
        if len(ids) > 1:
            first, *others = ids.values()
            print(f"{'':28}identical ids: {all(other == first for other in others)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", type=Path, default=DATA / "tinyshakespeare.txt")
    parser.add_argument("--vocab", type=Path, default=DATA / "gpt2.tiktoken", help="gpt2.tiktoken for tiktoken")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--huge", default="0.25,1,4", help="sizes in MB of the huge pre-tokens ('' to skip)")
    args = parser.parse_args()

    from gpt2.tokenizer import Tokenizer

    text = args.file.read_text(encoding="utf-8")
    megabytes = len(text.encode("utf-8")) / 1e6
    print(f"{args.file.name}: {megabytes:.2f} MB, Python {sys.version.split()[0]}")

    rows = []
    encoders: dict[str, Callable[[str], list[int]]] = {}
    ours_load = load_times(LOAD_OURS)
    ours = Tokenizer.gpt2()
    ours.clear_cache()
    cold, warm, ours_ids = throughput(ours.encode_ordinary, text, args.repeat)
    rows.append(("gpt2.tokenizer", ours_load, cold, warm))
    encoders["ours"] = ours.encode_ordinary

    try:
        import tiktoken  # noqa: F401
    except ImportError:
        print("tiktoken is not installed: showing ours only")
    else:
        tik_load = load_times(LOAD_TIKTOKEN, str(args.vocab), GPT2_PATTERN)
        import tiktoken.load

        enc = tiktoken.Encoding(
            name="gpt2",
            pat_str=GPT2_PATTERN,
            mergeable_ranks=tiktoken.load.load_tiktoken_bpe(str(args.vocab)),
            special_tokens={"<|endoftext|>": 50256},
        )
        cold, warm, tik_ids = throughput(enc.encode_ordinary, text, args.repeat)
        rows.append(("tiktoken", tik_load, cold, warm))
        encoders["tiktoken"] = enc.encode_ordinary
        print(f"identical ids: {ours_ids == tik_ids} ({len(ours_ids)} tokens)")

    print(
        f"{'':16} {'import':>8} {'load':>8}   {'cold MB/s':>10} {'tokens/s':>10}   {'warm MB/s':>10} {'tokens/s':>10}"
    )
    n = len(ours_ids)
    for name, load, cold, warm in rows:
        print(
            f"{name:16} {load['import'] * 1e3:6.0f}ms {load['load'] * 1e3:6.0f}ms   "
            f"{megabytes / cold:10.2f} {n / cold:10.0f}   {megabytes / warm:10.2f} {n / warm:10.0f}"
        )
    print(
        json.dumps(
            {
                name: {
                    "import_s": load["import"],
                    "load_s": load["load"],
                    "cold_mb_s": megabytes / cold,
                    "warm_mb_s": megabytes / warm,
                }
                for name, load, cold, warm in rows
            }
        )
    )
    sizes = [float(size) for size in args.huge.split(",") if size.strip()]
    if sizes:
        huge_pieces(encoders, sizes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
