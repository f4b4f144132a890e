"""Logits that no sampler may turn into a token (NaN, +inf, nothing but -inf), a temperature so
small that dividing by it overflows (greedy, by `SamplingConfig.greedy`, everywhere), and the
shared operations of `gpt2.generation.logits` agreeing on lists and arrays."""

from __future__ import annotations

import json
import math

import pytest

from gpt2.errors import GenerationError
from gpt2.generation import Decoder, GenerationConfig, Sampler, SamplingConfig
from gpt2.generation.logits import ARRAY, LIST, ops_of
from gpt2.generation.sampling import MIN_TEMPERATURE

np = pytest.importorskip("numpy")

NAN, INF = float("nan"), float("inf")
BAD = {
    "nan": [0.5, NAN, 2.0, 1.0],
    "+inf": [0.5, INF, 2.0, 1.0],
    "nan and +inf": [INF, NAN, 2.0, 1.0],
    "all -inf": [-INF, -INF, -INF, -INF],
}
SETTINGS = {
    "greedy": SamplingConfig(temperature=0),
    "tiny temperature": SamplingConfig(temperature=1e-320),
    "temperature": SamplingConfig(temperature=0.7),
    "top-k": SamplingConfig(top_k=2),
    "top-p": SamplingConfig(top_p=0.5),
    "top-k 1": SamplingConfig(top_k=1),
}
REFUSED = r"produced (NaN|\+inf|all -inf) logits"


def kinds(values):
    """The same logits as the pure engine and as a BatchEngine return them."""
    return {"list": list(values), "array": np.asarray(values, dtype=np.float32)}


@pytest.mark.parametrize("settings", SETTINGS.values(), ids=SETTINGS.keys())
@pytest.mark.parametrize("bad", BAD.values(), ids=BAD.keys())
def test_no_sampler_path_turns_nan_or_inf_logits_into_a_token(bad, settings):
    for logits in kinds(bad).values():
        with pytest.raises(GenerationError, match=REFUSED):  # the sampler, looking at its logits
            Sampler(settings, seed=0).sample(logits)
        with pytest.raises(GenerationError, match=REFUSED):  # its implementation chosen once
            Sampler(settings, seed=0, logits=ops_of(logits)).sample(logits)
        config = GenerationConfig(
            temperature=settings.temperature, top_k=settings.top_k, top_p=settings.top_p, logprobs=2, seed=0
        )
        for adjusted in (config, config.replace(repetition_penalty=1.3, logit_bias={0: 5.0})):
            with pytest.raises(GenerationError, match=REFUSED):  # a decoder: adjusted, then sampled
                Decoder([1], adjusted, logits=ops_of(logits)).step(logits)


@pytest.mark.parametrize("bad", BAD.values(), ids=BAD.keys())
def test_the_vectorised_sampler_and_the_batch_check_refuse_them(bad):
    from gpt2.generation.logits import check_rows
    from gpt2.generation.vectorised import sample_array

    for settings in SETTINGS.values():
        with pytest.raises(GenerationError, match=REFUSED):
            sample_array(np.asarray(bad, dtype=np.float32), Sampler(settings, seed=0))
    rows = np.asarray([[0.0, 1.0, 2.0, 3.0], bad], dtype=np.float32)
    with pytest.raises(GenerationError, match=REFUSED):
        check_rows(rows)
    check_rows(rows[:1])  # a finite batch passes


@pytest.mark.parametrize("bad", BAD.values(), ids=BAD.keys())
def test_the_explorers_distribution_refuses_them(bad):
    from gpt2.explore.distribution import next_token_distribution

    for settings in SETTINGS.values():
        with pytest.raises(GenerationError, match=REFUSED):
            next_token_distribution(np.asarray(bad, dtype=np.float32), settings, top=4)


class Broken:
    """A batched engine whose logits turn to NaN or +inf after the prompt (a failing model)."""

    def __init__(self, engine, value):
        self.engine, self.value = engine, value
        self.name, self.config = "broken", engine.config
        self.passes = 0

    def __getattr__(self, name):  # the rest of the contract (notices, KV bytes, ...) is the engine's
        return getattr(self.engine, name)

    def new_cache(self):
        return self.engine.new_cache()

    def forward(self, ids, cache, *, all_logits=False, recorder=None):
        return self.engine.forward(ids, cache, all_logits=all_logits)

    def close(self):
        pass

    def new_batch_cache(self, n):
        return self.engine.new_batch_cache(n)

    def forward_batch(self, rows, cache, *, all_logits=False):
        logits = self.engine.forward_batch(rows, cache, all_logits=all_logits)
        self.passes += 1
        if self.passes > 1:
            logits[..., 3] = self.value
        return logits


@pytest.fixture(scope="module")
def small():
    from gpt2.config import Config
    from gpt2.engines import load_engine
    from gpt2.params import init_params

    config = Config(n_layer=1, n_embd=8, n_head=2, vocab_size=11, n_ctx=16)
    return load_engine("numpy", config, init_params(config, seed=0))


@pytest.mark.parametrize("value", [NAN, INF], ids=["nan", "+inf"])
def test_beam_search_refuses_them(small, value):
    from gpt2.generation import beam_search

    assert beam_search(Broken(small, 0.0), [1, 2], num_beams=2, max_new_tokens=4, stop_ids=()).ids  # finite: fine
    with pytest.raises(GenerationError, match=REFUSED):
        beam_search(Broken(small, value), [1, 2], num_beams=2, max_new_tokens=4, stop_ids=())


@pytest.mark.parametrize("value", [NAN, INF], ids=["nan", "+inf"])
def test_a_batch_refuses_them(small, value):
    from gpt2.generation import batch_decoders, run_batch

    for temperature in (0.0, 1.0):
        decoders = batch_decoders(
            Broken(small, value),
            [[1, 2], [3]],
            GenerationConfig(max_new_tokens=4, temperature=temperature, seed=1, stop_ids=()),
        )
        with pytest.raises(GenerationError, match=REFUSED):
            run_batch(Broken(small, value), decoders)


# --- a temperature that would overflow is greedy -----------------------------------------------------


@pytest.mark.parametrize("temperature", [1e-320, 5e-324, 1e-300, 1e-200, 1e-7])
def test_a_tiny_temperature_is_greedy_on_every_path(temperature):
    from gpt2.explore.distribution import next_token_distribution
    from gpt2.generation.vectorised import sample_array

    # the least likely token last, ties at the top: greedy takes the lowest id of the two best
    logits = [1.0, 3.0, -2.0, 3.0, 0.5, -30.0]
    for top_k, top_p in ((0, 1.0), (3, 1.0), (0, 0.5), (40, 0.9)):
        settings = SamplingConfig(temperature=temperature, top_k=top_k, top_p=top_p)
        assert settings.greedy
        for seed in range(5):
            for kind, values in kinds(logits).items():
                assert Sampler(settings, seed=seed).sample(values) == 1, kind
                assert Sampler(settings, seed=seed, logits=ops_of(values)).sample(values) == 1, kind
            assert sample_array(np.asarray(logits, dtype=np.float32), Sampler(settings, seed=seed)) == 1
        shown = next_token_distribution(np.asarray(logits, dtype=np.float32), settings, top=6)
        assert shown["greedy"] and [c["id"] for c in shown["candidates"] if c["kept"]] == [1]


def test_the_python_api_treats_a_tiny_temperature_as_greedy(small):
    from gpt2.engines import load_engine
    from gpt2.generation import stream
    from gpt2.params import init_params

    pure = load_engine("pure", small.config, init_params(small.config, seed=0))
    for engine in (small, pure):
        runs = [
            [
                s.token
                for s in stream(engine, [1, 2], GenerationConfig(max_new_tokens=6, temperature=t, seed=9, stop_ids=()))
            ]
            for t in (0.0, 1e-320, 5e-324)
        ]
        assert runs[0] == runs[1] == runs[2]


def test_the_threshold_is_documented_and_just_above_it_sampling_stays_finite():
    assert MIN_TEMPERATURE == 1e-6
    assert not SamplingConfig(temperature=MIN_TEMPERATURE).greedy
    assert SamplingConfig(temperature=math.nextafter(MIN_TEMPERATURE, 0)).greedy
    # float32's extremes divided by the smallest sampled temperature stay finite in the float64
    # arithmetic of both paths: a token, never a NaN weight
    huge = np.array([3.0e38, -3.0e38, 3.0e38 * 0.999999, 0.0], dtype=np.float32)
    settings = SamplingConfig(temperature=MIN_TEMPERATURE)
    for kind, values in kinds(huge.tolist()).items():
        assert Sampler(settings, seed=3).sample(values) == 0, kind
    assert np.isfinite(huge.astype(np.float64) / MIN_TEMPERATURE).all()


def test_an_overflow_left_to_a_logit_bias_is_an_error_not_a_token():
    config = GenerationConfig(temperature=1e-5, logit_bias={2: 1.7e308}, seed=0)
    with pytest.raises(GenerationError, match="overflow"):
        Decoder([1], config, logits=LIST).step([0.0, 1.0, 2.0])
    with pytest.raises(GenerationError, match=REFUSED), np.errstate(over="ignore"):  # float32 overflowed to +inf
        Decoder([1], config, logits=ARRAY).step(np.array([0.0, 1.0, 2.0], dtype=np.float32))


def test_the_cli_treats_a_tiny_temperature_as_greedy(capsys):
    from gpt2.cli import main

    def run(temperature):
        args = ["generate", "-m", "gpt2-shakespeare", "ROMEO:", "--temperature", temperature]
        assert main([*args, "--seed", "1", "--max-new-tokens", "5", "--json"]) == 0
        return json.loads(capsys.readouterr().out)

    tiny, greedy = run("1e-320"), run("0")
    assert tiny["samples"][0]["ids"] == greedy["samples"][0]["ids"]


# --- the shared operations agree on both kinds ---------------------------------------------------------


def test_the_operations_agree_on_lists_and_arrays():
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(5, 40)).astype(np.float32)
    rows[:, 7] = rows[:, 3]  # ties: the lower id first
    lists = rows.astype(np.float64).tolist()
    assert ops_of(lists) is LIST and ops_of(rows) is ARRAY and ops_of(rows[0]) is ARRAY
    for row, values in zip(rows, lists):
        assert LIST.argmax(values) == ARRAY.argmax(row)
        for k in (0, 1, 3, 40, 100):
            assert LIST.ranked(values, k) == ARRAY.ranked(row, k).tolist()
        a, b = LIST.token_logprobs(values, 7, 4), ARRAY.token_logprobs(row, 7, 4)
        assert a[0] == pytest.approx(b[0], abs=1e-12)
        assert [i for i, _ in a[1]] == [i for i, _ in b[1]]
    targets = [3, 7, 0, 39, 12]
    both = LIST.rows_logprobs(lists, targets, 2), ARRAY.rows_logprobs(rows, targets, 2)
    assert [lp for lp, _ in both[0]] == pytest.approx([lp for lp, _ in both[1]], abs=1e-12)
    assert LIST.join([lists[:2], lists[2:]]) == lists
    assert (ARRAY.join([rows[:2], rows[2:]]) == rows).all()
