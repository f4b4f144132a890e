"""The NumPy and PyTorch engines at GPT-2's 124M shape (random weights), against
`transformers`: logits within fp32 tolerance, the same 40 greedy tokens, cached
decoding equal to a full pass, and the same sampled tokens for the same seed."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from gpt2.config import Config  # noqa: E402
from gpt2.engines.numpy_engine import NumpyEngine  # noqa: E402
from gpt2.engines.torch.engine import TorchEngine  # noqa: E402
from gpt2.engines.torch.model import GPT2  # noqa: E402
from gpt2.generation import generate  # noqa: E402
from gpt2.generation.sampling import Sampler, SamplingConfig  # noqa: E402

pytestmark = pytest.mark.slow

CONFIG = Config.preset("gpt2")
PROMPT = [464, 3290, 286, 1204, 318, 257, 1332, 1110, 11, 290, 262, 2068, 7586, 21831, 318, 6405]
N_NEW = 40


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    module = GPT2(CONFIG).eval()
    with torch.no_grad():  # make the biases and layer-norm terms non-trivial
        for p in module.parameters():
            if p.ndim == 1:
                p.add_(0.02 * torch.randn_like(p))
    params = module.to_params()
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(**CONFIG.to_hf_dict())).eval()
    missing, unexpected = hf.load_state_dict(
        {"transformer." + k: v for k, v in module.state_dict().items()}, strict=False
    )
    assert not unexpected and set(missing) <= {"lm_head.weight"}
    hf.tie_weights()
    del module
    engines = {"numpy": NumpyEngine(CONFIG, params), "torch": TorchEngine(CONFIG, params, device="cpu")}
    del params
    with torch.no_grad():
        out = hf.generate(
            torch.tensor([PROMPT]),
            max_new_tokens=N_NEW,
            do_sample=False,
            use_cache=True,
            pad_token_id=0,
            eos_token_id=None,
        )
        greedy = out[0, len(PROMPT) :].tolist()
        logits = hf(out[:, :-1]).logits[0].numpy()  # every position of prompt + generated text
    return engines, greedy, logits


def as_numpy(x):
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def close(got, expected):
    scale = np.abs(expected).max()
    np.testing.assert_allclose(got, expected, atol=2e-4 * max(1.0, scale), rtol=1e-3)


@pytest.mark.parametrize("name", ["numpy", "torch"])
def test_124m_logits_and_greedy_tokens_match_transformers(setup, name):
    engines, greedy, hf_logits = setup
    engine = engines[name]
    ids = PROMPT + greedy[:-1]
    close(as_numpy(engine.forward(ids, engine.new_cache(), all_logits=True)), hf_logits)  # uncached
    cache = engine.new_cache()  # cached: the prompt, then one token at a time
    steps = [as_numpy(engine.forward(PROMPT, cache, all_logits=True))]
    steps += [as_numpy(engine.forward([t], cache))[None] for t in greedy[:-1]]
    close(np.concatenate(steps), hf_logits)
    tokens = list(generate(engine, PROMPT, N_NEW, Sampler(SamplingConfig(temperature=0)), stop_ids=()))
    assert tokens == greedy


def test_124m_same_seed_same_samples(setup):
    engines, _, _ = setup
    settings = SamplingConfig(temperature=0.8, top_k=40)
    runs = [list(generate(e, PROMPT, 20, Sampler(settings, seed=3), stop_ids=())) for e in engines.values()]
    assert runs[0] == runs[1]
