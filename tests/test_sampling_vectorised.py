"""The sampler's vectorised path (NumPy arrays, torch tensors) picks exactly the token its list
path picks, from the same single draw."""

import pytest

np = pytest.importorskip("numpy")

from gpt2.generation import Sampler, SamplingConfig  # noqa: E402


@pytest.mark.parametrize(
    "sampling",
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
def test_vectorised_sampling_picks_what_the_sampler_picks(sampling):
    rng = np.random.default_rng(0)
    reference, fast = Sampler(sampling, seed=5), Sampler(sampling, seed=5)
    for trial in range(150):
        n = int(rng.integers(1, 300))
        logits = rng.standard_normal(n).astype(np.float32) * float(rng.uniform(0.1, 6))
        if trial % 3 == 0:  # many exact ties
            logits = np.round(logits).astype(np.float32)
        assert fast.sample(logits) == reference.sample(logits.tolist())
    assert fast.rng.random() == reference.rng.random()  # the same number of draws


def test_vectorised_sampling_on_a_full_vocabulary():
    rng = np.random.default_rng(1)
    sampling = SamplingConfig(temperature=0.9, top_p=0.95)
    reference, fast = Sampler(sampling, seed=2), Sampler(sampling, seed=2)
    for _ in range(5):
        logits = (rng.standard_normal(50257) * 3).astype(np.float32)
        assert fast.sample(logits) == reference.sample(logits.tolist())


def test_torch_tensors_take_the_vectorised_path():
    torch = pytest.importorskip("torch")
    logits = torch.tensor([0.5, 2.0, 2.0, -1.0])
    assert Sampler(SamplingConfig(top_k=3), seed=4).sample(logits) == Sampler(SamplingConfig(top_k=3), seed=4).sample(
        logits.tolist()
    )
