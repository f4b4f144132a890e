"""The three engines agree: with the torch module, with transformers, with themselves cached and
uncached, batched and alone, and on the tokens they generate (the 124M shape is in
test_engines_124m.py)."""

import numpy as np
import pytest

from gpt2.errors import GenerationError
from gpt2.generation import Sampler, SamplingConfig, generate

TOLERANCE = dict(atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("name", ["numpy", "torch", "pure"])
def test_logits_match_the_torch_module(kit, name):
    expected = kit.reference_logits(kit.prompt)
    engine = kit.engines[name]
    got = kit.as_numpy(engine.forward(kit.prompt, engine.new_cache(), all_logits=True))
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, **TOLERANCE)


def test_logits_match_transformers(kit):
    import torch

    hf = kit.transformers_model()
    with torch.no_grad():
        expected = hf(torch.tensor([kit.prompt])).logits[0].numpy()
    np.testing.assert_allclose(kit.reference_logits(kit.prompt), expected, **TOLERANCE)
    for name in ("numpy", "torch"):
        engine = kit.engines[name]
        got = kit.as_numpy(engine.forward(kit.prompt, engine.new_cache(), all_logits=True))
        np.testing.assert_allclose(got, expected, **TOLERANCE)


@pytest.mark.parametrize("name", ["numpy", "torch"])
def test_cached_decoding_equals_a_full_pass(kit, name):
    engine, prompt = kit.engines[name], kit.prompt
    expected = kit.reference_logits(prompt)
    cache = engine.new_cache()
    chunks = [
        kit.as_numpy(engine.forward(prompt[:4], cache, all_logits=True)),
        kit.as_numpy(engine.forward(prompt[4:6], cache, all_logits=True)),
    ]  # a prefill after a prefill
    for token in prompt[6:]:
        chunks.append(kit.as_numpy(engine.forward([token], cache))[None])
    assert len(cache) == len(prompt)
    np.testing.assert_allclose(np.concatenate(chunks), expected, **TOLERANCE)
    last = kit.as_numpy(engine.forward(prompt, engine.new_cache()))
    np.testing.assert_allclose(last, expected[-1], **TOLERANCE)


@pytest.mark.parametrize("name", ["numpy", "torch"])
def test_batched_rows_of_different_lengths_equal_single_rows(kit, name):
    engine, prompt = kit.engines[name], kit.prompt
    rows = [prompt, prompt[:5], prompt[2:9]]
    cache = engine.new_batch_cache(len(rows))
    for b, row in enumerate(rows):
        engine.forward_batch([row[:-1]], cache.row(b))
    assert cache.past() == [len(r) - 1 for r in rows]
    got = kit.as_numpy(engine.forward_batch([[r[-1]] for r in rows], cache))  # one decode step, 3 positions
    for b, row in enumerate(rows):
        np.testing.assert_allclose(got[b], kit.reference_logits(row)[-1], **TOLERANCE)


@pytest.mark.parametrize("name", ["numpy", "torch", "pure"])
def test_the_context_window_and_the_vocabulary_are_enforced(kit, name):
    engine = kit.engines[name]
    cache = engine.new_cache()
    engine.forward(list(range(kit.config.n_ctx)), cache)
    with pytest.raises(GenerationError, match="context window"):
        engine.forward([1], cache)
    with pytest.raises(GenerationError, match="outside the vocabulary"):
        engine.forward([kit.config.vocab_size], engine.new_cache())


def test_the_same_greedy_tokens_everywhere(kit):
    import torch

    hf = kit.transformers_model()
    with torch.no_grad():
        out = hf.generate(
            torch.tensor([kit.prompt]),
            max_new_tokens=40,
            do_sample=False,
            use_cache=True,
            pad_token_id=0,
            eos_token_id=None,
        )
    expected = out[0, len(kit.prompt) :].tolist()
    assert len(expected) == 40
    for name, engine in kit.engines.items():
        assert kit.greedy(engine) == expected, name


class AsLists:
    """An engine whose logits arrive as lists of floats, so the sampler takes its list path
    (the algorithm as written) instead of its vectorised copy."""

    def __init__(self, engine):
        self.config, self.new_cache, self.engine = engine.config, engine.new_cache, engine

    def forward(self, ids, cache, *, all_logits=False):
        logits = self.engine.forward(ids, cache, all_logits=all_logits)
        return logits if isinstance(logits, list) else logits.tolist()


@pytest.mark.parametrize(
    "sampling", [SamplingConfig(temperature=1.0), SamplingConfig(top_k=5), SamplingConfig(temperature=0.7, top_p=0.9)]
)
def test_the_same_seed_samples_the_same_tokens_in_every_engine(kit, sampling):
    runs = {}
    for name, engine in kit.engines.items():
        runs[name] = list(generate(engine, kit.prompt, 30, Sampler(sampling, seed=11), stop_ids=()))
        plain = list(generate(AsLists(engine), kit.prompt, 30, Sampler(sampling, seed=11), stop_ids=()))
        assert plain == runs[name], name
    assert runs["numpy"] == runs["torch"] == runs["pure"]


def test_generation_slides_past_the_context_window(kit):
    n = kit.config.n_ctx + 10
    tokens = {name: kit.greedy(kit.engines[name], n=n) for name in ("numpy", "torch")}
    assert len(tokens["numpy"]) == n
    assert tokens["numpy"] == tokens["torch"]
