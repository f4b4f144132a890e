"""Several sequences at once: batched sampling equals one row at a time; beam search."""

import pytest

from gpt2.errors import GenerationError
from gpt2.generation import Sampler, SamplingConfig, beam_search, generate, generate_batch, row_samplers

GREEDY = SamplingConfig(temperature=0.0)


@pytest.mark.parametrize("name", ["numpy", "torch", "pure"])
def test_batched_generation_equals_one_row_at_a_time(kit, name):
    engine, prompt = kit.engines[name], kit.prompt
    prompts = [prompt, prompt[:3], prompt, [7]]
    sampling = SamplingConfig(top_k=10)
    rows = generate_batch(engine, prompts, 12, row_samplers(sampling, seed=0, n=4), stop_ids=())
    alone = [list(generate(engine, p, 12, Sampler(sampling, seed=i), stop_ids=())) for i, p in enumerate(prompts)]
    assert rows == alone


def test_batched_generation_stops_each_row_at_its_stop_id(kit):
    engine, prompt = kit.engines["numpy"], kit.prompt
    free = generate_batch(engine, [prompt, prompt[:4]], 10, [Sampler(GREEDY), Sampler(GREEDY)], stop_ids=())
    stop = free[0][3]
    rows = generate_batch(engine, [prompt, prompt[:4]], 10, [Sampler(GREEDY), Sampler(GREEDY)], stop_ids=(stop,))
    assert rows[0] == free[0][: free[0].index(stop)]
    assert rows[1] == free[1][: free[1].index(stop)] if stop in free[1] else rows[1] == free[1]


def sequence_logprob(kit, prompt, new):
    import torch

    logits = torch.tensor(kit.reference_logits(prompt + new), dtype=torch.float64)
    logp = torch.log_softmax(logits, -1)
    return sum(logp[len(prompt) - 1 + i, t].item() for i, t in enumerate(new))


@pytest.mark.parametrize("name", ["numpy", "torch"])
def test_beam_search_with_one_beam_is_greedy(kit, name):
    engine = kit.engines[name]
    best = beam_search(engine, kit.prompt, num_beams=1, max_new_tokens=15, stop_ids=())
    assert best.ids == kit.greedy(engine, n=15)


@pytest.mark.parametrize("name", ["numpy", "torch"])
def test_beam_search_finds_a_sequence_at_least_as_likely_as_greedy(kit, name):
    engine = kit.engines[name]
    greedy = kit.greedy(engine, n=8)
    best = beam_search(engine, kit.prompt, num_beams=4, max_new_tokens=8, stop_ids=())
    assert len(best.ids) == 8
    assert best.logprob == pytest.approx(sequence_logprob(kit, kit.prompt, best.ids), abs=1e-4)
    assert best.logprob >= sequence_logprob(kit, kit.prompt, greedy) - 1e-6


def test_beam_search_ends_on_a_stop_id(kit):
    engine = kit.engines["numpy"]
    free = beam_search(engine, kit.prompt, num_beams=3, max_new_tokens=6, stop_ids=())
    best = beam_search(engine, kit.prompt, num_beams=3, max_new_tokens=6, stop_ids=(free.ids[2],))
    assert free.ids[2] not in best.ids


def test_beam_search_needs_a_batched_engine(kit):
    with pytest.raises(GenerationError, match="needs an engine with batches"):
        beam_search(kit.engines["pure"], kit.prompt, num_beams=2, max_new_tokens=3)
