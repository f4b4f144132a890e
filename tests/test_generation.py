"""The generation loop and the sampler: settings, seeds, context limits."""

import math
import random

import pytest

from gpt2 import Config
from gpt2.engines import load_engine
from gpt2.errors import GenerationError
from gpt2.generation import END_OF_TEXT, generate
from gpt2.generation.sampling import Sampler, SamplingConfig, argmax
from gpt2.params import init_params
from gpt2.verify import random_params

CFG = Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50257, n_ctx=12)


@pytest.fixture(scope="module")
def engine():
    tiny = Config(n_layer=1, n_embd=16, n_head=2, vocab_size=64, n_ctx=12)
    return load_engine("pure", tiny, random_params(tiny, random.Random(0)))


def run(engine, prompt, n, **settings):
    seed = settings.pop("seed", None)
    return list(generate(engine, prompt, n, Sampler(SamplingConfig(**settings), seed=seed), stop_ids=()))


@pytest.mark.parametrize(
    "bad",
    [
        {"temperature": -0.5},
        {"temperature": float("nan")},
        {"temperature": float("inf")},
        {"top_k": -1},
        {"top_k": 2.5},
        {"top_p": 0.0},
        {"top_p": 1.5},
        {"top_p": float("nan")},
        {"top_p": -0.1},
    ],
)
def test_bad_settings_are_clear_errors(bad):
    with pytest.raises(GenerationError):
        SamplingConfig(**bad)


def test_temperature_zero_is_greedy(engine):
    greedy = run(engine, [1, 2], 8, temperature=0)
    cache = engine.new_cache()
    logits = engine.forward([1, 2], cache)
    expected = []
    for _ in range(8):
        expected.append(argmax(logits))
        logits = engine.forward([expected[-1]], cache)
    assert greedy == expected
    assert run(engine, [1, 2], 8, top_k=1, seed=5) == expected


def test_seed_makes_runs_repeatable_and_samplers_own_their_rng(engine):
    a = run(engine, [3], 10, temperature=1.5, seed=42)
    random.seed(0)
    random.random()
    b = run(engine, [3], 10, temperature=1.5, seed=42)
    assert a == b
    others = {tuple(run(engine, [3], 10, temperature=1.5, seed=s)) for s in range(5)}
    assert len(others) > 1


def test_top_k_above_vocabulary_is_clamped(engine):
    assert run(engine, [3], 6, top_k=10_000, seed=1) == run(engine, [3], 6, top_k=0, seed=1)


def test_top_k_and_top_p_restrict_the_candidates():
    logits = [0.0, 1.0, 2.0, 3.0, 4.0]
    s = Sampler(SamplingConfig(top_k=2), seed=0)
    assert {s.sample(logits) for _ in range(200)} == {3, 4}
    probs = [math.exp(v) for v in logits]
    top = probs[4] / sum(probs)  # ~0.64
    s = Sampler(SamplingConfig(top_p=top - 1e-9), seed=0)
    assert {s.sample(logits) for _ in range(100)} == {4}
    s = Sampler(SamplingConfig(top_p=top + 0.01), seed=0)
    assert {s.sample(logits) for _ in range(300)} == {3, 4}
    # Ties broken by the lower id, in greedy and in top-k.
    assert Sampler(SamplingConfig(temperature=0)).sample([1.0, 5.0, 5.0]) == 1
    s = Sampler(SamplingConfig(top_k=1, temperature=0.7), seed=0)
    assert s.sample([5.0, 5.0, 1.0]) == 0


def test_sampling_follows_the_distribution():
    s = Sampler(SamplingConfig(temperature=1.0), seed=123)
    logits = [math.log(0.2), math.log(0.3), math.log(0.5)]
    counts = [0, 0, 0]
    for _ in range(6000):
        counts[s.sample(logits)] += 1
    assert [round(c / 6000, 1) for c in counts] == [0.2, 0.3, 0.5]


def test_prompt_longer_than_context_is_cropped_and_generation_slides(engine):
    long_prompt = list(range(30))  # n_ctx is 12
    out = run(engine, long_prompt, 25, temperature=0)
    assert len(out) == 25
    assert out[:1] == run(engine, long_prompt[-12:], 1, temperature=0)


def test_stops_at_end_of_text_and_max_new_tokens():
    config = Config(n_layer=1, n_embd=8, n_head=2, vocab_size=50257, n_ctx=8)
    params = init_params(config, seed=0)
    # Make <|endoftext|> the arg-max everywhere: a huge embedding row dominates x @ wte^T.
    import array

    from gpt2.tensor import Tensor

    wte = params["wte.weight"].to_array()
    for j in range(8):
        wte[END_OF_TEXT * 8 + j] = 50.0
    params["wte.weight"] = Tensor.from_array(wte, (50257, 8))
    params["ln_f.weight"] = Tensor.from_array(array.array("f", [1.0] * 8), (8,))
    params["ln_f.bias"] = Tensor.from_array(array.array("f", [1.0] * 8), (8,))
    engine = load_engine("pure", config, params)
    greedy = Sampler(SamplingConfig(temperature=0))
    assert list(generate(engine, [1, 2], 10, greedy)) == []
    assert list(generate(engine, [1, 2], 3, greedy, stop_ids=())) == [END_OF_TEXT] * 3
    assert list(generate(engine, [1, 2], 0, greedy)) == []


def test_empty_prompt_starts_from_end_of_text_and_bad_ids_are_errors(engine):
    assert len(run(engine, [], 3, temperature=0)) == 3
    with pytest.raises(GenerationError, match="outside the vocabulary"):
        run(engine, [64], 1)
    with pytest.raises(GenerationError, match="max_new_tokens"):
        run(engine, [1], -1)


@pytest.mark.parametrize("logits", [[float("nan"), 1.0], [float("-inf"), float("-inf")]])
@pytest.mark.parametrize("settings", [SamplingConfig(temperature=0), SamplingConfig(top_k=2)])
def test_nan_or_all_masked_logits_are_an_error_not_a_token(logits, settings):
    with pytest.raises(GenerationError, match=r"produced (NaN|all -inf) logits"):
        Sampler(settings, seed=0).sample(logits)
    np = pytest.importorskip("numpy")
    with pytest.raises(GenerationError, match=r"produced (NaN|all -inf) logits"):  # the vectorised path
        Sampler(settings, seed=0).sample(np.array(logits, dtype=np.float32))
