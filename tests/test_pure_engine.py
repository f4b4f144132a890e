"""The pure-Python engine: components against NumPy/PyTorch, the KV cache, layouts,
and the whole model against Hugging Face transformers."""

import math
import random

import pytest

from gpt2 import Config
from gpt2.engines import load_engine
from gpt2.engines.pure import model, ops
from gpt2.engines.pure.engine import PureEngine
from gpt2.engines.pure.layout import METHODS
from gpt2.engines.pure.parallel import can_fork
from gpt2.errors import Gpt2Error
from gpt2.generation.sampling import argmax
from gpt2.verify import random_params, run_verification

SMALL = Config(n_layer=2, n_embd=24, n_head=3, vocab_size=97, n_ctx=64)


@pytest.fixture(scope="module")
def small():
    params = random_params(SMALL, random.Random(1))
    return SMALL, params


@pytest.fixture(scope="module")
def verification():
    return run_verification(seed=3)


COMPONENTS = (
    "matmul",
    "add",
    "transpose",
    "softmax",
    "causal softmax",
    "layer norm",
    "GELU (tanh)",
    "linear",
    "token + position embeddings",
    "scaled dot-product attention",
    "multi-head attention",
    "MLP",
    "transformer block",
    "decoder stack",
    "final layer norm",
    "output projection",
    "forward pass (logits)",
    "engine prefill (KV cache)",
    "engine cached decoding",
)


@pytest.mark.parametrize("reference,tolerance", [("numpy float64", 1e-9), ("torch float32", 1e-4)])
@pytest.mark.parametrize("component", COMPONENTS)
def test_component_matches_reference(verification, component, reference, tolerance):
    framework = reference.split()[0]
    if framework in verification.unavailable:
        pytest.skip(verification.unavailable[framework])
    rows = [r for r in verification.rows if r.component == component and r.reference == reference]
    assert len(rows) == 1, verification.unavailable
    assert rows[0].status == "pass" and rows[0].max_rel_error <= tolerance


def test_verification_covers_exactly_these_components(verification):
    # an engine is checked where its framework is installed (without PyTorch: no torch row)
    checked = {f"{name} engine, cached decoding" for name in ("numpy", "torch") if name not in verification.unavailable}
    assert {r.component for r in verification.rows} == set(COMPONENTS) | {"cached vs uncached decoding"} | checked
    assert verification.ok


@pytest.mark.parametrize("engine", ["numpy", "torch"])
def test_verify_checks_the_other_engines_against_the_pure_one(verification, engine):
    if engine in verification.unavailable:
        pytest.skip(verification.unavailable[engine])
    row = next(r for r in verification.rows if r.component == f"{engine} engine, cached decoding")
    assert row.reference == "pure float64" and row.status == "pass" and row.max_rel_error <= 1e-4


def test_ops_on_known_values():
    assert ops.matmul([[1.0, 2.0], [3.0, 4.0]], [[5.0], [6.0]]) == [[17.0], [39.0]]
    assert ops.transpose([[1.0, 2.0, 3.0]]) == [[1.0], [2.0], [3.0]]
    assert ops.softmax([0.0, 0.0]) == [0.5, 0.5]
    assert ops.softmax([1000.0, 0.0])[0] == 1.0  # no overflow
    assert ops.causal_softmax([[1.0, 5.0], [0.0, 0.0]]) == [[1.0, 0.0], [0.5, 0.5]]
    y = ops.layer_norm([1.0, 2.0, 3.0], [1.0] * 3, [0.0] * 3, eps=0.0)
    assert y[1] == 0.0 and math.isclose(y[2], math.sqrt(1.5))
    assert ops.gelu(0.0) == 0.0 and math.isclose(ops.gelu(10.0), 10.0) and abs(ops.gelu(-10.0)) < 1e-12


def test_bad_verification_reference_reports_unavailable():
    report = run_verification(references=())
    assert report.rows[0].component == "cached vs uncached decoding" and report.rows[0].status == "pass"
    assert not report.references_ran and not report.ok  # the self-check alone verifies nothing


def greedy(engine, prompt, steps, cached=True):
    ids = list(prompt)
    if cached:
        cache = engine.new_cache()
        logits = engine.forward(ids, cache)
        for _ in range(steps):
            ids.append(argmax(logits))
            logits = engine.forward([ids[-1]], cache)
    else:
        for _ in range(steps):
            ids.append(argmax(engine.forward(ids, engine.new_cache())))
    return ids[len(prompt) :]


def test_cached_and_uncached_decoding_give_identical_tokens_for_40_steps(small):
    config, params = small
    engine = PureEngine(config, params)
    cached = greedy(engine, [5, 17, 3], 40)
    uncached = greedy(engine, [5, 17, 3], 40, cached=False)
    assert cached == uncached
    w = model.nested_params(params)
    assert argmax(model.forward([5, 17, 3] + cached[:-1], w, config)[-1]) == cached[-1]


@pytest.mark.parametrize("storage", ["fast", "compact"])
@pytest.mark.parametrize("method", [m for m in METHODS if m != "sumprod" or hasattr(math, "sumprod")])
def test_layouts_and_inner_products_agree(small, storage, method):
    config, params = small
    ids = [1, 2, 3, 50, 96]
    reference = model.forward(ids, model.nested_params(params), config)
    engine = PureEngine(config, params, storage=storage, method=method, workers=1)
    got = engine.forward(ids, engine.new_cache(), all_logits=True)
    err = max(abs(a - b) for ra, rb in zip(got, reference) for a, b in zip(ra, rb))
    assert err <= 1e-9 * max(abs(v) for row in reference for v in row)


def test_fp16_storage_rounds_weights_to_half_precision(small):
    config, params = small
    ids = [7, 3, 90]
    exact = model.forward(ids, model.nested_params(params), config)
    engine = PureEngine(config, params, storage="fp16", workers=1)
    row = engine.matrices.local[0].rows[0]
    assert len({id(v) for v in row}) <= len(set(row))  # equal values are one shared object
    got = engine.forward(ids, engine.new_cache(), all_logits=True)
    scale = max(abs(v) for r in exact for v in r)
    err = max(abs(a - b) for ra, rb in zip(got, exact) for a, b in zip(ra, rb))
    assert 0 < err <= 5e-3 * scale


@pytest.mark.skipif(not can_fork(), reason="worker processes need fork")
def test_worker_processes_give_the_same_logits(small):
    config, params = small
    one = PureEngine(config, params, workers=1)
    two = PureEngine(config, params, workers=2)
    three = PureEngine(config, params, workers=3)
    assert two.workers == 2 and len(two.matrices._processes) == 1
    ids = [4, 8, 15, 16, 23, 42]
    a = one.forward(ids, one.new_cache(), all_logits=True)
    assert two.forward(ids, two.new_cache(), all_logits=True) == a
    assert three.forward(ids, three.new_cache(), all_logits=True) == a
    for e in (two, three):
        procs = list(e.matrices._processes)
        e.close()
        assert not any(p.is_alive() for p in procs)


def test_engine_rejects_bad_input(small):
    config, params = small
    engine = load_engine("pure", config, params)
    with pytest.raises(Gpt2Error, match="outside the vocabulary"):
        engine.forward([97], engine.new_cache())
    with pytest.raises(Gpt2Error, match="at least one"):
        engine.forward([], engine.new_cache())
    with pytest.raises(Gpt2Error, match="context window"):
        engine.forward([1] * 65, engine.new_cache())


@pytest.mark.parametrize("n_head", [4, 25])
def test_logits_equal_transformers_gpt2lmheadmodel(n_head):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    config = Config(n_layer=2, n_embd=4 * n_head, n_head=n_head, vocab_size=120, n_ctx=32)
    params = random_params(config, random.Random(11))  # random biases and gains too
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(**config.to_hf_dict())).eval()
    from gpt2.engines.torch.model import tensor_to_torch

    state = {"transformer." + k: tensor_to_torch(v).float() for k, v in params.items()}
    missing, unexpected = hf.load_state_dict(state, strict=False)
    assert not unexpected and all(m == "lm_head.weight" or m.endswith("attn.bias") for m in missing)
    hf.tie_weights()
    ids = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3]
    with torch.no_grad():
        hf32 = hf(torch.tensor([ids])).logits[0].tolist()
        hf64 = hf.double()(torch.tensor([ids])).logits[0].tolist()
    # The pure engine runs in float64 on the float32-rounded weights the HF model holds.
    p32 = {k: v.to_f32() for k, v in params.items()}
    engine = PureEngine(config, p32)
    ours = engine.forward(ids, engine.new_cache(), all_logits=True)
    scale = max(abs(v) for row in hf64 for v in row)
    assert max(abs(a - b) for ra, rb in zip(ours, hf64) for a, b in zip(ra, rb)) <= 1e-9 * scale
    assert max(abs(a - b) for ra, rb in zip(ours, hf32) for a, b in zip(ra, rb)) <= 1e-4 * scale


@pytest.mark.slow
def test_full_124m_shape_matches_transformers():
    """The real GPT-2 shape (12 layers, 768 wide, 50257 tokens), random weights made by
    transformers, two worker processes: same logits as GPT2LMHeadModel."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from gpt2.tensor import Tensor
    from gpt2.weights.names import from_hf_names

    config = Config.preset("gpt2")
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(**config.to_hf_dict())).eval()
    state = {
        name: Tensor(tuple(v.shape), "F32", v.detach().float().contiguous().numpy().tobytes())
        for name, v in hf.state_dict().items()
    }
    params = from_hf_names(state, "transformers")  # drops the causal-mask buffers and the tied head
    ids = [464, 2068, 7586, 21831, 18045]
    with torch.no_grad():
        expected = hf(torch.tensor([ids])).logits[0].double()
    engine = PureEngine(config, params, workers=2)
    cache = engine.new_cache()
    got = engine.forward(ids[:3], cache, all_logits=True) + [engine.forward([t], cache) for t in ids[3:]]
    engine.close()
    err = (torch.tensor(got, dtype=torch.float64) - expected).abs().max().item()
    assert err <= 1e-4 * expected.abs().max().item()
    assert [max(range(len(r)), key=r.__getitem__) for r in got] == expected.argmax(-1).tolist()
