"""Every standard-library route to the inner product, timed on one matrix-vector product.

    python benchmarks/pure_dot.py [--rows 2304] [--cols 768]

Decoding GPT-2 in pure Python is ~124M multiply-adds per token (124M model), so the
cost of one multiply-add decides everything. Each route computes W @ x for a
[rows x cols] matrix stored row by row; the table gives nanoseconds per
multiply-add, the bytes each weight costs in that layout, and the largest error
against an exactly rounded reference (math.fsum of the products).
"""

from __future__ import annotations

import argparse
import array
import math
import operator
import platform
import random
import sys
import timeit
from itertools import repeat


def routes(rows: int, cols: int, rng: random.Random):
    x_list = [rng.gauss(0, 1) for _ in range(cols)]
    x = tuple(x_list)
    w_tuples = [tuple(rng.gauss(0, 0.02) for _ in range(cols)) for _ in range(rows)]
    w_lists = [list(r) for r in w_tuples]
    w_d = [array.array("d", r) for r in w_tuples]
    w_f = [array.array("f", r) for r in w_tuples]
    mul = operator.mul
    nx = math.fsum(v * v for v in x)
    norms_t = [math.hypot(*r) ** 2 for r in w_tuples]
    norms_f = [math.hypot(*r) ** 2 for r in w_f]

    def by_dist(ws, norms):
        return lambda: [(nw + nx - d * d) * 0.5 for nw, d in zip(norms, map(math.dist, ws, repeat(x)))]

    yield "sum(map(mul)), rows as lists", 32, lambda: [sum(map(mul, r, x)) for r in w_lists]
    yield "sum(map(mul)), rows as tuples", 32, lambda: [sum(map(mul, r, x)) for r in w_tuples]
    yield "sum(map(mul)), rows as array('d')", 8, lambda: [sum(map(mul, r, x)) for r in w_d]
    yield "sum(map(mul)), rows as array('f')", 4, lambda: [sum(map(mul, r, x)) for r in w_f]
    yield "fsum(map(mul)), rows as tuples", 32, lambda: [math.fsum(map(mul, r, x)) for r in w_tuples]
    yield "sum(generator), rows as tuples", 32, lambda: [sum(a * b for a, b in zip(r, x)) for r in w_tuples]
    yield "math.dist identity, rows as lists", 32, by_dist(w_lists, norms_t)
    yield "math.dist identity, rows as tuples", 32, by_dist(w_tuples, norms_t)
    yield "math.dist identity, rows as array('d')", 8, by_dist(w_d, norms_t)
    yield "math.dist identity, rows as array('f')", 4, by_dist(w_f, norms_f)
    if hasattr(math, "sumprod"):
        yield "math.sumprod, rows as tuples", 32, lambda: list(map(math.sumprod, w_tuples, repeat(x)))
        yield "math.sumprod, rows as array('f')", 4, lambda: list(map(math.sumprod, w_f, repeat(x)))
    exact = [[math.fsum(map(mul, r, x)) for r in ws] for ws in (w_tuples, w_f)]
    yield "exact", 0, exact


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=2304)
    ap.add_argument("--cols", type=int, default=768)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    found = list(routes(args.rows, args.cols, random.Random(0)))
    exact_t, exact_f = found.pop()[2]
    print(
        f"{platform.python_implementation()} {platform.python_version()} on {platform.machine()}: "
        f"W[{args.rows} x {args.cols}] @ x, best of {args.repeat}\n"
    )
    print(f"{'route':<42} {'ns/MAC':>7} {'bytes/weight':>12} {'max error':>10}")
    for name, nbytes, fn in found:
        t = min(timeit.repeat(fn, number=1, repeat=args.repeat))
        exact = exact_f if "'f'" in name else exact_t
        err = max(abs(a - b) for a, b in zip(fn(), exact))
        print(f"{name:<42} {t / (args.rows * args.cols) * 1e9:7.2f} {nbytes:12d} {err:10.1e}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
