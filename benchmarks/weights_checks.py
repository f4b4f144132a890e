"""What the loaders' checks cost: how fast a hostile input is refused, and what checking a
download whole adds.

    python benchmarks/weights_checks.py [--mb 548] [--repeat 3]

Part one times `load_model` on a small directory whose config.json or header is hostile
(a billion layers, 4000 layers over a 1-layer file, JSON nested 200,000 deep, a 5,000-digit
integer): each must be refused in milliseconds, not after building a table per layer.
Part two times `download._check_whole` on a safetensors file of `--mb` megabytes (548 MB
is the 124M model): the sha256 the hub announces plus the header parse, which every
download now pays once before the file enters the cache.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from gpt2.config import Config
from gpt2.errors import Gpt2Error
from gpt2.params import init_params
from gpt2.weights import load_model, save_model
from gpt2.weights.download import _Attempt, _check_whole
from gpt2.weights.safetensors import encode_header

SMALL = Config(n_layer=1, n_embd=8, n_head=2, vocab_size=16, n_ctx=4)
DEEP = "[" * 200_000 + "]" * 200_000


def best_of(repeat: int, fn: Any) -> tuple[float, str]:
    """(best seconds, outcome) of `repeat` calls."""
    times, outcome = [], ""
    for _ in range(repeat):
        start = time.perf_counter()
        try:
            fn()
            outcome = "loaded"
        except Gpt2Error as exc:
            outcome = f"{type(exc).__name__}"
        times.append(time.perf_counter() - start)
    return min(times), outcome


def hostile_cases(root: Path) -> list[tuple[str, Path]]:
    cases = []
    base = SMALL.to_hf_dict()
    texts = {
        "config n_layer=10**9": json.dumps({**base, "n_layer": 10**9}),
        "config n_layer=4000, file has 1": json.dumps({**base, "n_layer": 4000}),
        "config nested 200,000 deep": '{"n_layer": ' + DEEP + "}",
        "config 5,000-digit n_layer": '{"n_layer": ' + "9" * 5000 + "}",
        "config 4,000-digit n_layer": '{"n_layer": ' + "9" * 4000 + ', "n_embd": 8, "n_head": 2}',
        "config n_layer 1e400": json.dumps({**base, "n_layer": 1e400}),
    }
    for i, (name, text) in enumerate(texts.items()):
        directory = save_model(root / f"c{i}", SMALL, init_params(SMALL))
        (directory / "config.json").write_text(text)
        cases.append((name, directory))
    for name, header in {
        "header nested 200,000 deep": DEEP.encode(),
        "header 5,000-digit shape": b'{"x": {"dtype": "F32", "shape": [' + b"9" * 5000 + b'], "data_offsets": [0, 4]}}',
        "header dtype is a list": b'{"x": {"dtype": ["F32"], "shape": [1], "data_offsets": [0, 4]}}',
    }.items():
        path = root / f"{len(cases)}.safetensors"
        path.write_bytes(struct.pack("<Q", len(header)) + header + bytes(4))
        cases.append((name, path))
    return cases


def download_check(root: Path, mb: int, repeat: int) -> tuple[float, float]:
    """(seconds of the whole check, seconds of sha256 alone) on a file of about `mb` MB."""
    from gpt2.tensor import Tensor

    n = mb * 1_000_000 // 4
    tensor = Tensor((n,), "F32", memoryview(bytearray(4 * n)))
    path = root / "model.safetensors.incomplete"
    with open(path, "wb") as f:
        f.write(encode_header({"w": tensor}))
        f.write(tensor.data)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()

    class Headers(dict):
        def get(self, key, default=None):  # an HTTPMessage's case-insensitive get, enough here
            return super().get(key.lower(), default)

    headers: Any = Headers({"x-linked-etag": f'"{digest}"', "x-linked-size": str(path.stat().st_size)})
    attempt = _Attempt(headers, [], path.stat().st_size, path.stat().st_size)
    whole = min(_timed(lambda: _check_whole(path, attempt, "model.safetensors")) for _ in range(repeat))
    sha = min(_timed(lambda: hashlib.sha256(path.read_bytes()).hexdigest()) for _ in range(repeat))
    assert _check_whole(path, attempt, "model.safetensors") is None
    return whole, sha


def _timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=int, default=548, help="size of the download to check (default: the 124M model)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    print(f"# {platform.python_implementation()} {platform.python_version()} on {platform.machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        print(f"\n{'hostile input':<36} {'refused in ms':>14}  outcome")
        print(f"{'-' * 36} {'-' * 14}  {'-' * 20}")
        for name, target in hostile_cases(root):
            seconds, outcome = best_of(args.repeat, lambda target=target: load_model(target))
            print(f"{name:<36} {1e3 * seconds:>14.2f}  {outcome}")
        whole, sha = download_check(root, args.mb, args.repeat)
        print(f"\n{'download check, ' + str(args.mb) + ' MB':<36} {'seconds':>14}  {'MB/s':>8}")
        print(f"{'-' * 36} {'-' * 14}  {'-' * 8}")
        print(f"{'sha256 + size + header (all)':<36} {whole:>14.2f}  {args.mb / whole:>8.0f}")
        print(f"{'sha256 alone':<36} {sha:>14.2f}  {args.mb / sha:>8.0f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
