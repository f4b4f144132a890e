"""One PyTorch forward (issue 19, item 2): the engine runs the module's own forward with a KV
cache, its kernels swapped into the projections; training runs the same forward without one."""

import numpy as np
import pytest

from gpt2.engines import load_engine

torch = pytest.importorskip("torch")


def test_every_engine_pass_is_the_modules_forward(kit, monkeypatch):
    from gpt2.engines.torch.model import GPT2

    class Recorder:
        def residual(self, layer, x):
            pass

        def attention(self, layer, weights):
            pass

    calls = []
    forward = GPT2.forward

    def counted(self, idx, *args, **kwargs):
        calls.append((tuple(idx.shape), kwargs.get("cache") is not None))
        return forward(self, idx, *args, **kwargs)

    monkeypatch.setattr(GPT2, "forward", counted)
    engine = load_engine("torch", kit.config, kit.params, device="cpu")
    cache = engine.new_cache()
    engine.forward(kit.prompt[:4], cache)  # prefill
    engine.forward([kit.prompt[4]], cache)  # decoding one token: the hot path
    batch = engine.new_batch_cache(2)
    engine.forward_batch([kit.prompt[:3], kit.prompt[3:6]], batch)
    engine.forward([1, 2], engine.new_cache(), recorder=Recorder())
    assert calls == [((1, 4), True), ((1, 1), True), ((2, 3), True), ((1, 2), True)]


def test_the_module_with_a_cache_matches_the_module_without(kit):
    """The plain module (PyTorch's own products): a prefill and then one token at a time through the
    cache give the logits of one pass over the whole sequence, as training computes them."""
    from gpt2.engines.torch.attention import KVCache
    from gpt2.engines.torch.model import GPT2

    model = GPT2.from_params(kit.config, kit.params).eval()
    ids = torch.tensor([kit.prompt])
    with torch.no_grad():
        whole, _ = model(ids)  # [1, T, V]
        cache = KVCache.empty(kit.config, 1, torch.float32, torch.device("cpu"))
        parts = [model(ids[:, :5], cache=cache)[0]]
        parts += [model(ids[:, t : t + 1], cache=cache)[0] for t in range(5, ids.shape[1])]
    assert len(cache) == ids.shape[1]
    np.testing.assert_allclose(torch.cat(parts, dim=1).numpy(), whole.numpy(), atol=1e-5, rtol=1e-5)


def test_the_kernels_are_swapped_into_the_projections_not_the_math(kit):
    engine = load_engine("torch", kit.config, kit.params, device="cpu", kernel="blas")
    block = engine.model.h[0]
    for conv in (block.attn.c_attn, block.attn.c_proj, block.mlp.c_fc, block.mlp.c_proj):
        assert conv.project is not None
    assert engine.model.head is not None and engine.model.embed is not None
    # the module keeps its checkpoint names and shapes, and trains without the engine's kernels
    fresh = type(engine.model)(kit.config)
    assert fresh.head is None and fresh.h[0].attn.c_attn.project is None
