"""The explorer's server against what a hostile page or client sends: bodies its parser chokes on,
echoes that would be huge, other names and other origins, and one slow request that must not hold
up the others. The server binds 127.0.0.1; every wait is bounded."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from urllib.parse import urlsplit

import pytest

pytest.importorskip("numpy")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("jsonschema")

import serverkit  # noqa: E402
from gpt2.config import Config  # noqa: E402
from gpt2.explore.app import create_app  # noqa: E402
from gpt2.explore.explorer import Explorer  # noqa: E402
from gpt2.explore.schema import validate  # noqa: E402
from gpt2.explore.work import Busy, Cancelled, WorkPool  # noqa: E402
from gpt2.params import init_params  # noqa: E402
from gpt2.server.run import BackgroundServer  # noqa: E402

CONFIG = Config(n_layer=1, n_embd=8, n_head=2, n_ctx=32)
WAIT = 60  # seconds any one wait may take at most


def make_explorer():
    return Explorer(CONFIG, init_params(CONFIG, seed=0), name="tiny", engine="numpy")


@pytest.fixture(scope="module")
def url():
    explorer = make_explorer()
    try:
        with BackgroundServer(create_app(explorer, allowed_hosts=("box.lan",))) as server:
            yield server.url
    finally:
        explorer.close()


def post(url, path, raw, headers=None):
    return serverkit.request(url, "POST", path, raw, {"Content-Type": "application/json", **(headers or {})})


def refused(answer, status):
    got, _, body = answer
    assert got == status, body
    data = json.loads(body)
    validate(data, "error")
    return data["error"]["message"]


@pytest.mark.parametrize(
    "path, raw, words",
    [
        ("/api/trace", b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        ("/api/trace", b'{"text": "Hi", "top": ' + b"9" * 5000 + b"}", "not valid JSON"),
        ("/api/compare", b'{"ids": [1], "top": NaN}', "not valid JSON"),
        ("/api/trace", b'{"text": "Hi", "\\ud800": 1}', "\\ud800"),
        ("/api/bpe", b'{"text": "a", "\\udc00": 1}', "\\udc00"),
    ],
)
def test_bodies_the_parser_chokes_on_are_a_400_and_the_connection_stays_open(url, path, raw, words):
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=WAIT) as sock:
        for _ in range(2):  # the same connection, twice: a 500 used to drop it
            head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            sock.sendall(head.encode() + b"Content-Length: %d\r\n\r\n" % len(raw) + raw)
            import http.client

            response = http.client.HTTPResponse(sock)
            response.begin()
            body = response.read()
            assert response.status == 400, body
            assert words in json.loads(body)["error"]["message"] and not response.will_close


def test_a_lone_surrogate_in_bpe_text_is_the_tokenizers_replacement_character(url):
    status, _, body = post(url, "/api/bpe", b'{"text": "a\\ud800"}')
    assert status == 200, body
    answer = json.loads(body)
    validate(answer, "bpe")
    assert answer["text"] == "a\ufffd"


def test_an_error_repeats_a_huge_request_only_in_part(url):
    text = "ab " * 300_000  # 900 KB of a text that is many tokens, not one
    message = refused(post(url, "/api/embeddings/neighbours", json.dumps({"text": text}).encode()), 400)
    assert len(message) <= 500 and "cut" in message


def test_other_names_and_other_origins_are_refused_and_the_pages_own_requests_served(url):
    port = urlsplit(url).port
    trace = json.dumps({"text": "Hi"}).encode()
    assert "rebinding" in refused(post(url, "/api/trace", trace, {"Host": f"evil.example:{port}"}), 421)
    assert refused(serverkit.request(url, "GET", "/api/info", headers={"Host": "evil.example"}), 421)
    refused(post(url, "/api/trace", trace, {"Origin": "http://evil.example"}), 403)
    refused(post(url, "/api/trace", trace, {"Content-Type": "text/plain", "Origin": "http://evil.example"}), 403)
    refused(post(url, "/api/trace", trace, {"Sec-Fetch-Site": "cross-site"}), 403)
    for headers in (
        {"Origin": url, "Sec-Fetch-Site": "same-origin"},  # what the page sends
        {"Host": f"localhost:{port}", "Origin": f"http://localhost:{port}"},
        {"Host": f"box.lan:{port}", "Origin": f"http://box.lan:{port}"},  # --allowed-host box.lan
        {},  # a program
    ):
        status, _, body = post(url, "/api/trace", trace, headers)
        assert status == 200, (headers, body)


def test_a_slow_request_does_not_hold_up_the_others():
    """A comparison that is stuck on the pure engine (a stub that waits for the test) while
    /api/info, /api/bpe, a trace on the default engine and /v1/completions are answered."""
    explorer = make_explorer()
    started, release = threading.Event(), threading.Event()

    def slow_compare(request):
        def work(engine):
            started.set()
            release.wait(WAIT)
            return {"tokens": []}

        return explorer.run_on_engine("pure", work)

    explorer.compare = slow_compare  # before the router is made: it takes the method then
    answers = []
    try:
        with BackgroundServer(create_app(explorer)) as server:
            url = server.url
            slow = threading.Thread(
                target=lambda: answers.append(post(url, "/api/compare", b'{"text": "Hi", "engines": ["pure"]}'))
            )
            slow.start()
            try:
                assert started.wait(WAIT)
                assert serverkit.request(url, "GET", "/api/info")[0] == 200
                assert post(url, "/api/bpe", b'{"text": "unbelievable"}')[0] == 200
                assert post(url, "/api/trace", b'{"text": "Hi"}')[0] == 200
                completion = json.dumps({"model": "tiny", "prompt": "Hi", "max_tokens": 2}).encode()
                assert post(url, "/v1/completions", completion)[0] == 200
                assert not answers  # still stuck
            finally:
                release.set()
                slow.join(WAIT)
        assert answers and answers[0][0] == 200
    finally:
        explorer.close()


def answer_key(path, answer):
    """What must not depend on other requests running at once (not the timings)."""
    if path == "/api/next":
        return json.dumps(answer, sort_keys=True)
    return json.dumps({k: answer[k] for k in ("engine", "tokens", "attention", "logit_lens", "next_token")})


def test_requests_from_several_threads_get_the_answers_they_get_alone():
    """Traces on the default engine (the scheduler's thread) and on the pure engine (its own lock),
    and next-token answers, from 4 client threads at once: each equals the same request alone."""
    explorer = make_explorer()
    requests = [
        ("/api/trace", {"text": text, **engine})
        for text in ("Hello world", "It was the best of times", "a b c")
        for engine in ({}, {"engine": "pure"})
    ] + [("/api/next", {"text": "Hello", "temperature": 0.7})]
    try:
        with BackgroundServer(create_app(explorer)) as server:

            def ask(path, body):
                status, _, raw = post(server.url, path, json.dumps(body).encode())
                assert status == 200, raw
                return answer_key(path, json.loads(raw))

            alone = [ask(path, body) for path, body in requests]
            results, errors = [], []

            def client(offset):
                try:
                    for i in range(3 * len(requests)):  # bounded
                        k = (i + offset) % len(requests)
                        results.append((k, ask(*requests[k])))
                except Exception as exc:  # reported below, with the others
                    errors.append(exc)

            threads = [threading.Thread(target=client, args=(t,)) for t in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(WAIT * 5)
        assert not errors, errors
        assert len(results) == 4 * 3 * len(requests)
        assert all(got == alone[k] for k, got in results)
    finally:
        explorer.close()


def test_the_work_pool_refuses_beyond_its_places_and_drops_work_whose_client_went():
    async def scenario():
        pool = WorkPool(workers=1, waiting=1)
        running, release = threading.Event(), threading.Event()
        ran = []

        def blocking():
            running.set()
            release.wait(WAIT)
            return "first"

        first = asyncio.ensure_future(pool.run(blocking))
        await asyncio.get_running_loop().run_in_executor(None, running.wait, WAIT)
        client_left = asyncio.Event()
        second = asyncio.ensure_future(pool.run(lambda: ran.append("second"), client_left.wait))
        await asyncio.sleep(0)
        with pytest.raises(Busy):
            await pool.run(lambda: ran.append("third"))
        client_left.set()  # the second's client goes while it waits for the worker
        with pytest.raises(Cancelled):
            await second
        release.set()
        assert await first == "first"
        for _ in range(WAIT * 100):  # the abandoned job leaves the pool (bounded wait)
            if pool.pending == 0:
                break
            await asyncio.sleep(0.01)
        assert pool.pending == 0 and ran == []  # it never ran
        assert await pool.run(lambda: "again") == "again"

    asyncio.run(scenario())
