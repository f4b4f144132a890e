"""Where our generation and `transformers`' meet, and the one place they knowingly differ.

- beam search: the same rules (a hypothesis that ends on a stop id joins the finished ones only when it
  ranks among the first num_beams candidates; early_stopping=False), so the same sequence;
- top-k: on a tie at the k-th logit we keep exactly k tokens, the lowest ids, so that every engine
  draws the same token from the same seed; `transformers` keeps every tied token. `--top-k`'s help
  says so, and this test pins both behaviours.
"""

import pytest

from gpt2.generation import Sampler, SamplingConfig, beam_search

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def hf(kit):
    return kit.transformers_model()


def hf_beam(hf, prompt, num_beams, n, length_penalty, stop):
    with torch.no_grad():
        out = hf.generate(
            torch.tensor([prompt]),
            num_beams=num_beams,
            max_new_tokens=n,
            do_sample=False,
            length_penalty=length_penalty,
            early_stopping=False,
            eos_token_id=stop,
            pad_token_id=stop,
        )
    ids = out[0, len(prompt) :].tolist()
    return ids[: ids.index(stop)] if stop in ids else ids


# (num_beams, length_penalty, stop id): (2, 0.0, 78) is a case where a hypothesis ending on the stop id
# ranks third of the 2 * 2 candidates; finishing it anyway (this project's rule until it was aligned)
# ends the search on an empty sequence, where transformers continues to [6, 6, 6, 17].
CASES = [(2, 0.0, 78), (2, -1.0, 78), (3, 1.0, 6), (4, 2.0, 17), (3, 0.0, 5), (2, 1.0, 50)]


@pytest.mark.parametrize("num_beams, length_penalty, stop", CASES)
def test_beam_search_picks_what_transformers_picks(kit, hf, num_beams, length_penalty, stop):
    ours = beam_search(kit.engines["numpy"], kit.prompt, num_beams, 8, length_penalty, stop_ids=(stop,))
    assert ours.ids == hf_beam(hf, kit.prompt, num_beams, 8, length_penalty, stop)


def test_the_case_that_pins_the_stop_rank_rule(kit, hf):
    # the first case above is one where the rule matters: a stop ranked below num_beams exists
    best = beam_search(kit.engines["torch"], kit.prompt, 2, 8, 0.0, stop_ids=(78,))
    assert best.ids == [6, 6, 6, 17] == hf_beam(hf, kit.prompt, 2, 8, 0.0, 78)


def test_top_k_keeps_exactly_k_on_a_tie_where_transformers_keeps_every_tie():
    logits = [1.0, 3.0, 3.0, 3.0, 0.0]
    ours = Sampler(SamplingConfig(top_k=2)).candidates(logits)
    assert [token for token, _ in ours] == [1, 2]  # exactly two: the lower ids win the tie
    np = pytest.importorskip("numpy")
    from gpt2.generation.vectorised import ranked

    assert ranked(np.asarray(logits), 2).tolist() == [1, 2]  # the NumPy path agrees
    warped = transformers.TopKLogitsWarper(top_k=2)(torch.zeros(1, 1, dtype=torch.long), torch.tensor([logits]))
    kept = torch.isfinite(warped[0]).nonzero().flatten().tolist()
    assert kept == [1, 2, 3]  # transformers keeps all three tied tokens


def test_top_p_keeps_the_same_tokens_as_transformers_without_ties():
    generator = torch.Generator().manual_seed(3)
    for _ in range(20):
        logits = torch.randn(1, 50, generator=generator) * 3
        for top_p in (0.3, 0.8, 0.95):
            ours = {t for t, _ in Sampler(SamplingConfig(top_p=top_p)).candidates(logits[0].tolist())}
            warped = transformers.TopPLogitsWarper(top_p=top_p)(torch.zeros(1, 1, dtype=torch.long), logits.clone())
            assert ours == set(torch.isfinite(warped[0]).nonzero().flatten().tolist())
