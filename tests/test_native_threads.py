"""The C kernels from several threads at once: every product of every thread is bit for bit the
product computed alone.

ctypes lets go of the GIL during a product, so two Python threads (two engines sharing one
`Kernels`, a server's request threads) may call the kernels at the same moment. The pool
(pool.c) runs one product at a time and each thread brings its own scratch memory
(products.py); before that, threads shared one scratch buffer and read each other's input (94
products of 8,000 wrong). A product's rows are split between the pool's threads, but each
output is summed by one thread in one order, so the answer does not depend on who ran it:
equality here is exact, NaN for NaN.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np
import pytest

from gpt2.engines.native import build
from gpt2.engines.native.products import Kernels, NativeUnavailable, PackedBf16, PackedF32, PackedInt8

try:
    build.find_compiler()
except NativeUnavailable:
    pytest.skip("no C compiler here", allow_module_level=True)

THREADS = 6  # more callers than this machine has cores: the OS interleaves them at any point
ITERATIONS = 120  # products a caller computes (and checks) in each test


@pytest.fixture(scope="module", params=["native", "plain"])
def library(request, tmp_path_factory):
    """The kernels as built for this CPU, and the portable build (-march=x86-64)."""
    cache = tmp_path_factory.mktemp("native")
    if request.param == "native":
        return build.load(cache)
    return build.load(cache, flags=tuple(f for f in build.FLAGS if f != "-march=native") + ("-march=x86-64",))


def product_job(kernels: Kernels, kind: str, caller: int) -> Callable[[], np.ndarray]:
    """A product of the given kind with inputs of this caller's own (its own number of rows, so
    the callers' scratch sizes differ too), returning a new output each call."""
    rng = np.random.default_rng(100 + caller)
    m, k, n = 768, 768, 1 + caller % 4  # 96 tiles: several units, so the pool's workers share them
    x = rng.standard_normal((n, k)).astype(np.float32)
    w = rng.standard_normal((m, k)).astype(np.float32)
    bias = rng.standard_normal(m).astype(np.float32)
    if kind.startswith("int8"):
        scale = (np.abs(w).max(1) / 127).astype(np.float32)
        packed: PackedInt8 | PackedBf16 | PackedF32 = PackedInt8(
            np.round(w / scale[:, None]).astype(np.int8), scale, kernels, precise=kind == "int8-precise"
        )
    elif kind == "bf16":
        packed = PackedBf16(w, kernels)
    else:
        packed = PackedF32(w, kernels)
    norm = (rng.random(k).astype(np.float32), rng.standard_normal(k).astype(np.float32), 1e-5)
    residual = rng.standard_normal((n, m)).astype(np.float32)
    fused = caller % 2 == 1  # half the callers: layer norm first and accumulate into a residual

    def run() -> np.ndarray:
        if fused:
            out = residual.copy()
            packed.product(x, out, bias, norm=norm, accumulate=True)
        else:
            out = np.empty((n, m), np.float32)
            packed.product(x, out, bias)
        return out

    return run


def attention_job(kernels: Kernels, caller: int) -> Callable[[], np.ndarray]:
    rng = np.random.default_rng(200 + caller)
    B, H, hd, n_ctx, T = 1 + caller % 3, 4, 32, 24, 1 + caller % 2
    past = rng.integers(0, n_ctx - T, B).astype(np.int64)
    qkv = rng.standard_normal((B * T, 3 * H * hd)).astype(np.float32)
    cache = rng.standard_normal((2, B, H, n_ctx, hd)).astype(np.float32)

    def run() -> np.ndarray:
        keys, values = cache.copy()
        out = np.empty((B * T, H * hd), np.float32)
        kernels.attention(qkv, keys, values, past, out)
        return out

    return run


def hammer(jobs: list[Callable[[], np.ndarray]]) -> list[int]:
    """Each job alone first (the answer), then all at once from their own threads, ITERATIONS
    times each; returns each thread's count of answers that differ from the one computed alone."""
    expected = [job() for job in jobs]
    wrong = [0] * len(jobs)
    errors: list[BaseException] = []
    start = threading.Barrier(len(jobs))

    def work(i: int) -> None:
        try:
            start.wait(timeout=60)
            for _ in range(ITERATIONS):
                if not np.array_equal(jobs[i](), expected[i], equal_nan=True):
                    wrong[i] += 1
        except BaseException as error:  # reported below, not lost in the thread
            errors.append(error)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    assert not errors, errors
    return wrong


@pytest.mark.parametrize("kind", ["f32", "bf16", "int8", "int8-precise", "attention"])
def test_one_kernels_shared_by_several_threads_gives_every_thread_its_own_answer(library, kind):
    kernels = Kernels(library, threads=3)  # a pool of two workers beside each caller
    jobs = [attention_job(kernels, i) if kind == "attention" else product_job(kernels, kind, i) for i in range(THREADS)]
    assert hammer(jobs) == [0] * THREADS


def test_kernels_of_several_thread_counts_at_once_agree_with_each_alone(library):
    """Engines with their own `Kernels` (one thread, two, four) share the process's one pool."""
    jobs = [product_job(Kernels(library, threads=t), kind, i) for i, (t, kind) in enumerate(
        [(1, "f32"), (2, "bf16"), (4, "int8"), (4, "f32"), (2, "int8-precise"), (1, "bf16")]
    )]  # fmt: skip
    assert hammer(jobs) == [0] * len(jobs)


def test_a_forked_child_starts_its_own_workers_and_multiplies_right(library):
    import multiprocessing

    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork here")
    kernels = Kernels(library, threads=3)
    job = product_job(kernels, "int8", 1)
    expected = job()
    background = threading.Thread(target=lambda: [job() for _ in range(50)])  # the pool busy at the fork
    background.start()
    child = multiprocessing.get_context("fork").Process(
        target=lambda: None if np.array_equal(job(), expected) else exit(3)
    )
    child.start()
    child.join(timeout=60)
    background.join(timeout=60)
    if child.exitcode is None:  # hung: never leave it running
        child.kill()
    assert child.exitcode == 0


def test_engines_sharing_kernels_and_threads_sharing_engines_generate_what_each_generates_alone(kit):
    """NumpyEngine(..., kernels=k) is the public way to share one build between engines; and one
    engine may serve several threads, each with its own cache."""
    from gpt2.engines.numpy_engine import NumpyEngine
    from gpt2.weights.quantized import quantize_params

    kernels = Kernels.load(threads=2)
    quantized = quantize_params(kit.params)
    engines = [  # all on one Kernels; each engine run by two threads at once (each with its own cache)
        NumpyEngine(kit.config, quantized, kernels=kernels),
        NumpyEngine(kit.config, kit.params, dtype="bfloat16", kernels=kernels),
        NumpyEngine(kit.config, kit.params, kernels=kernels, native=True),
    ]

    def greedy(engine) -> Callable[[], np.ndarray]:
        def run() -> np.ndarray:
            cache, ids = engine.new_cache(), list(kit.prompt)
            logits = np.asarray(engine.forward(ids, cache), np.float32)
            for _ in range(6):
                ids.append(int(np.argmax(logits)))
                logits = np.asarray(engine.forward(ids[-1:], cache), np.float32)
            return np.concatenate([np.array(ids, np.float32), logits])

        return run

    jobs = [greedy(engines[i % len(engines)]) for i in range(THREADS)]
    global ITERATIONS
    saved, ITERATIONS = ITERATIONS, 15
    try:
        assert hammer(jobs) == [0] * THREADS
    finally:
        ITERATIONS = saved


def test_non_finite_activations_give_nan_rows_in_int8_products(library):
    """quantize_row converted NaN to an integer (undefined in C); now a row holding NaN or inf
    comes out NaN, as a float product's would, and the other rows are untouched."""
    kernels = Kernels(library, threads=2)
    rng = np.random.default_rng(9)
    w = rng.standard_normal((64, 96)).astype(np.float32)
    scale = (np.abs(w).max(1) / 127).astype(np.float32)
    x = rng.standard_normal((3, 96)).astype(np.float32)
    x[0, 5], x[2, 90] = np.nan, np.inf
    for precise in (False, True):
        out = np.empty((3, 64), np.float32)
        PackedInt8(np.round(w / scale[:, None]).astype(np.int8), scale, kernels, precise=precise).product(x, out, None)
        assert np.isnan(out[0]).all() and np.isnan(out[2]).all()
        assert np.isfinite(out[1]).all()


def test_attention_with_a_head_larger_than_any_stack_array(library):
    """The scaled query lives in scratch memory, not on the stack: any head size works."""
    from gpt2.engines.numpy_engine import attend, causal_mask

    kernels = Kernels(library, threads=2)
    rng = np.random.default_rng(4)
    B, H, hd, n_ctx, T = 1, 2, 4096, 4, 3
    qkv = rng.standard_normal((B * T, 3 * H * hd)).astype(np.float32)
    keys, values = np.zeros((2, B, H, n_ctx, hd), np.float32)
    out = np.empty((B * T, H * hd), np.float32)
    kernels.attention(qkv, keys, values, np.zeros(B, np.int64), out)
    q, k, v = qkv.reshape(B, T, 3, H, hd).transpose(2, 0, 3, 1, 4)
    expected = attend(q / np.sqrt(hd), k, v, causal_mask(np.zeros(B, np.int64), T, np.float32))
    assert np.allclose(out, expected.transpose(0, 2, 1, 3).reshape(B * T, H * hd), atol=1e-4)
