"""The engine contract (gpt2.engines.base): every engine is an Engine, the fast ones BatchEngines;
the checks say the same thing in every engine; the batched cache's row operations keep each
row's logits what they would be alone."""

import numpy as np
import pytest

from gpt2.engines.base import BatchEngine, Engine
from gpt2.errors import GenerationError

FAST = ["numpy", "torch"]


def test_every_engine_keeps_the_contract(kit):
    for name, engine in kit.engines.items():
        assert isinstance(engine, Engine) and engine.name == name and engine.config == kit.config
        assert isinstance(engine, BatchEngine) == (name in FAST)


@pytest.mark.parametrize(
    "rows, message",
    [
        ([[1, 2], [3]], "all rows the same length"),
        ([[1], []], "at least one token id in every row"),
        ([[1]], "1 rows for a cache of 2"),
        ([[1], [97]], "token id 97 is outside the vocabulary"),
        ([[1], [2.0]], "token id 2.0 is outside the vocabulary"),
    ],
)
@pytest.mark.parametrize("name", FAST)
def test_bad_rows_get_the_same_message_in_every_engine(kit, name, rows, message):
    engine = kit.engines[name]
    with pytest.raises(GenerationError, match=message):
        engine.forward_batch(rows, engine.new_batch_cache(2))


@pytest.mark.parametrize("name", FAST)
def test_reorder_copy_and_clear_rows(kit, name):
    engine, prompt = kit.engines[name], kit.prompt
    rows = [prompt[:3], prompt[:6], prompt[2:7]]
    cache = engine.new_batch_cache(3)
    for b, row in enumerate(rows):
        engine.forward_batch([row], cache.row(b))
    cache.reorder([2, 0, 0])  # beam search: rows follow their survivors
    assert cache.past() == [5, 3, 3]
    got = kit.as_numpy(engine.forward_batch([[11], [12], [13]], cache))
    for b, (row, token) in enumerate(zip([rows[2], rows[0], rows[0]], [11, 12, 13])):
        np.testing.assert_allclose(got[b], kit.reference_logits(row + [token])[-1], atol=2e-5, rtol=1e-4)

    cache.copy_row(0, 2)  # continuous batching: a finished row's place is refilled
    cache.clear_row(1)
    assert cache.past() == [6, 0, 6]
    live = cache.rows(1)  # the first rows as a view that shares memory
    kit.as_numpy(engine.forward_batch([[5]], live))
    assert cache.past() == [7, 0, 6] and len(live) == 7
    got = kit.as_numpy(engine.forward_batch([[21]], cache.row(2)))
    np.testing.assert_allclose(got[0], kit.reference_logits(rows[2] + [11, 21])[-1], atol=2e-5, rtol=1e-4)


# --- what comes back: one type per kind of engine (gpt2.engines.base) -----------------------------


def _promised_array(values, shape):
    """float32, C-contiguous, a NumPy array in host memory (not a tensor, not a view of one's type)."""
    assert type(values) is np.ndarray, type(values)
    assert values.dtype == np.float32 and values.flags.c_contiguous and values.shape == shape


def _promised_lists(values, shape):
    if len(shape) == 1:
        assert type(values) is list and len(values) == shape[0]
        assert all(type(v) is float for v in values)
    else:
        assert type(values) is list and len(values) == shape[0]
        for row in values:
            _promised_lists(row, shape[1:])


class Keep:
    """A recorder that keeps what it is handed, as it is handed."""

    def __init__(self):
        self.values = []

    def attention(self, layer, weights):
        self.values.append(weights)

    def residual(self, layer, x):
        self.values.append(x)


def _engines(kit):
    """The kit's engines and a few variants whose compute type differs from float32."""
    from gpt2.engines import load_engine

    yield from kit.engines.items()
    yield "numpy", load_engine("numpy", kit.config, kit.params, dtype="float64")
    yield "torch", load_engine("torch", kit.config, kit.params, device="cpu", dtype="bfloat16")


def test_every_engine_returns_logits_of_the_promised_type(kit):
    from gpt2.generation.logits import ARRAY, LIST, ops_for

    V, prompt = kit.config.vocab_size, kit.prompt
    T = len(prompt)
    for name, engine in _engines(kit):
        last = engine.forward(prompt, engine.new_cache())
        every = engine.forward(prompt, engine.new_cache(), all_logits=True)
        if name not in FAST:  # an engine without batches: lists of Python floats
            assert ops_for(engine) is LIST
            _promised_lists(last, (V,))
            _promised_lists(every, (T, V))
            continue
        assert ops_for(engine) is ARRAY
        _promised_array(last, (V,))
        _promised_array(every, (T, V))
        cache = engine.new_batch_cache(3)
        _promised_array(engine.forward_batch([prompt[:4], prompt[2:6], prompt[5:9]], cache), (3, V))
        _promised_array(engine.forward_batch([[1], [2], [3]], cache), (3, V))
        _promised_array(engine.forward_batch([[1, 2]] * 3, cache, all_logits=True), (3, 2, V))
        _promised_array(engine.forward_batch([[4]], cache.row(1)), (1, V))


def test_every_engine_hands_a_recorder_host_values(kit):
    for name, engine in _engines(kit):
        recorder = Keep()
        engine.forward(kit.prompt, engine.new_cache(), recorder=recorder)
        assert len(recorder.values) == 2 * kit.config.n_layer + 1
        for value in recorder.values:
            if name in FAST:
                assert type(value) is np.ndarray and value.dtype in (np.float32, np.float64)  # the compute dtype
            else:
                assert type(value) is list
