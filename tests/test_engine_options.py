"""What the engines accept: dtypes, kernels, threads and devices, checked through the registry;
the typed errors for everything else."""

import numpy as np
import pytest

from gpt2.engines import ENGINES, available_engines, engine_spec, load_engine
from gpt2.errors import Gpt2Error


def test_the_registry_describes_every_engine():
    assert set(ENGINES) == {"pure", "numpy", "torch"}
    assert available_engines()[-1] == "pure"  # the standard library is always there
    for spec in ENGINES.values():
        assert spec.dtypes and spec.devices and spec.summary
        assert (spec.needs is None) == (spec.extra is None)
    with pytest.raises(Gpt2Error, match="unknown engine 'tpu'; choose one of pure, numpy, torch"):
        engine_spec("tpu")


def test_options_an_engine_does_not_take_are_refused(kit):
    with pytest.raises(Gpt2Error, match="the pure engine has no option 'dtype'"):
        load_engine("pure", kit.config, kit.params, dtype="float32")


def test_both_torch_cpu_kernels_agree(kit):
    expected = kit.reference_logits(kit.prompt)
    for kernel in ("blas", "onednn"):
        try:
            engine = load_engine("torch", kit.config, kit.params, device="cpu", kernel=kernel)
        except Gpt2Error:  # a PyTorch built without oneDNN
            assert kernel == "onednn"
            continue
        assert engine.kernel == kernel
        cache = engine.new_cache()
        got = [engine.forward(kit.prompt[:5], cache, all_logits=True)]
        got += [engine.forward([t], cache)[None] for t in kit.prompt[5:]]
        np.testing.assert_allclose(np.concatenate(got), expected, atol=2e-5, rtol=1e-4)
        # the module keeps the checkpoint's names and shapes whatever the memory layout
        state = engine.model.state_dict()
        for name in ("h.0.attn.c_attn.weight", "h.1.mlp.c_proj.weight", "wte.weight"):
            np.testing.assert_array_equal(state[name].numpy(), kit.model.state_dict()[name].numpy())


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_logits_are_finite_and_close(kit, dtype):
    engine = load_engine("torch", kit.config, kit.params, device="cpu", dtype=dtype)
    expected = kit.reference_logits(kit.prompt)
    cache = engine.new_cache()
    got = [engine.forward(kit.prompt[:6], cache, all_logits=True)]  # fresh prefill: is_causal
    got.append(engine.forward(kit.prompt[6:], cache, all_logits=True))  # prefill after the cache: boolean mask
    logits = np.concatenate(got)  # float32 host arrays (the engine contract)
    assert logits.dtype == np.float32 and np.isfinite(logits).all()
    tolerance = 0.05 if dtype == "bfloat16" else 0.01
    assert np.abs(logits - expected).max() < tolerance * max(1.0, np.abs(expected).max())


def test_numpy_float64_is_closer_to_exact(kit):
    engine = load_engine("numpy", kit.config, kit.params, dtype="float64")
    got = engine.forward(kit.prompt, engine.new_cache(), all_logits=True)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, kit.reference_logits(kit.prompt), atol=2e-5)


@pytest.mark.parametrize(
    "name, options",
    [
        ("numpy", {"dtype": "float16"}),
        ("numpy", {"threads": 0}),
        ("torch", {"dtype": "int8"}),
        ("torch", {"device": "tpu"}),
        ("torch", {"threads": 0}),
        ("torch", {"kernel": "fast"}),
        ("pure", {"storage": "disk"}),
    ],
)
def test_bad_options_are_typed_errors(kit, name, options):
    with pytest.raises(Gpt2Error):
        load_engine(name, kit.config, kit.params, **options)
