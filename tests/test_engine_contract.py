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
