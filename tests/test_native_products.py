"""The C products of the NumPy engine's int8 and bf16 weights (gpt2.engines.native): equal to
NumPy's answer within their rounding, for every shape, stride and fused step; the plain-C build
(a CPU without AVX512) too; the build cached and keyed by what it was built from; and an engine
that cannot build them says so and runs in float32."""

from __future__ import annotations

import numpy as np
import pytest

from gpt2.engines import load_engine
from gpt2.engines.native import build
from gpt2.engines.native.products import (
    Kernels,
    NativeUnavailable,
    PackedBf16,
    PackedF32,
    PackedInt8,
    to_bf16_bits,
)
from gpt2.weights.half import cast_params
from gpt2.weights.quantized import dequantize_params, quantize_params

try:
    build.find_compiler()
except NativeUnavailable:
    pytest.skip("no C compiler here", allow_module_level=True)


@pytest.fixture(scope="module", params=["native", "plain"])
def kernels(request, tmp_path_factory):
    """The kernels as built for this CPU, and a plain-C build (-march=x86-64: no AVX512), which is
    what a CPU without VNNI or AVX512-BF16 runs."""
    cache = tmp_path_factory.mktemp("native")
    if request.param == "native":
        return Kernels.load(cache_dir=cache)
    flags = tuple(f for f in build.FLAGS if f != "-march=native") + ("-march=x86-64",)
    plain = Kernels(build.load(cache, flags=flags))
    assert not plain.int8_simd and not plain.bf16_simd
    return plain


def layer_norm(x, gain, shift, eps):
    mean = x.mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(((x - mean) ** 2).mean(-1, keepdims=True) + eps) * gain + shift


def int8_weight(rng, m, k):
    w = rng.standard_normal((m, k)).astype(np.float32)
    scale = (np.abs(w).max(1) / 127).astype(np.float32)
    q = np.round(w / scale[:, None]).astype(np.int8)
    return q, scale, q * scale[:, None]


@pytest.mark.parametrize("m, k, n", [(1, 1, 1), (3, 2, 1), (37, 70, 3), (8, 64, 2), (200, 130, 5), (768, 3072, 1)])
@pytest.mark.parametrize("kind", ["int8", "int8-precise", "bf16", "f32"])
def test_products_equal_numpy_within_their_rounding(kernels, kind, m, k, n):
    rng = np.random.default_rng(m * 1000 + k)
    x = rng.standard_normal((n, k)).astype(np.float32)
    bias = rng.standard_normal(m).astype(np.float32)
    if kind.startswith("int8"):
        q, scale, w = int8_weight(rng, m, k)
        packed: PackedInt8 | PackedBf16 = PackedInt8(q, scale, kernels, precise=kind == "int8-precise")
        # 8-bit activations: each block of 16 within 1/254 of its largest value; 15-bit: 1/64516
        tolerance = 2e-4 if kind == "int8-precise" else 2e-2
    elif kind == "bf16":
        w = rng.standard_normal((m, k)).astype(np.float32)
        packed = PackedBf16(w, kernels)
        w = (to_bf16_bits(w).astype(np.uint32) << 16).view(np.float32)  # what the kernel holds
        tolerance = 1e-5 if not kernels.bf16_simd else 1e-2  # with AVX512-BF16, x is rounded to bf16 too
    else:
        w = rng.standard_normal((m, k)).astype(np.float32)
        packed = PackedF32(w, kernels)
        tolerance = 1e-5
    expected = x.astype(np.float64) @ w.T.astype(np.float64) + bias
    out = np.empty((m, n), np.float32).T  # the engine's layout: a transposed [M, N] buffer
    packed.product(x, out, bias)
    scale_of_answer = np.abs(x).sum(1, keepdims=True) * np.abs(w).max()  # the size of the sums
    assert np.all(np.abs(out - expected) <= tolerance * scale_of_answer + 1e-5)


@pytest.mark.parametrize("kind", ["int8", "bf16", "f32"])
def test_norm_and_accumulate_are_fused_into_one_call(kernels, kind):
    rng = np.random.default_rng(1)
    m, k, n = 96, 128, 4
    x = (3 * rng.standard_normal((k, n)).astype(np.float32) + 1).T  # strided rows
    gain, shift = rng.random(k).astype(np.float32), rng.standard_normal(k).astype(np.float32)
    bias = rng.standard_normal(m).astype(np.float32)
    if kind == "int8":
        q, scale, w = int8_weight(rng, m, k)
        packed: PackedInt8 | PackedBf16 = PackedInt8(q, scale, kernels)
    elif kind == "bf16":
        w = rng.standard_normal((m, k)).astype(np.float32)
        packed = PackedBf16(w, kernels)
    else:
        w = rng.standard_normal((m, k)).astype(np.float32)
        packed = PackedF32(w, kernels)
    h = layer_norm(x.astype(np.float64), gain, shift, 1e-5)
    out = np.empty((n, m), np.float32)
    packed.product(x, out, bias, norm=(gain, shift, 1e-5))
    assert np.allclose(out, h @ w.T + bias, atol=0.01 * np.abs(h @ w.T).max())
    residual = rng.standard_normal((n, m)).astype(np.float32)
    total = residual.copy()
    packed.product(x, total, bias, norm=(gain, shift, 1e-5), accumulate=True)
    assert np.allclose(total - residual, h @ w.T + bias, atol=0.01 * np.abs(h @ w.T).max())


def test_packed_rows_are_the_embedding_table(kernels):
    rng = np.random.default_rng(2)
    q, scale, w = int8_weight(rng, 21, 70)
    ids = np.array([[0, 20], [7, 7]])
    assert np.array_equal(PackedInt8(q, scale, kernels).rows(ids), w[ids])
    halves = (to_bf16_bits(w).astype(np.uint32) << 16).view(np.float32)
    assert np.array_equal(PackedBf16(w, kernels).rows(ids), halves[ids])
    assert np.array_equal(PackedF32(w, kernels).rows(ids), w[ids])


def test_bad_operands_are_clear_errors(kernels):
    packed = PackedBf16(np.ones((4, 8), np.float32), kernels)
    with pytest.raises(ValueError, match=r"product of float32 x \(1, 9\)"):
        packed.product(np.ones((1, 9), np.float32), np.empty((1, 4), np.float32), None)
    with pytest.raises(ValueError, match="got float64 and float32"):
        packed.product(np.ones((1, 8)), np.empty((1, 4), np.float32), None)
    with pytest.raises(ValueError, match="vector of 4"):
        packed.product(np.ones((1, 8), np.float32), np.empty((1, 4), np.float32), np.ones(5, np.float32))


def test_bf16_rounding_is_to_nearest_even():
    values = np.array([1.0, 1.00390625, 1.01171875, -2.5, np.inf, np.nan], np.float32)
    bits = to_bf16_bits(values)
    assert bits[:5].tolist() == [0x3F80, 0x3F80, 0x3F82, 0xC020, 0x7F80]  # 1+2^-8 ties to 1 (even)
    assert np.isnan((bits[5:].astype(np.uint32) << 16).view(np.float32)).all()


# --- the build ----------------------------------------------------------------------------------


def test_the_build_is_cached_under_a_name_of_what_it_was_built_from(tmp_path):
    first = build.build(tmp_path)
    stamp = first.stat().st_mtime_ns
    assert build.build(tmp_path) == first and first.stat().st_mtime_ns == stamp  # not rebuilt
    assert not list(tmp_path.glob("*.partial"))
    source, version = "int f;", "cc 1"
    name = build.library_name(source, version, build.FLAGS, {"avx2"})
    assert name != build.library_name(source, version, build.FLAGS, {"avx2", "avx512_vnni"})  # another CPU
    assert name != build.library_name(source, "cc 2", build.FLAGS, {"avx2"})
    assert name != build.library_name("int g;", version, build.FLAGS, {"avx2"})


def test_no_compiler_is_a_clear_error_and_the_engine_falls_back_with_a_notice(kit, monkeypatch, tmp_path):
    with pytest.raises(NativeUnavailable, match="no C compiler found"):
        build.find_compiler(["no-such-compiler-here"])
    with pytest.raises(NativeUnavailable, match="failed"):
        build.build(tmp_path, compiler="false")

    def unavailable(*args, **kwargs):
        raise NativeUnavailable("no C compiler found (cc): install gcc or clang")

    monkeypatch.setattr(Kernels, "load", unavailable)
    quantized = quantize_params(kit.params)
    engine = load_engine("numpy", kit.config, quantized)
    assert engine.dequantize == "load" and "int8 weights widened to float32" in engine.notices[0]
    half = load_engine("numpy", kit.config, kit.params, dtype="bfloat16")
    assert half.weights == "float32" and "bf16 weights widened" in half.notices[0]
    with pytest.raises(NativeUnavailable, match="no C compiler"):
        load_engine("numpy", kit.config, quantized, native=True)


# --- in the engine --------------------------------------------------------------------------------


def logits_of(engine, ids):
    cache = engine.new_cache()
    rows = [np.asarray(engine.forward(ids[:-2], cache, all_logits=True), np.float64)]
    rows += [np.asarray(engine.forward([t], cache), np.float64)[None] for t in ids[-2:]]
    return np.concatenate(rows)


def test_the_numpy_engine_multiplies_int8_and_bf16_in_c(kit):
    quantized = quantize_params(kit.params)
    engine = load_engine("numpy", kit.config, quantized)
    assert engine.dequantize == "native" and isinstance(engine.blocks[0]["mlp.c_fc.weight"], PackedInt8)
    assert engine.head.precise and not engine.blocks[0]["mlp.c_fc.weight"].precise
    exact = logits_of(load_engine("numpy", kit.config, dequantize_params(quantized), dtype="float64"), kit.prompt)
    got = logits_of(engine, kit.prompt)
    assert np.abs(got - exact).max() < 0.02 * np.abs(exact).max()
    assert (got.argmax(-1) == exact.argmax(-1)).mean() >= 0.9

    half = load_engine("numpy", kit.config, kit.params, dtype="bfloat16")
    assert half.weights == "bfloat16" and isinstance(half.head, PackedBf16)
    halves = cast_params(kit.params, "bfloat16")
    exact = logits_of(load_engine("numpy", kit.config, halves, dtype="float64"), kit.prompt)
    got = logits_of(half, kit.prompt)
    assert np.abs(got - exact).max() < 0.02 * np.abs(exact).max()


def test_batches_with_rows_of_different_lengths_agree_with_one_row_at_a_time(kit):
    engine = load_engine("numpy", kit.config, quantize_params(kit.params))
    rows = [kit.prompt[:5], kit.prompt[2:7]]
    cache = engine.new_batch_cache(2)
    batch = [np.asarray(engine.forward_batch(rows, cache))]
    batch.append(np.asarray(engine.forward_batch([[1], [2]], cache)))
    for b, row in enumerate(rows):
        alone = engine.new_cache()
        first = np.asarray(engine.forward(row, alone))
        second = np.asarray(engine.forward([b + 1], alone))
        assert np.allclose(batch[0][b], first, atol=1e-4) and np.allclose(batch[1][b], second, atol=1e-4)


def test_float32_in_c_agrees_with_numpy_and_blas(kit):
    engine = load_engine("numpy", kit.config, kit.params)
    assert isinstance(engine.head, PackedF32) and engine.weights == "float32"
    plain = load_engine("numpy", kit.config, kit.params, native=False)
    assert isinstance(plain.head, np.ndarray) and plain.kernels is None
    got, expected = logits_of(engine, kit.prompt), logits_of(plain, kit.prompt)
    assert np.abs(got - expected).max() < 1e-4 * np.abs(expected).max()
    assert (got.argmax(-1) == expected.argmax(-1)).all()


def test_float64_never_reaches_the_float32_kernels(kit):
    quantized = quantize_params(kit.params)
    assert load_engine("numpy", kit.config, quantized, dtype="float64").kernels is None
    with pytest.raises(Exception, match="compute in float32"):
        load_engine("numpy", kit.config, quantized, dtype="float64", native=True)


@pytest.mark.parametrize("past, T", [([0], 5), ([7], 1), ([3, 9, 0], 2), ([4, 4], 3)])
def test_attention_equals_the_numpy_engines(kernels, past, T):
    from gpt2.engines.numpy_engine import attend, causal_mask

    rng = np.random.default_rng(len(past) * 10 + T)
    B, H, hd, n_ctx = len(past), 3, 20, 16
    qkv = rng.standard_normal((3 * H * hd, B * T)).astype(np.float32).T  # the engine's transposed buffer
    cache = rng.standard_normal((2, B, H, n_ctx, hd)).astype(np.float32)  # old positions: noise
    keys, values = cache.copy()
    lengths = np.array(past, np.int64)
    out = np.empty((B * T, H * hd), np.float32)
    kernels.attention(qkv, keys, values, lengths, out)

    q, k, v = qkv.reshape(B, T, 3, H, hd).transpose(2, 0, 3, 1, 4)  # 3 x [B, H, T, hd]
    old_keys, old_values = cache.copy()
    for b, p in enumerate(past):
        old_keys[b, :, p : p + T], old_values[b, :, p : p + T] = k[b], v[b]
    seen = max(past) + T
    expected = attend(
        q / np.sqrt(hd), old_keys[:, :, :seen], old_values[:, :, :seen], causal_mask(lengths, T, np.float32)
    )
    assert np.allclose(out, expected.transpose(0, 2, 1, 3).reshape(B * T, H * hd), atol=1e-5)
    for b, p in enumerate(past):  # the new keys and values are in the cache, nothing else moved
        assert np.array_equal(keys[b, :, : p + T], old_keys[b, :, : p + T])
        assert np.array_equal(values[b, :, p + T :], cache[1][b, :, p + T :])


def test_attention_outside_the_window_is_refused(kernels):
    keys = np.zeros((1, 2, 4, 8), np.float32)
    with pytest.raises(ValueError, match="attention operands"):
        kernels.attention(
            np.zeros((2, 48), np.float32), keys, keys.copy(), np.array([3]), np.empty((2, 16), np.float32)
        )


def test_the_engine_with_a_recorder_attends_in_numpy_and_agrees(kit):
    class Recorder:
        def attention(self, layer, weights): ...
        def residual(self, layer, x): ...

    engine = load_engine("numpy", kit.config, quantize_params(kit.params))
    assert engine.kernels is not None
    plain = np.asarray(engine.forward(kit.prompt, engine.new_cache(), all_logits=True))
    recorded = np.asarray(engine.forward(kit.prompt, engine.new_cache(), all_logits=True, recorder=Recorder()))
    assert np.allclose(plain, recorded, atol=1e-4)


# Several threads at once, and a forked child: tests/test_native_threads.py.


def test_a_compiler_without_march_native_builds_the_portable_kernels(tmp_path):
    import os
    import shutil

    real = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    fussy = tmp_path / "fussy-cc"
    fussy.write_text(
        "#!/bin/sh\n"
        'for a in "$@"; do\n'
        '  [ "$a" = "-march=native" ] && { echo "unsupported option -march=native" >&2; exit 1; }\n'
        "done\n"
        f'exec {real} "$@"\n'
    )
    os.chmod(fussy, 0o755)
    kernels = Kernels(build.load(tmp_path / "cache", compiler=str(fussy)))
    assert not kernels.int8_simd  # plain C: the compiler was not told this CPU's instructions
    q, scale, w = int8_weight(np.random.default_rng(3), 20, 64)
    out = np.empty((1, 20), np.float32)
    x = np.ones((1, 64), np.float32)
    PackedInt8(q, scale, kernels).product(x, out, None)
    assert np.allclose(out, x @ w.T, atol=0.02 * np.abs(w).sum(1).max())
