"""The int8 and half-precision weight formats (gpt2.weights.quantized, gpt2.weights.half): the
rounding is what the docs promise, the standard-library and NumPy paths agree byte for byte, and
the files round-trip and refuse to be misread."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpt2 import quantized_tensor
from gpt2.config import Config
from gpt2.params import init_params
from gpt2.tensor import Tensor, TensorError
from gpt2.weights import WeightsError, half, load_model, quantized, read_safetensors, save_model, write_safetensors
from gpt2.weights.quantized import QuantizedTensor, dequantize, quantize_int8, quantize_params

SMALL = Config(n_layer=2, n_embd=32, n_head=4, vocab_size=97, n_ctx=48)


def f32(values: np.ndarray) -> Tensor:
    values = np.ascontiguousarray(values, dtype=np.float32)
    return Tensor(values.shape, "F32", values.tobytes())


def as_np(t: Tensor) -> np.ndarray:
    return np.asarray(t.to_array(), dtype=np.float64).reshape(t.shape)


# --- int8: the rounding -------------------------------------------------------------------------


def check_half_a_step(w: np.ndarray, q: QuantizedTensor) -> None:
    """Every dequantized weight within half a step (its row's scale / 2) of the original, computed
    exactly in float64; the largest |w| of each row comes back exactly (it is +-127 steps)."""
    values = np.asarray(q.values(), dtype=np.float64).reshape(q.shape)
    scale = np.asarray(q.scale.to_array(), dtype=np.float64).reshape(q.scale.shape)
    assert np.abs(values).max() <= 127
    error = np.abs(w.astype(np.float64) - values * scale)
    assert (error <= scale / 2 * (1 + 1e-6)).all(), error.max()
    # the float32 values handed to engines are those products, rounded once
    np.testing.assert_array_equal(as_np(q), (values * scale).astype(np.float32))


@settings(max_examples=60, deadline=None)
@given(
    rows=st.integers(1, 9),
    cols=st.integers(1, 9),
    axis=st.sampled_from([0, 1]),
    seed=st.integers(0, 2**32 - 1),
    spread=st.sampled_from([1e-6, 0.02, 1.0, 300.0]),
)
def test_round_trip_is_within_half_a_step_of_every_weight(rows, cols, axis, seed, spread):
    w = (np.random.default_rng(seed).standard_normal((rows, cols)) * spread).astype(np.float32)
    q = quantize_int8(f32(w), axis)
    assert q.scale.shape == ((rows, 1) if axis == 0 else (1, cols))
    assert q.axis == axis or rows == cols == 1  # a 1x1 matrix: either reading is the same
    check_half_a_step(w, q)


def test_every_weight_of_a_124m_shaped_block_round_trips():
    rng = np.random.default_rng(0)
    for shape in [(768, 2304), (3072, 768)]:
        w = (rng.standard_normal(shape) * 0.02).astype(np.float32)
        w[5, 7] = 0.9  # an outlier sets its column's step
        check_half_a_step(w, quantize_int8(f32(w), axis=1))


def test_zero_rows_and_exact_halves():
    w = np.array([[0.0, 0.0, 0.0], [1.27, -0.005, 0.015]], dtype=np.float32)
    q = quantize_int8(f32(w), axis=0)
    assert list(q.values())[:3] == [0, 0, 0] and q.scale.to_array()[0] == 0.0
    assert list(q.values())[3:] == [127, 0, 2]  # 0.015 / 0.01 = 1.5 rounds to even: 2; -0.5 -> 0
    assert dequantize(q).to_array()[:3].tolist() == [0.0, 0.0, 0.0]


def test_the_weights_package_re_exports_the_value_type():
    # The type lives beside gpt2.tensor (engines need no I/O package for it); old imports still work.
    assert quantized.QuantizedTensor is quantized_tensor.QuantizedTensor
    import gpt2.weights

    assert gpt2.weights.QuantizedTensor is quantized_tensor.QuantizedTensor
    assert quantized.dequantize is quantized_tensor.dequantize


def test_non_finite_weights_are_refused():
    with pytest.raises(TensorError, match="inf or NaN"):
        quantize_int8(f32(np.array([[1.0, np.inf]])), axis=0)


@pytest.mark.parametrize("axis", [0, 1])
def test_the_standard_library_path_gives_the_same_bytes(axis, monkeypatch):
    w = (np.random.default_rng(3).standard_normal((7, 5)) * 0.1).astype(np.float32)
    w[2] = 0.0
    fast = quantize_int8(f32(w), axis)
    monkeypatch.setattr(quantized_tensor, "_numpy", lambda: None)
    slow = quantize_int8(f32(w), axis)
    assert bytes(slow.data) == bytes(fast.data) and bytes(slow.scale.data) == bytes(fast.scale.data)
    assert bytes(dequantize(slow).data) == bytes(memoryview(slow.to_array()).cast("B"))


def test_quantize_params_picks_the_projections_and_the_embedding_table():
    params = quantize_params(init_params(SMALL, seed=0))
    int8 = {name for name, t in params.items() if isinstance(t, QuantizedTensor)}
    projections = {
        f"h.{i}.{n}.weight" for i in range(2) for n in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
    }
    assert int8 == projections | {"wte.weight"}
    assert params["wte.weight"].axis == 0 and params["h.0.mlp.c_fc.weight"].axis == 1
    assert quantize_params(params) == params  # already int8: kept
    with pytest.raises(WeightsError, match="unknown quantization 'int4'"):
        quantize_params(params, "int4")


def test_an_int8_tensor_without_scales_has_no_float_values():
    t = Tensor((2,), "I8", b"\x01\xff")
    with pytest.raises(TensorError, match="without their scales"):
        t.to_array()


# --- int8: the file ------------------------------------------------------------------------------


def test_an_int8_file_round_trips_and_is_documented(tmp_path):
    params = quantize_params(init_params(SMALL, seed=1))
    save_model(tmp_path, SMALL, params)
    tensors, metadata = read_safetensors(tmp_path / "model.safetensors")
    assert metadata[quantized.METADATA_KEY] == "int8"
    assert tensors["h.0.attn.c_attn.weight"].dtype == "I8" and tensors["h.0.attn.c_attn.weight"].shape == (32, 96)
    assert tensors["h.0.attn.c_attn.weight_scale"].shape == (1, 96)
    assert tensors["wte.weight_scale"].shape == (97, 1) and tensors["wpe.weight"].dtype == "F32"
    config, loaded = load_model(tmp_path)
    assert config == SMALL and list(loaded) == list(params)
    for name, t in params.items():
        assert type(loaded[name]) is type(t) and bytes(loaded[name].data) == bytes(t.data)
        if isinstance(t, QuantizedTensor):
            assert bytes(loaded[name].scale.data) == bytes(t.scale.data)
    # a quarter of the float32 file, give or take the float32 vectors and scales
    save_model(tmp_path / "f32", SMALL, init_params(SMALL, seed=1))
    ratio = (tmp_path / "model.safetensors").stat().st_size / (tmp_path / "f32" / "model.safetensors").stat().st_size
    assert 0.25 < ratio < 0.4  # this small model has relatively large vectors: 124M gives 0.26


def write_model(directory, tensors):
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps(SMALL.to_hf_dict()))
    write_safetensors(directory / "model.safetensors", tensors)
    return directory


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda t: t.pop("wte.weight_scale"), "has no 'wte.weight_scale' beside it"),
        (lambda t: t.update({"wte.weight_scale": f32(np.ones((1, 97)))}), "do not run along one axis"),
        (lambda t: t.update({"wte.weight_scale": f32(-np.ones((97, 1)))}), "negative, infinite or NaN"),
        (lambda t: t.update({"wpe.weight_scale": f32(np.ones((48, 1)))}), "which is F32, not I8"),
        (
            lambda t: t.update({"wte.weight_scale": Tensor((97, 1), "F16", bytes(2 * 97))}),
            "scales must be F32",
        ),
    ],
)
def test_a_broken_int8_file_is_a_clear_error(tmp_path, change, message):
    tensors, _ = quantized.pack(quantize_params(init_params(SMALL, seed=2)))
    change(tensors)
    with pytest.raises(WeightsError, match=message):
        load_model(write_model(tmp_path / "m", tensors))


# --- half precision ------------------------------------------------------------------------------


def test_bfloat16_rounds_to_nearest_even_like_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    w = np.concatenate([rng.standard_normal(4096) * 10.0 ** rng.integers(-30, 30, 4096), [0.0, -0.0, np.inf]])
    w = w.astype(np.float32)
    # ties: the bit patterns exactly halfway between two bfloat16s, with even and odd last bits
    w = np.concatenate([w, np.array([0x3F808000, 0x3F818000, 0xBF808000], dtype=np.uint32).view(np.float32)])
    got = np.frombuffer(half.cast_tensor(f32(w), "bfloat16").data, dtype="<u2")
    want = torch.from_numpy(w.copy()).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    np.testing.assert_array_equal(got, want)


def test_half_casts_agree_between_the_numpy_and_standard_library_paths(monkeypatch):
    w = np.random.default_rng(1).standard_normal(999).astype(np.float32) * 3
    w[:3] = [np.nan, 65504.0, -1e-8]
    fast = {d: bytes(half.cast_tensor(f32(w), d).data) for d in ("bfloat16", "float16")}
    monkeypatch.setattr(half, "_numpy", lambda: None)
    slow = {d: bytes(half.cast_tensor(f32(w), d).data) for d in ("bfloat16", "float16")}
    assert fast["float16"] == slow["float16"] == w.astype("<f2").tobytes()
    # every bfloat16 the same, the NaN a NaN in both (its payload may differ)
    a, b = np.frombuffer(fast["bfloat16"], "<u2"), np.frombuffer(slow["bfloat16"], "<u2")
    assert (a[1:] == b[1:]).all() and (a[0] & 0x7F80) == (b[0] & 0x7F80) == 0x7F80 and a[0] & 0x7F and b[0] & 0x7F


@pytest.mark.parametrize("numpy_path", [True, False])
def test_float16_overflow_is_an_error_not_an_infinity(monkeypatch, numpy_path):
    if not numpy_path:
        monkeypatch.setattr(half, "_numpy", lambda: None)
    with pytest.raises(WeightsError, match="does not fit in float16"):
        half.cast_tensor(f32(np.array([1.0, 70000.0])), "float16")


def test_half_files_are_half_the_size_and_load(tmp_path):
    params = init_params(SMALL, seed=4)
    save_model(tmp_path / "f32", SMALL, params)
    for dtype, code in (("bfloat16", "BF16"), ("float16", "F16")):
        save_model(tmp_path / dtype, SMALL, half.cast_params(params, dtype))
        _, loaded = load_model(tmp_path / dtype)
        assert {t.dtype for t in loaded.values()} == {code}
        size = (tmp_path / dtype / "model.safetensors").stat().st_size
        assert abs(size / (tmp_path / "f32" / "model.safetensors").stat().st_size - 0.5) < 0.01
        for name, t in params.items():  # within half a unit in the last place of the format
            ulp = 2.0**-8 if dtype == "bfloat16" else 2.0**-11
            np.testing.assert_allclose(as_np(loaded[name]), as_np(t), rtol=ulp, atol=1e-7)


def test_casting_keeps_int8_tensors():
    params = quantize_params(init_params(SMALL, seed=5))
    cast = half.cast_params(params, "float16")
    assert cast["wte.weight"] is params["wte.weight"] and cast["wpe.weight"].dtype == "F16"
    with pytest.raises(WeightsError, match="unknown storage dtype 'int8'"):
        half.cast_params(params, "int8")
