"""Many clients at once, bounded in count and time: every response valid and complete, nothing
lost, greedy texts equal to `gpt2 generate`'s, a full queue answering 429 (never failing), and
the per-request time limit."""

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
openai = pytest.importorskip("openai")
pytest.importorskip("numpy")

import serverkit  # noqa: E402
from gpt2.generation import GenerationConfig, stream  # noqa: E402
from gpt2.server import ServerSettings  # noqa: E402
from gpt2.tokenizer import Tokenizer  # noqa: E402
from serverkit import NAME  # noqa: E402

TOK = Tokenizer.gpt2()
CLIENTS, REQUESTS_EACH = 32, 4
TOKENS, SEEDS = 8, 8  # tokens a request, distinct seeds among the sampled requests
WALL = 300  # seconds the whole load may take before the test fails (a hang, not a speed check)
PROMPTS = ["Once upon a time", "The meaning of life is", "Hello", "In 1905,", "A B C", "def f(x):", "¿Qué?", "🙂 ok"]


def expected(engine, prompt, max_tokens, **kw):
    kw.setdefault("top_k", 0)  # the server's default (OpenAI has no top-k); the library's is 40
    steps = list(stream(engine, TOK.encode(prompt), GenerationConfig(max_new_tokens=max_tokens, **kw), TOK))
    return "".join(s.text for s in steps), steps[-1].finish_reason


def test_32_clients_4_requests_each_all_complete_and_greedy_is_unchanged_by_company():
    engine = serverkit.engine()
    reference = {p: expected(engine, p, TOKENS, temperature=0) for p in PROMPTS}
    sampled = {s: expected(engine, "Hi", TOKENS, temperature=1.0, top_p=0.95, seed=s) for s in range(SEEDS)}
    results, failures = [], []
    lock = threading.Lock()

    def one_client(c):
        client = serverkit.client(url)
        for r in range(REQUESTS_EACH):
            prompt = PROMPTS[(c + r) % len(PROMPTS)]
            streaming = (c + r) % 2 == 0
            try:
                if r == 3:  # seeded sampling beside everything else
                    got = client.completions.create(
                        model=NAME, prompt="Hi", max_tokens=TOKENS, temperature=1.0, top_p=0.95, seed=c % SEEDS
                    )
                    outcome = ("sampled", c % SEEDS, got.choices[0].text, got.choices[0].finish_reason, got.usage)
                elif streaming:
                    text, finish = "", None
                    for chunk in client.completions.create(
                        model=NAME, prompt=prompt, max_tokens=TOKENS, temperature=0, stream=True
                    ):
                        text += chunk.choices[0].text
                        finish = chunk.choices[0].finish_reason or finish
                    outcome = ("greedy", prompt, text, finish, None)
                else:
                    got = client.completions.create(model=NAME, prompt=prompt, max_tokens=TOKENS, temperature=0)
                    outcome = ("greedy", prompt, got.choices[0].text, got.choices[0].finish_reason, got.usage)
            except Exception as exc:  # collected, so one failure does not hide the others
                with lock:
                    failures.append(repr(exc))
                continue
            with lock:
                results.append(outcome)

    with serverkit.serving(ServerSettings(max_batch=8, max_queue=64), model=engine) as url:
        with ThreadPoolExecutor(CLIENTS) as pool:
            futures = [pool.submit(one_client, c) for c in range(CLIENTS)]
            for f in futures:
                f.result(timeout=WALL)
        _, _, metrics = serverkit.request(url, "GET", "/metrics")
    assert failures == []
    assert len(results) == CLIENTS * REQUESTS_EACH  # nothing lost
    for kind, key, text, finish, usage in results:
        want_text, want_finish = reference[key] if kind == "greedy" else sampled[key]
        assert (text, finish) == (want_text, want_finish), (kind, key)
        if usage is not None:
            assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    samples = dict(line.rsplit(" ", 1) for line in metrics.decode().splitlines() if line and line[0] != "#")
    assert int(samples["gpt2_step_rows_total"]) > int(samples["gpt2_steps_total"])  # batches really formed


def test_greedy_text_equals_gpt2_generate(tmp_path, capsys):
    """The server and `gpt2 generate` over the same model directory (NumPy engine, float64)."""
    from gpt2.cli import main

    model_dir = serverkit.save_model(tmp_path / "model")
    outputs = {}
    for prompt in PROMPTS[:3]:
        code = main(
            ["generate", prompt, "--model", model_dir, "--engine", "numpy", "--dtype", "float64"]
            + ["--temperature", "0", "--max-new-tokens", "12", "--json"]
        )
        out, err = capsys.readouterr()
        assert code == 0, err
        outputs[prompt] = json.loads(out)["samples"][0]["text"]
    from gpt2.server.state import ModelHolder

    holder = ModelHolder(NAME)
    holder.load(model_dir, "numpy", {"dtype": "float64"})
    with serverkit.serving(holder=holder) as url:
        client = serverkit.client(url)
        with ThreadPoolExecutor(len(outputs)) as pool:  # all at once: they share batches
            texts = pool.map(
                lambda p: client.completions.create(model=NAME, prompt=p, max_tokens=12, temperature=0),
                list(outputs),
            )
            for prompt, got in zip(outputs, texts):
                assert got.choices[0].text == outputs[prompt]


def test_a_full_queue_answers_429_with_retry_after_and_never_fails():
    """One batch row, two queue places, a slow engine and 12 clients at once: the ones that find
    the queue full get 429 (RateLimitError, with Retry-After); every other answer is complete."""
    engine = serverkit.SlowEngine(serverkit.engine(), delay=0.05)
    settings = ServerSettings(max_batch=1, max_queue=2, max_choices=2)
    outcomes, lock = [], threading.Lock()
    together = threading.Barrier(12, timeout=WALL)  # the first requests leave at the same moment

    def one_client(_):
        client = serverkit.client(url)
        together.wait()
        for _ in range(2):
            try:
                got = client.completions.create(model=NAME, prompt="Hi", max_tokens=6, temperature=0)
                outcome = ("ok", got.choices[0].finish_reason, got.usage.completion_tokens)
            except openai.RateLimitError as exc:
                outcome = ("429", exc.response.headers.get("retry-after"), exc.body.get("code"))
            except Exception as exc:
                outcome = ("failed", repr(exc), None)
            with lock:
                outcomes.append(outcome)

    with serverkit.serving(settings, model=engine) as url:
        with ThreadPoolExecutor(12) as pool:
            for f in [pool.submit(one_client, c) for c in range(12)]:
                f.result(timeout=WALL)
    assert len(outcomes) == 24
    assert not [o for o in outcomes if o[0] == "failed"]
    limited = [o for o in outcomes if o[0] == "429"]
    served = [o for o in outcomes if o[0] == "ok"]
    assert limited and served
    assert all(int(retry) >= 1 and code == "rate_limit_exceeded" for _, retry, code in limited)
    assert all(finish in ("stop", "length") and tokens >= 1 for _, finish, tokens in served)


def test_the_time_limit_ends_a_long_completion():
    engine = serverkit.SlowEngine(serverkit.engine(), delay=0.1)  # 100 tokens: at least 10 s
    with serverkit.serving(ServerSettings(request_timeout=2.0), model=engine) as url:
        client = serverkit.client(url)
        got = client.completions.create(
            model=NAME, prompt="Hi", max_tokens=100, temperature=0, extra_body={"ignore_eos": True}
        )
        assert got.choices[0].finish_reason == "length"
        assert 0 < got.usage.completion_tokens < 100
        _, _, metrics = serverkit.request(url, "GET", "/metrics")
        assert "gpt2_sequences_timed_out_total 1" in metrics.decode()
