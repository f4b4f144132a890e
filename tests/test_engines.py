"""The NumPy and PyTorch engines against each other, the pure engine and `transformers`,
at a small random config (the 124M shape is in test_engines_124m.py)."""

import math
import random

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from gpt2.config import Config  # noqa: E402
from gpt2.engines import load_engine  # noqa: E402
from gpt2.engines.numpy_engine import NumpyEngine  # noqa: E402
from gpt2.engines.torch.engine import TorchEngine  # noqa: E402
from gpt2.engines.torch.model import GPT2  # noqa: E402
from gpt2.errors import GenerationError, Gpt2Error  # noqa: E402
from gpt2.generation import (  # noqa: E402
    beam_search,
    generate,  # noqa: E402
    generate_batch,
)
from gpt2.generation.sampling import Sampler, SamplingConfig  # noqa: E402
from gpt2.scoring import score  # noqa: E402

CONFIG = Config(n_layer=2, n_embd=32, n_head=4, vocab_size=97, n_ctx=48)
PROMPT = [3, 14, 15, 92, 65, 35, 8, 9, 79]
GREEDY = SamplingConfig(temperature=0.0)


def random_model(config: Config, seed: int = 0) -> GPT2:
    """GPT-2's init plus noise on every tensor, so biases and layer-norm affine terms matter."""
    torch.manual_seed(seed)
    model = GPT2(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


@pytest.fixture(scope="module")
def model():
    return random_model(CONFIG)


@pytest.fixture(scope="module")
def params(model):
    return model.to_params()


@pytest.fixture(scope="module")
def engines(params):
    return {
        "numpy": NumpyEngine(CONFIG, params),
        "torch": TorchEngine(CONFIG, params, device="cpu"),
        "pure": load_engine("pure", CONFIG, params),
    }


def as_numpy(logits):
    if hasattr(logits, "detach"):
        return logits.detach().cpu().numpy()
    return np.asarray(logits, dtype=np.float64)


def hf_model(config, params):
    transformers = pytest.importorskip("transformers")
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(**config.to_hf_dict())).eval()
    state = {"transformer." + name: GPT2.from_params(config, params).state_dict()[name] for name in params}
    missing, unexpected = hf.load_state_dict(state, strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}  # the head is tied to wte
    hf.tie_weights()
    return hf


def reference_logits(model, ids):
    with torch.no_grad():
        return model(torch.tensor([ids]))[0][0].numpy()  # [T, V]


# --- logits ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["numpy", "torch", "pure"])
def test_logits_match_the_torch_module(engines, model, name):
    expected = reference_logits(model, PROMPT)
    got = as_numpy(engines[name].forward(PROMPT, engines[name].new_cache(), all_logits=True))
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=2e-5, rtol=1e-4)


def test_logits_match_transformers(engines, params, model):
    hf = hf_model(CONFIG, params)
    with torch.no_grad():
        expected = hf(torch.tensor([PROMPT])).logits[0].numpy()
    np.testing.assert_allclose(reference_logits(model, PROMPT), expected, atol=2e-5, rtol=1e-4)
    for name in ("numpy", "torch"):
        got = as_numpy(engines[name].forward(PROMPT, engines[name].new_cache(), all_logits=True))
        np.testing.assert_allclose(got, expected, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("name", ["numpy", "torch"])
def test_cached_decoding_equals_a_full_pass(engines, model, name):
    engine = engines[name]
    expected = reference_logits(model, PROMPT)
    cache = engine.new_cache()
    chunks = [
        as_numpy(engine.forward(PROMPT[:4], cache, all_logits=True)),
        as_numpy(engine.forward(PROMPT[4:6], cache, all_logits=True)),
    ]  # a prefill after a prefill
    for token in PROMPT[6:]:
        chunks.append(as_numpy(engine.forward([token], cache))[None])
    assert len(cache) == len(PROMPT)
    np.testing.assert_allclose(np.concatenate(chunks), expected, atol=2e-5, rtol=1e-4)
    last = as_numpy(engine.forward(PROMPT, engine.new_cache()))
    np.testing.assert_allclose(last, expected[-1], atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("name", ["numpy", "torch"])
def test_batched_rows_of_different_lengths_equal_single_rows(engines, model, name):
    engine = engines[name]
    rows = [PROMPT, PROMPT[:5], PROMPT[2:9]]
    cache = engine.new_batch_cache(len(rows))
    for b, row in enumerate(rows):
        engine.forward_batch([row[:-1]], cache.row(b))
    assert list(cache.lengths) == [len(r) - 1 for r in rows]
    got = as_numpy(engine.forward_batch([[r[-1]] for r in rows], cache))  # one decode step, 3 positions
    for b, row in enumerate(rows):
        np.testing.assert_allclose(got[b], reference_logits(model, row)[-1], atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("name", ["numpy", "torch"])
def test_the_context_window_is_enforced(engines, name):
    engine = engines[name]
    cache = engine.new_cache()
    engine.forward(list(range(CONFIG.n_ctx)), cache)
    with pytest.raises(GenerationError, match="context window"):
        engine.forward([1], cache)
    with pytest.raises(GenerationError):
        engine.forward([CONFIG.vocab_size], engine.new_cache())


def test_both_torch_cpu_kernels_agree(params, model):
    expected = reference_logits(model, PROMPT)
    for kernel in ("blas", "onednn"):
        try:
            engine = TorchEngine(CONFIG, params, device="cpu", kernel=kernel)
        except Gpt2Error:  # a PyTorch built without oneDNN
            assert kernel == "onednn"
            continue
        assert engine.kernel == kernel
        cache = engine.new_cache()
        got = [engine.forward(PROMPT[:5], cache, all_logits=True)]
        got += [engine.forward([t], cache)[None] for t in PROMPT[5:]]
        np.testing.assert_allclose(torch.cat(got).numpy(), expected, atol=2e-5, rtol=1e-4)
        # the module keeps the checkpoint's names and shapes whatever the memory layout
        state = engine.model.state_dict()
        for name in ("h.0.attn.c_attn.weight", "h.1.mlp.c_proj.weight", "wte.weight"):
            np.testing.assert_array_equal(state[name].numpy(), model.state_dict()[name].numpy())


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_logits_are_finite_and_close(params, model, dtype):
    engine = TorchEngine(CONFIG, params, device="cpu", dtype=dtype)
    expected = reference_logits(model, PROMPT)
    cache = engine.new_cache()
    got = [engine.forward(PROMPT[:6], cache, all_logits=True)]  # fresh prefill: is_causal
    got.append(engine.forward(PROMPT[6:], cache, all_logits=True))  # prefill after the cache: boolean mask
    got = torch.cat(got)
    assert got.dtype == torch.float32 and torch.isfinite(got).all()
    tolerance = 0.05 if dtype == "bfloat16" else 0.01
    assert np.abs(got.numpy() - expected).max() < tolerance * max(1.0, np.abs(expected).max())


def test_numpy_float64_is_closer_to_exact(params, model):
    engine = NumpyEngine(CONFIG, params, dtype="float64")
    got = engine.forward(PROMPT, engine.new_cache(), all_logits=True)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, reference_logits(model, PROMPT), atol=2e-5)


def test_bad_options_are_typed_errors(params):
    with pytest.raises(Gpt2Error):
        NumpyEngine(CONFIG, params, dtype="float16")
    with pytest.raises(Gpt2Error):
        TorchEngine(CONFIG, params, dtype="int8")
    with pytest.raises(Gpt2Error):
        TorchEngine(CONFIG, params, device="tpu")
    with pytest.raises(Gpt2Error):
        TorchEngine(CONFIG, params, threads=0)
    with pytest.raises(Gpt2Error):
        NumpyEngine(CONFIG, params, threads=0)


# --- tokens ---------------------------------------------------------------------------------


def greedy_tokens(engine, n=40, prompt=PROMPT):
    return list(generate(engine, prompt, n, Sampler(GREEDY), stop_ids=()))


def test_the_same_greedy_tokens_everywhere(engines, params):
    hf = hf_model(CONFIG, params)
    with torch.no_grad():
        out = hf.generate(
            torch.tensor([PROMPT]),
            max_new_tokens=40,
            do_sample=False,
            use_cache=True,
            pad_token_id=0,
            eos_token_id=None,
        )
    expected = out[0, len(PROMPT) :].tolist()
    assert len(expected) == 40
    for name, engine in engines.items():
        assert greedy_tokens(engine) == expected, name


class AsLists:
    """An engine whose logits arrive as lists of floats, so the sampler takes its list path
    (the algorithm as written) instead of its vectorised copy."""

    def __init__(self, engine):
        self.config, self.new_cache, self.engine = engine.config, engine.new_cache, engine

    def forward(self, ids, cache, *, all_logits=False):
        logits = self.engine.forward(ids, cache, all_logits=all_logits)
        return logits if isinstance(logits, list) else logits.tolist()


@pytest.mark.parametrize(
    "settings", [SamplingConfig(temperature=1.0), SamplingConfig(top_k=5), SamplingConfig(temperature=0.7, top_p=0.9)]
)
def test_the_same_seed_samples_the_same_tokens_in_every_engine(engines, settings):
    runs = {}
    for name, engine in engines.items():
        runs[name] = list(generate(engine, PROMPT, 30, Sampler(settings, seed=11), stop_ids=()))
        plain = list(generate(AsLists(engine), PROMPT, 30, Sampler(settings, seed=11), stop_ids=()))
        assert plain == runs[name], name
    assert runs["numpy"] == runs["torch"] == runs["pure"]


def test_generation_slides_past_the_context_window(engines):
    tokens = {name: greedy_tokens(engines[name], n=CONFIG.n_ctx + 10) for name in ("numpy", "torch")}
    assert len(tokens["numpy"]) == CONFIG.n_ctx + 10
    assert tokens["numpy"] == tokens["torch"]


# --- the vectorised sampler -----------------------------------------------------------------


@pytest.mark.parametrize(
    "settings",
    [
        SamplingConfig(temperature=0.0),
        SamplingConfig(temperature=1.0),
        SamplingConfig(temperature=0.5, top_k=7),
        SamplingConfig(top_k=1),
        SamplingConfig(top_p=0.5),
        SamplingConfig(temperature=1.3, top_k=20, top_p=0.8),
        SamplingConfig(top_k=500),
    ],
)
def test_vectorised_sampling_picks_what_the_sampler_picks(settings):
    rng = np.random.default_rng(0)
    reference, fast = Sampler(settings, seed=5), Sampler(settings, seed=5)
    for trial in range(150):
        n = int(rng.integers(1, 300))
        logits = rng.standard_normal(n).astype(np.float32) * float(rng.uniform(0.1, 6))
        if trial % 3 == 0:  # many exact ties
            logits = np.round(logits).astype(np.float32)
        assert fast.sample(logits) == reference.sample(logits.tolist())
    assert fast.rng.random() == reference.rng.random()  # the same number of draws


def test_vectorised_sampling_on_a_full_vocabulary():
    rng = np.random.default_rng(1)
    settings = SamplingConfig(temperature=0.9, top_p=0.95)
    reference, fast = Sampler(settings, seed=2), Sampler(settings, seed=2)
    for _ in range(5):
        logits = (rng.standard_normal(50257) * 3).astype(np.float32)
        assert fast.sample(logits) == reference.sample(logits.tolist())


# --- batches and beams ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["numpy", "torch", "pure"])
def test_batched_generation_equals_one_row_at_a_time(engines, name):
    engine = engines[name]
    prompts = [PROMPT, PROMPT[:3], PROMPT, [7]]
    settings = SamplingConfig(top_k=10)
    rows = generate_batch(engine, prompts, 12, [Sampler(settings, seed=i) for i in range(4)], stop_ids=())
    alone = [list(generate(engine, p, 12, Sampler(settings, seed=i), stop_ids=())) for i, p in enumerate(prompts)]
    assert rows == alone


def test_batched_generation_stops_each_row_at_its_stop_id(engines):
    engine = engines["numpy"]
    free = generate_batch(engine, [PROMPT, PROMPT[:4]], 10, [Sampler(GREEDY), Sampler(GREEDY)], stop_ids=())
    stop = free[0][3]
    rows = generate_batch(engine, [PROMPT, PROMPT[:4]], 10, [Sampler(GREEDY), Sampler(GREEDY)], stop_ids=(stop,))
    assert rows[0] == free[0][: free[0].index(stop)]
    assert rows[1] == free[1][: free[1].index(stop)] if stop in free[1] else rows[1] == free[1]


def sequence_logprob(model, prompt, new):
    logits = torch.tensor(reference_logits(model, prompt + new), dtype=torch.float64)
    logp = torch.log_softmax(logits, -1)
    return sum(logp[len(prompt) - 1 + i, t].item() for i, t in enumerate(new))


@pytest.mark.parametrize("name", ["numpy", "torch"])
def test_beam_search_with_one_beam_is_greedy(engines, name):
    engine = engines[name]
    best = beam_search(engine, PROMPT, num_beams=1, max_new_tokens=15, stop_ids=())
    assert best.ids == greedy_tokens(engine, n=15)


@pytest.mark.parametrize("name", ["numpy", "torch"])
def test_beam_search_finds_a_sequence_at_least_as_likely_as_greedy(engines, model, name):
    engine = engines[name]
    greedy = greedy_tokens(engine, n=8)
    best = beam_search(engine, PROMPT, num_beams=4, max_new_tokens=8, stop_ids=())
    assert len(best.ids) == 8
    assert best.logprob == pytest.approx(sequence_logprob(model, PROMPT, best.ids), abs=1e-4)
    assert best.logprob >= sequence_logprob(model, PROMPT, greedy) - 1e-6


def test_beam_search_ends_on_a_stop_id(engines):
    engine = engines["numpy"]
    free = beam_search(engine, PROMPT, num_beams=3, max_new_tokens=6, stop_ids=())
    best = beam_search(engine, PROMPT, num_beams=3, max_new_tokens=6, stop_ids=(free.ids[2],))
    assert free.ids[2] not in best.ids


def test_beam_search_needs_a_batched_engine(engines):
    with pytest.raises(GenerationError):
        beam_search(engines["pure"], PROMPT, num_beams=2, max_new_tokens=3)


# --- scoring --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["numpy", "torch", "pure"])
def test_perplexity_is_exp_of_the_mean_cross_entropy(engines, model, name):
    result = score(engines[name], PROMPT)
    with torch.no_grad():
        logits, loss = model(torch.tensor([PROMPT[:-1]]), targets=torch.tensor([PROMPT[1:]]))
    assert len(result.logprobs) == len(PROMPT) - 1
    assert result.nll == pytest.approx(loss.item(), rel=1e-5)
    assert result.perplexity == pytest.approx(math.exp(loss.item()), rel=1e-5)


@pytest.mark.parametrize("name", ["numpy", "torch"])
def test_long_texts_are_scored_with_a_sliding_window(engines, model, name):
    ids = [random.Random(3).randrange(CONFIG.vocab_size) for _ in range(2 * CONFIG.n_ctx + 5)]
    stride = 16
    result = score(engines[name], ids, stride=stride)
    assert len(result.logprobs) == len(ids) - 1 and result.windows > 2
    expected = []  # each token scored once, by the window that first reaches it
    start, done = 0, 1
    while done < len(ids):
        window = ids[start : start + CONFIG.n_ctx]
        logp = torch.log_softmax(torch.tensor(reference_logits(model, window), dtype=torch.float64), -1)
        for i in range(done, start + len(window)):
            expected.append(logp[i - start - 1, ids[i]].item())
        done, start = start + len(window), start + stride
    np.testing.assert_allclose(result.logprobs, expected, atol=1e-4)
