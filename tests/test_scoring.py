"""Scoring: per-token log-probabilities and perplexity, in every engine, with a sliding window."""

import math
import random

import numpy as np
import pytest

from gpt2.scoring import score


@pytest.mark.parametrize("name", ["numpy", "torch", "pure"])
def test_perplexity_is_exp_of_the_mean_cross_entropy(kit, name):
    import torch

    result = score(kit.engines[name], kit.prompt)
    with torch.no_grad():
        _, loss = kit.model(torch.tensor([kit.prompt[:-1]]), targets=torch.tensor([kit.prompt[1:]]))
    assert len(result.logprobs) == len(kit.prompt) - 1
    assert result.nll == pytest.approx(loss.item(), rel=1e-5)
    assert result.perplexity == pytest.approx(math.exp(loss.item()), rel=1e-5)


@pytest.mark.parametrize("name", ["numpy", "torch"])
def test_long_texts_are_scored_with_a_sliding_window(kit, name):
    import torch

    n_ctx = kit.config.n_ctx
    ids = [random.Random(3).randrange(kit.config.vocab_size) for _ in range(2 * n_ctx + 5)]
    stride = 16
    result = score(kit.engines[name], ids, stride=stride)
    assert len(result.logprobs) == len(ids) - 1 and result.windows > 2
    expected = []  # each token scored once, by the window that first reaches it
    start, done = 0, 1
    while done < len(ids):
        window = ids[start : start + n_ctx]
        logp = torch.log_softmax(torch.tensor(kit.reference_logits(window), dtype=torch.float64), -1)
        for i in range(done, start + len(window)):
            expected.append(logp[i - start - 1, ids[i]].item())
        done, start = start + len(window), start + stride
    np.testing.assert_allclose(result.logprobs, expected, atol=1e-4)
