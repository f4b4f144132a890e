"""int8 and half-precision weights in the engines: every engine loads every format, the PyTorch
engine's int8 kernel equals dequantize-then-matmul, its fallbacks say so, and the command line
and the Python API take --dtype / --quantize."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from gpt2.engines import load_engine
from gpt2.weights import load_model, save_model
from gpt2.weights.half import cast_params
from gpt2.weights.quantized import QuantizedTensor, dequantize_params, quantize_params

torch = pytest.importorskip("torch")

from gpt2.engines.torch import precision  # noqa: E402


def logits_of(engine, ids) -> np.ndarray:
    """[T, V] float64: a prefill of all but the last two ids, then one token at a time."""
    cache = engine.new_cache()
    rows = [np.asarray(engine.forward(ids[:-2], cache, all_logits=True), dtype=np.float64)]
    for t in ids[-2:]:
        rows.append(np.asarray(engine.forward([t], cache), dtype=np.float64)[None])
    return np.concatenate(rows)


@pytest.fixture(scope="module")
def int8_kit(kit):
    """The kit's model quantized, and the float64 logits of its dequantized weights (the exact
    answer for int8; what each engine computes differs from it only by its own rounding)."""
    quantized = quantize_params(kit.params)
    exact_engine = load_engine("numpy", kit.config, dequantize_params(quantized), dtype="float64")
    return quantized, logits_of(exact_engine, kit.prompt)


@pytest.mark.parametrize(
    "name, options, tolerance",
    [
        ("pure", {}, 1e-6),
        ("numpy", {"native": False}, 1e-5),
        ("numpy", {"native": False, "dequantize": "layer"}, 1e-5),
        ("numpy", {}, 2e-2),  # the C kernels: 8-bit activations (W8A8)
        ("torch", {"device": "cpu"}, 2e-2),  # bf16 activations into the int8 kernel
        ("torch", {"device": "cpu", "kernel": "blas"}, 2e-2),
        ("torch", {"device": "cpu", "dtype": "bfloat16"}, 3e-2),
    ],
)
def test_an_int8_file_loads_in_every_engine(kit, int8_kit, tmp_path, name, options, tolerance):
    quantized, exact = int8_kit
    save_model(tmp_path, kit.config, quantized)
    config, params = load_model(tmp_path)
    assert isinstance(params["h.0.attn.c_attn.weight"], QuantizedTensor)
    engine = load_engine(name, config, params, **options)
    assert engine.quantization == "int8"
    got = logits_of(engine, kit.prompt)
    assert np.abs(got - exact).max() <= tolerance * np.abs(exact).max()


def test_quantize_on_load_is_the_int8_file(kit, tmp_path):
    save_model(tmp_path, kit.config, quantize_params(kit.params))
    from_file = load_engine("numpy", kit.config, load_model(tmp_path)[1])
    on_load = load_engine("numpy", kit.config, kit.params, quantize="int8")
    np.testing.assert_array_equal(logits_of(from_file, kit.prompt), logits_of(on_load, kit.prompt))


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("name, options", [("pure", {}), ("numpy", {}), ("torch", {"device": "cpu"})])
def test_a_half_precision_file_loads_in_every_engine(kit, tmp_path, dtype, name, options):
    save_model(tmp_path, kit.config, cast_params(kit.params, dtype))
    config, params = load_model(tmp_path)
    got = logits_of(load_engine(name, config, params, **options), kit.prompt)
    exact = logits_of(load_engine("numpy", kit.config, params, dtype="float64"), kit.prompt)
    np.testing.assert_allclose(got, exact, atol=1e-4 * np.abs(exact).max())  # the rounding is in the file


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_transformers_loads_the_half_precision_files(kit, tmp_path, dtype):
    transformers = pytest.importorskip("transformers")
    save_model(tmp_path, kit.config, cast_params(kit.params, dtype))
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path, torch_dtype=getattr(torch, dtype)).eval()
    assert hf.transformer.h[0].attn.c_attn.weight.dtype == getattr(torch, dtype)
    with torch.no_grad():
        got = hf(torch.tensor([kit.prompt])).logits[0].float().numpy()
    exact = logits_of(load_engine("numpy", kit.config, load_model(tmp_path)[1], dtype="float64"), kit.prompt)
    assert np.abs(got - exact).max() < 0.05 * np.abs(exact).max()  # transformers computes in half precision


# --- the PyTorch engine's int8 kernel ----------------------------------------------------------


def test_the_int8_kernel_equals_dequantize_then_matmul():
    op, notice = precision.int8_kernel(torch.device("cpu"))
    if op is None:
        pytest.skip(notice)
    g = torch.Generator().manual_seed(0)
    for rows, n_in, n_out in [(1, 64, 96), (5, 768, 2304), (3, 3072, 768), (2, 32, 97)]:
        x = torch.randn(rows, n_in, generator=g)
        q = torch.randint(-127, 128, (n_out, n_in), generator=g, dtype=torch.int8)
        scale = torch.rand(n_out, generator=g) * 1e-3
        bias = torch.randn(n_out, generator=g)
        got = precision.int8_projection(q, scale, bias, torch.float32, op)(x)
        want = torch.nn.functional.linear(x, precision.dequantized(q, scale, torch.float32), bias)
        fallback = precision.int8_projection(q, scale, bias, torch.float32, None)(x)
        torch.testing.assert_close(fallback, want)
        # bf16 activations (8 bits): the error is a few parts in a thousand of the output's scale
        assert (got - want).abs().max() <= 1e-2 * want.abs().max(), (rows, n_in, n_out)


def test_an_inner_size_the_kernel_gets_wrong_is_dequantized(monkeypatch):
    calls = []
    monkeypatch.setattr(torch, "_weight_int8pack_mm", lambda *a: calls.append(a) or a[0])
    q = torch.ones(4, 40, dtype=torch.int8)  # 40 is not a multiple of INT8_INNER_MULTIPLE
    project = precision.int8_projection(q, torch.ones(4), None, torch.float32, torch._weight_int8pack_mm)
    torch.testing.assert_close(project(torch.ones(1, 40)), torch.full((1, 4), 40.0))
    assert not calls


def test_without_the_kernel_the_engine_dequantizes_and_says_so(kit, int8_kit, monkeypatch):
    monkeypatch.delattr(torch, "_weight_int8pack_mm")
    quantized, exact = int8_kit
    engine = load_engine("torch", kit.config, quantized, device="cpu", kernel="blas")  # PyTorch's own kernels
    assert any("no int8 matrix kernel" in n for n in engine.notices)
    got = logits_of(engine, kit.prompt)
    assert np.abs(got - exact).max() <= 1e-5 * np.abs(exact).max()


def test_a_kernel_that_gives_wrong_answers_is_not_used(monkeypatch):
    monkeypatch.setattr(torch, "_weight_int8pack_mm", lambda x, q, s: torch.zeros(x.shape[0], q.shape[0]))
    op, notice = precision.int8_kernel(torch.device("cpu"))
    assert op is None and "wrong results" in notice


def test_cpu_features_come_from_pytorch_or_the_os(monkeypatch, tmp_path):
    from gpt2.engines import cpu

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16\n")
    assert cpu.cpu_flags(str(info)) >= {"avx2", "avx512_bf16"} and cpu.cpu_name(str(info)) == "Some CPU"
    assert cpu.relevant_flags(cpu.cpu_flags(str(info))) == ["avx2", "avx512f", "avx512_bf16"]
    assert cpu.cpu_flags(str(tmp_path / "absent")) == set()
    precision.cpu_capabilities.cache_clear()
    monkeypatch.setattr(torch._C._cpu, "_get_cpu_capability", lambda: {"amx_bf16": True, "avx512_fp16": False})
    try:
        assert precision.cpu_has_bf16() and not precision.cpu_has_fp16()
    finally:
        precision.cpu_capabilities.cache_clear()


def test_half_weights_on_a_cpu_without_half_arithmetic_compute_prompts_in_float32(kit, monkeypatch):
    monkeypatch.setattr(precision, "cpu_capabilities", lambda: frozenset({"avx2", "f16c"}))
    engine = load_engine("torch", kit.config, kit.params, device="cpu", dtype="bfloat16", kernel="blas")
    assert any("prompts are multiplied in float32" in n for n in engine.notices)
    got = logits_of(engine, kit.prompt)
    exact = logits_of(load_engine("numpy", kit.config, kit.params, dtype="float64"), kit.prompt)
    assert np.abs(got - exact).max() < 0.02 * np.abs(exact).max()


def test_numpy_keeps_int8_in_a_quarter_of_the_memory(kit, int8_kit):
    quantized, _ = int8_kit
    layer = load_engine("numpy", kit.config, quantized, native=False, dequantize="layer")
    assert layer.blocks[0]["mlp.c_fc.weight"].q.dtype == np.int8 and layer.head.q.dtype == np.int8
    load = load_engine("numpy", kit.config, quantized, native=False)
    assert load.blocks[0]["mlp.c_fc.weight"].dtype == np.float32
    with pytest.raises(Exception, match="dequantize must be load | layer"):
        load_engine("numpy", kit.config, quantized, dequantize="never")


# --- the command line ----------------------------------------------------------------------------


def gpt2(*args, check=True):
    done = subprocess.run([sys.executable, "-m", "gpt2", *args], capture_output=True, text=True, timeout=300)
    if check:
        assert done.returncode == 0, done.stderr
    return done


@pytest.fixture(scope="module")
def model_dir(kit, tmp_path_factory):
    """The kit's model with GPT-2's vocabulary size, so the CLI's tokenizer fits it."""
    from gpt2.params import init_params

    config = kit.config.replace(vocab_size=50257)
    directory = tmp_path_factory.mktemp("precision-cli") / "model"
    save_model(directory, config, init_params(config, seed=3))
    return directory


def test_convert_writes_half_and_int8_files(model_dir, tmp_path):
    full = (model_dir / "model.safetensors").stat().st_size
    # fp32 vectors (position table, biases) stay: a little more than a quarter for int8
    for flags, code, ratio in ((["--dtype", "bfloat16"], "BF16", 0.5), (["--quantize", "int8"], "I8", 0.28)):
        out = tmp_path / code
        done = gpt2("convert", str(model_dir), str(out), *flags)
        assert "wrote" in done.stderr and "MB" in done.stderr
        size = (out / "model.safetensors").stat().st_size
        assert abs(size / full - ratio) < 0.01
        _, params = load_model(out)
        assert params["wte.weight"].dtype == code
    bad = gpt2("convert", str(model_dir), str(tmp_path / "x"), "--quantize", "int4", check=False)
    assert bad.returncode == 2 and "invalid choice: 'int4'" in bad.stderr


@pytest.mark.parametrize(
    "flags", [["--engine", "numpy", "--quantize", "int8"], ["--engine", "torch", "--dtype", "bfloat16"]]
)
def test_generate_and_score_take_dtype_and_quantize(model_dir, flags):
    done = gpt2("generate", "Hello", "-m", str(model_dir), "-n", "3", "--temperature", "0", "--json", *flags)
    assert len(json.loads(done.stdout)["samples"][0]["ids"]) == 3
    done = gpt2("score", "Hello world", "-m", str(model_dir), "--json", *flags)
    assert json.loads(done.stdout)["perplexity"] > 1


def test_a_dtype_the_engine_does_not_run_is_one_line(model_dir):
    done = gpt2("generate", "Hi", "-m", str(model_dir), "--engine", "numpy", "--dtype", "float16", check=False)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "numpy engine runs in" in done.stderr


# --- the float32 kernels -------------------------------------------------------------------------


def test_the_c_kernels_are_the_default_cpu_kernel_and_openblas_agrees(kit):
    expected = kit.reference_logits(kit.prompt)
    native = load_engine("torch", kit.config, kit.params, device="cpu")
    assert native.kernel == "native"  # NumPy and a compiler are here
    np.testing.assert_allclose(logits_of(native, kit.prompt), expected, atol=2e-5, rtol=1e-4)
    assert native.model.h[0].mlp.c_fc.weight.numel() == 0  # the C kernels hold the only copy
    assert load_engine("torch", kit.config, kit.params, device="cpu", dtype="bfloat16").kernel == "native"
    assert load_engine("torch", kit.config, kit.params, device="cpu", dtype="float16").kernel != "native"
    with pytest.raises(Exception, match="the native kernel needs the cpu device and float32 or bfloat16"):
        load_engine("torch", kit.config, kit.params, device="cpu", dtype="float16", kernel="native")
    engine = load_engine("torch", kit.config, kit.params, device="cpu", kernel="openblas")
    assert engine.kernel == "openblas"
    np.testing.assert_allclose(logits_of(engine, kit.prompt), expected, atol=2e-5, rtol=1e-4)
    # one-row products read the module's own memory: nothing is copied
    assert engine.model.h[0].mlp.c_fc.weight.t().is_contiguous()
    with pytest.raises(Exception, match="the openblas kernel needs NumPy, the cpu device and float32"):
        load_engine("torch", kit.config, kit.params, device="cpu", dtype="bfloat16", kernel="openblas")


def test_the_batched_kernel_is_native_or_onednn_on_the_cpu_and_agrees(kit, monkeypatch):
    """What a server asks for (plan_engine(..., serving=True)): the C kernels where they
    build, else oneDNN where it works."""
    from gpt2.engines import plan_engine
    from gpt2.engines.torch import kernels as torch_kernels

    options = plan_engine("torch", device="cpu", serving=True).keywords()
    assert options["kernel"] == "batched"
    assert load_engine("torch", kit.config, kit.params, **options).kernel == "native"
    monkeypatch.setattr(torch_kernels, "native_kernels", lambda threads: None)  # no C compiler
    engine = load_engine("torch", kit.config, kit.params, **options)
    assert engine.kernel == ("onednn" if torch_kernels.working_onednn() else "openblas")
    expected = kit.reference_logits(kit.prompt)
    np.testing.assert_allclose(logits_of(engine, kit.prompt), expected, atol=2e-5, rtol=1e-4)
    bf16 = load_engine("torch", kit.config, kit.params, device="cpu", dtype="bfloat16", kernel="batched")
    assert bf16.kernel == "blas"  # not float32: the half-precision path, as "auto" would take


def test_openblas_runs_pytorch_on_one_thread_and_gives_the_count_back(kit, monkeypatch):
    """Two thread pools on the same cores (PyTorch's spinning, OpenBLAS's working) decoded at 6
    tokens/s instead of 80 on two cores: during a pass PyTorch runs on one thread."""
    torch = pytest.importorskip("torch")
    engine = load_engine("torch", kit.config, kit.params, device="cpu", kernel="openblas")
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    seen = []

    def spy(engine):  # the head's product runs inside the pass: note PyTorch's thread count there
        head = engine.model.head
        monkeypatch.setattr(engine.model, "head", lambda x: (seen.append(torch.get_num_threads()), head(x))[1])

    spy(engine)
    try:
        cache = engine.new_cache()
        engine.forward(kit.prompt, cache)
        engine.forward([1], cache)
        assert seen == [1, 1] and torch.get_num_threads() == 2
        int8 = load_engine("torch", kit.config, kit.params, device="cpu", quantize="int8", kernel="blas")
        spy(int8)
        int8.forward([1], int8.new_cache())
        assert seen == [1, 1, 2]  # the int8 kernel is PyTorch's own: it keeps PyTorch's threads
        native = load_engine("torch", kit.config, kit.params, device="cpu", quantize="int8")
        spy(native)
        native.forward([1], native.new_cache())
        assert native.kernel == "native" and seen == [1, 1, 2, 1]  # the C kernels' threads do the work
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("command", ["generate", "score", "serve"])
def test_every_model_command_passes_quantize_to_the_engine(command):
    from gpt2.cli import build_parsers
    from gpt2.commands.common import engine_options

    parser = build_parsers()[0]
    args = parser.parse_args([command, "-m", "some-model", "--engine", "numpy", "--quantize", "int8"])
    assert engine_options("numpy", args) == {"quantize": "int8"}


def test_explore_refuses_quantize_rather_than_ignoring_it(capsys):
    from gpt2.cli import main

    assert main(["explore", "-m", "some-model", "--engine", "numpy", "--quantize", "int8", "--no-browser"]) == 2
    assert "--quantize is for generate, score and serve" in capsys.readouterr().err


@pytest.mark.parametrize("flags", [["--quantize", "int8"], ["--dtype", "bfloat16"]])
def test_the_numpy_engine_runs_int8_and_bf16_from_the_command_line(model_dir, flags):
    done = gpt2("generate", "Hi", "-m", str(model_dir), "--engine", "numpy", "-n", "3", "--seed", "1", "-v", *flags)
    assert "products: " in done.stderr  # -v says which kernels this CPU got
