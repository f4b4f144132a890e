"""The batched sampler (`gpt2.generation.vectorised.sample_rows`) that the scheduler draws every
row's token with: the same token as the list algorithm from the same draw, greedy rows are the
arg-max, each row keeps its own RNG (a seeded row draws the same whatever else is in the batch),
and NaN/inf never reaches a draw unnoticed."""

import math

import pytest

np = pytest.importorskip("numpy")

from gpt2.errors import GenerationError  # noqa: E402
from gpt2.generation import GenerationConfig, Sampler, SamplingConfig  # noqa: E402
from gpt2.generation.vectorised import sample_rows  # noqa: E402

CONFIGS = [
    SamplingConfig(temperature=1.0, top_k=0),  # OpenAI's default: temperature 1, every candidate
    SamplingConfig(temperature=0.0),
    SamplingConfig(top_k=1),
    SamplingConfig(temperature=0.6, top_k=0),
    SamplingConfig(temperature=1.8, top_k=0),
    SamplingConfig(top_k=0, top_p=0.9),
    SamplingConfig(temperature=0.8, top_k=0, top_p=0.3),
    SamplingConfig(top_k=40),
    SamplingConfig(temperature=1.3, top_k=20, top_p=0.8),
    SamplingConfig(top_k=3000, top_p=0.99),
]


def logits_like(rng, vocab, ties=False):
    """Logits with a peaked head and a long tail, as a language model's are (and rounded: ties)."""
    x = rng.standard_normal(vocab) * float(rng.uniform(0.5, 4.0))
    x[rng.integers(0, vocab, 5)] += float(rng.uniform(0, 12))
    x = x.astype(np.float32)
    return np.round(x) if ties else x


@pytest.mark.parametrize("vocab", [7, 300, 50257])
def test_each_row_draws_what_the_list_sampler_draws_from_the_same_draws(vocab):
    rng = np.random.default_rng(vocab)
    fast = [Sampler(c, seed=10 + i) for i, c in enumerate(CONFIGS)]
    reference = [Sampler(c, seed=10 + i) for i, c in enumerate(CONFIGS)]
    steps = 3 if vocab > 1000 else 40
    for step in range(steps):
        rows = np.stack([logits_like(rng, vocab, ties=step % 3 == 0) for _ in CONFIGS])
        got = sample_rows(rows, fast)
        assert got == [r.sample(row.tolist()) for r, row in zip(reference, rows)], step
    assert [s.rng.random() for s in fast] == [s.rng.random() for s in reference]  # as many draws each


def test_float32_logits_are_scaled_in_float64_as_the_list_sampler_scales_them():
    from gpt2.generation.vectorised import _Row, _Scratch

    values = logits_like(np.random.default_rng(3), 50257)
    inv_t = 1.0 / 0.7
    scaled = [v * inv_t for v in values.tolist()]  # the list version's arithmetic
    top = max(scaled)
    row = _Row(values, 0.7, _Scratch(len(values)))
    assert row.weights.tolist() == np.exp(np.array(scaled) - top).tolist()


def test_greedy_rows_are_the_argmax_and_draw_nothing():
    rng = np.random.default_rng(1)
    rows = np.stack([logits_like(rng, 50257, ties=True) for _ in range(4)])
    rows[2, [5, 9]] = rows[2].max() + 1  # a tie for the best: the lower id
    samplers = [Sampler(SamplingConfig(temperature=0), seed=i) for i in range(4)]
    states = [s.rng.getstate() for s in samplers]
    assert sample_rows(rows, samplers) == [int(np.argmax(r)) for r in rows]
    assert sample_rows(rows, samplers)[2] == 5
    assert [s.rng.getstate() for s in samplers] == states


def test_greedy_is_decided_by_sampling_config_greedy(monkeypatch):
    """The one rule: a row is greedy exactly when its SamplingConfig says so."""
    rows = np.array([[0.0, 1.0, 3.0, 2.0]] * 8, dtype=np.float32)
    samplers = [Sampler(SamplingConfig(temperature=5.0), seed=i) for i in range(8)]
    states = [s.rng.getstate() for s in samplers]
    monkeypatch.setattr(SamplingConfig, "greedy", property(lambda self: True))
    assert sample_rows(rows, samplers) == [2] * 8
    assert [s.rng.getstate() for s in samplers] == states  # greedy by the rule: no draw
    monkeypatch.setattr(SamplingConfig, "greedy", property(lambda self: False))
    sample_rows(rows, samplers)
    assert all(s.rng.getstate() != state for s, state in zip(samplers, states))


def test_a_seeded_row_draws_the_same_whatever_else_is_in_the_batch():
    rng = np.random.default_rng(2)
    steps = [np.stack([logits_like(rng, 2000) for _ in range(6)]) for _ in range(30)]
    mine = SamplingConfig(temperature=0.9, top_k=0, top_p=0.95)
    alone = Sampler(mine, seed=42)
    expected = [sample_rows(rows[:1], [alone])[0] for rows in steps]
    for company in (CONFIGS[:5], CONFIGS[5:]):
        samplers = [Sampler(mine, seed=42)] + [Sampler(c, seed=None) for c in company]
        got = [sample_rows(rows[: len(samplers)], samplers)[0] for rows in steps]
        assert got == expected


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_nan_or_inf_logits_fail_their_row_only(bad):
    rows = np.zeros((3, 50), dtype=np.float32)
    rows[:, 7] = 5.0
    rows[1, 3] = bad
    samplers = [Sampler(SamplingConfig(top_k=0), seed=i) for i in range(3)]
    untouched = samplers[1].rng.getstate()
    with pytest.raises(GenerationError, match="logits"):
        sample_rows(rows, samplers)
    got = sample_rows(rows, samplers, errors=True)
    assert isinstance(got[1], GenerationError) and isinstance(got[0], int) and isinstance(got[2], int)
    assert samplers[1].rng.getstate() == untouched
    with pytest.raises(GenerationError):  # and through the sampler's own path
        Sampler(SamplingConfig(temperature=0)).sample(rows[1])


def test_all_minus_inf_is_refused_and_some_minus_inf_are_never_drawn():
    rows = np.full((2, 20), -np.inf, dtype=np.float32)
    rows[1, [4, 11]] = [0.0, 0.5]
    with pytest.raises(GenerationError):
        sample_rows(rows[:1], [Sampler(seed=0)])
    draws = {sample_rows(rows[1:], [s])[0] for s in [Sampler(seed=i) for i in range(40)]}
    assert draws == {4, 11}


def test_the_scheduler_samples_a_batch_in_one_call_and_each_row_as_alone(kit, monkeypatch):
    """Sampled rows (temperature 1, penalties, bias) beside greedy ones: every decoding step draws
    the whole batch with one `sample_rows` call, and each row's tokens are its tokens alone."""
    from gpt2.engines import load_engine
    from gpt2.generation import stream, vectorised
    from gpt2.generation.scheduler import Generated, Scheduler, Sequence

    engine = load_engine("numpy", kit.config, kit.params, dtype="float64")
    configs = [
        GenerationConfig(max_new_tokens=8, stop_ids=(), seed=3),
        GenerationConfig(max_new_tokens=8, stop_ids=(), temperature=0),
        GenerationConfig(max_new_tokens=8, stop_ids=(), seed=4, frequency_penalty=1.5, logit_bias={2: 3.0}),
        GenerationConfig(max_new_tokens=8, stop_ids=(), seed=5, top_p=0.8, repetition_penalty=1.3),
    ]
    prompts = [[1, 2, 3], [4, 5], [6, 7, 8], [9]]
    calls = []
    real = vectorised.sample_rows
    monkeypatch.setattr(
        vectorised,
        "sample_rows",
        lambda rows, samplers, **kw: calls.append(len(samplers)) or real(rows, samplers, **kw),
    )
    events = {}
    scheduler = Scheduler(engine, max_batch=4)
    scheduler.submit(
        [
            Sequence(i, p, c, sink=lambda i, e: events.setdefault(i, []).append(e))
            for i, (p, c) in enumerate(zip(prompts, configs))
        ]
    )
    while scheduler.busy:
        scheduler.run_step()
    assert 4 in calls  # a decoding step drew the four rows at once
    for i, (p, c) in enumerate(zip(prompts, configs)):
        tokens = [e.step.token for e in events[i] if isinstance(e, Generated)]
        assert tokens == [s.token for s in stream(engine, p, c)], i
