"""One batching loop in the project: `gpt2 generate --num-samples 8` and 8 concurrent
`gpt2 serve` clients both go through `gpt2.generation.scheduler.Scheduler`. Every token
either path hands out is counted as it leaves the scheduler; a path that batched on its own
(or sampled one row at a time without the scheduler) would count none."""

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("numpy")
pytest.importorskip("fastapi")
pytest.importorskip("openai")

import serverkit  # noqa: E402
from gpt2.cli import main  # noqa: E402
from gpt2.generation.scheduler import Scheduler  # noqa: E402
from gpt2.generation.sequence import Generated  # noqa: E402
from serverkit import NAME  # noqa: E402


@pytest.fixture
def through_the_scheduler(monkeypatch):
    """Counts the tokens every Scheduler hands out and the largest batch one of its steps ran."""
    seen = {"tokens": 0, "largest_batch": 0, "steps": 0}
    emit, run_step = Scheduler._emit, Scheduler.run_step

    def counting_emit(self, seq, event):
        if isinstance(event, Generated):
            seen["tokens"] += 1
        return emit(self, seq, event)

    def counting_step(self):
        out = run_step(self)
        seen["steps"] += 1
        seen["largest_batch"] = max(seen["largest_batch"], self.batch_size)
        return out

    monkeypatch.setattr(Scheduler, "_emit", counting_emit)
    monkeypatch.setattr(Scheduler, "run_step", counting_step)
    return seen


def test_generate_num_samples_8_runs_on_the_scheduler(through_the_scheduler, tmp_path, capsys):
    model = serverkit.save_model(tmp_path)
    argv = ["generate", "Hello", "--model", model, "--engine", "numpy", "--num-samples", "8"]
    code = main([*argv, "--max-new-tokens", "6", "--seed", "3", "--top-k", "0", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    samples = json.loads(out)["samples"]
    assert len(samples) == 8
    drawn = sum(len(s["ids"]) + (s["finish_reason"] == "stop") for s in samples)  # a stop id is drawn too
    assert through_the_scheduler["tokens"] == drawn > 0
    assert through_the_scheduler["largest_batch"] == 8  # the 8 rows decoded together


def test_8_concurrent_server_clients_run_on_the_scheduler(through_the_scheduler):
    with serverkit.serving() as url:
        api = serverkit.client(url)

        def complete(i):
            return api.completions.create(model=NAME, prompt=f"Client {i} says", max_tokens=6, seed=i)

        with ThreadPoolExecutor(8) as pool:
            responses = list(pool.map(complete, range(8)))
    assert through_the_scheduler["tokens"] == sum(r.usage.completion_tokens for r in responses) > 0
    assert through_the_scheduler["steps"] > 0
