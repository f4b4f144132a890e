"""What no well-behaved client sends, over raw HTTP: malformed JSON, wrong types, bad UTF-8,
oversized bodies, unknown routes. Every answer is OpenAI's error object with the right
status, never a traceback; and a client that goes away frees its place."""

import json
import time

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("numpy")

import serverkit  # noqa: E402
from gpt2.server import ServerSettings  # noqa: E402
from serverkit import NAME  # noqa: E402

LIMIT = 16384  # the body limit of the server under test


@pytest.fixture(scope="module")
def url():
    with serverkit.serving(ServerSettings(max_body_bytes=LIMIT)) as url:
        yield url


def error_of(status, body, expected_status):
    assert status == expected_status, body
    data = json.loads(body)
    assert set(data) == {"error"} and set(data["error"]) == {"message", "type", "param", "code"}
    assert b"Traceback" not in body and data["error"]["message"]
    return data["error"]


def completion(url, raw, headers=None):
    status, _, body = serverkit.request(
        url, "POST", "/v1/completions", raw, {"Content-Type": "application/json", **(headers or {})}
    )
    return status, body


@pytest.mark.parametrize(
    "raw",
    [
        b"{",
        b'{"model": "tiny", "prompt": "Hi",}',
        b"model=tiny&prompt=Hi",
        b"",
        b"   ",
        b'{"model": "tiny", "prompt": "Hi"} trailing',
        b'{"model": "tiny", "prompt": "Hi", "temperature": NaN}',
        b'{"model": "tiny", "prompt": "Hi", "temperature": Infinity}',
        b'{"model": "tiny", "prompt": "Hi", "temperature": 1e999}',
        b'{"model": "tiny", "prompt": "Hi", "max_tokens": ' + b"9" * 5000 + b"}",
        b"[" * 2000 + b"]" * 2000,
        b'"just a string"',
        b"[1, 2, 3]",
        b"null",
    ],
    ids=lambda raw: raw[:24].decode("ascii", "replace"),
)
def test_a_body_that_is_not_a_json_object_is_a_400(url, raw):
    error = error_of(*completion(url, raw), 400)
    assert error["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    "raw",
    [
        b'{"model": "tiny", "prompt": "caf\xe9"}',  # Latin-1, not UTF-8
        b'{"model": "tiny", "prompt": "\xff\xfe"}',
        b'\xef\xbb\xbf{"model": "tiny"}\xc3',
    ],
)
def test_a_body_that_is_not_utf8_is_a_400(url, raw):
    error = error_of(*completion(url, raw), 400)
    assert "UTF-8" in error["message"] or "JSON" in error["message"]


@pytest.mark.parametrize(
    "fields, param",
    [
        ({"temperature": "hot"}, "temperature"),
        ({"temperature": True}, "temperature"),
        ({"max_tokens": 1.5}, "max_tokens"),
        ({"max_tokens": "16"}, "max_tokens"),
        ({"max_tokens": -1}, "max_tokens"),
        ({"n": True}, "n"),
        ({"stream": "yes"}, "stream"),
        ({"echo": 1}, "echo"),
        ({"prompt": [1, "a"]}, "prompt"),
        ({"prompt": [[1], "a"]}, "prompt"),
        ({"prompt": []}, "prompt"),
        ({"prompt": {"text": "Hi"}}, "prompt"),
        ({"prompt": [-1]}, "prompt"),
        ({"stop": 5}, "stop"),
        ({"stop": [""]}, "stop"),
        ({"stop": "x" * 300}, "stop"),
        ({"logprobs": "5"}, "logprobs"),
        ({"seed": 2**70}, "seed"),
        ({"seed": "1"}, "seed"),
        ({"user": 5}, "user"),
        ({"logit_bias": [1, 2]}, "logit_bias"),
        ({"logit_bias": {"1": "a"}}, "logit_bias"),
        ({"stream": True, "stream_options": {"include_usage": "yes"}}, "include_usage"),
        ({"stream": True, "stream_options": {"other": 1}}, "stream_options"),
        ({"model": 5}, "model"),
        ({"model": None}, "model"),
        ({"top_k": -2}, "top_k"),
        ({"frobnicate": 1}, "frobnicate"),
    ],
)
def test_a_field_of_the_wrong_type_or_range_is_a_400_naming_it(url, fields, param):
    body = {"model": NAME, "prompt": "Hi", **fields}
    error = error_of(*completion(url, json.dumps(body).encode()), 400)
    assert error["param"] == param


def test_lone_surrogates_in_a_prompt_are_text_not_a_crash(url):
    raw = b'{"model": "tiny", "prompt": "a\\ud800b", "max_tokens": 2}'
    status, body = completion(url, raw)
    assert status == 200 and json.loads(body)["choices"][0]["finish_reason"] in ("stop", "length")


def test_a_body_over_the_limit_is_a_413(url):
    big = json.dumps({"model": NAME, "prompt": "x" * (2 * LIMIT)}).encode()
    error = error_of(*completion(url, big), 413)
    assert error["code"] == "request_too_large"


def test_a_chunked_body_over_the_limit_is_a_413(url):
    big = json.dumps({"model": NAME, "prompt": "x" * (4 * LIMIT)}).encode()
    status, _, body = serverkit.request(
        url, "POST", "/v1/completions", big, {"Content-Type": "application/json"}, chunked=True
    )
    error_of(status, body, 413)


def test_a_chunked_body_under_the_limit_is_served(url):
    small = json.dumps({"model": NAME, "prompt": "Hi", "max_tokens": 2}).encode()
    status, _, body = serverkit.request(
        url, "POST", "/v1/completions", small, {"Content-Type": "application/json"}, chunked=True
    )
    assert status == 200 and len(json.loads(body)["choices"]) == 1


@pytest.mark.parametrize(
    "method, path, status",
    [
        ("GET", "/", 404),
        ("GET", "/v2/completions", 404),
        ("POST", "/v1/engines/davinci/completions", 404),
        ("GET", "/v1/completions", 405),
        ("DELETE", "/v1/models", 405),
        ("GET", "/docs", 404),
        ("GET", "/openapi.json", 404),
        ("POST", "/v1/chat/completions", 400),  # served (tests/test_server_chat.py): {} has no messages
        ("GET", "/v1/chat/completions", 405),
        ("GET", "/../../etc/passwd", 404),
    ],
)
def test_unknown_routes_and_methods_answer_in_openais_format(url, method, path, status):
    got, _, body = serverkit.request(url, method, path, b"{}" if method == "POST" else b"")
    error_of(got, body, status)


def test_tokenize_refuses_what_is_not_text(url):
    for body, param in (
        ({"content": 5}, "content"),
        ({"text": "x"}, "text"),
        ({"content": "x", "with_pieces": 1}, "with_pieces"),
    ):
        status, _, data = serverkit.post(url, "/tokenize", body)
        assert status == 400 and data["error"]["param"] == param
    status, _, data = serverkit.post(url, "/detokenize", {"tokens": "15496"})
    assert status == 400 and data["error"]["param"] == "tokens"


def test_a_client_that_goes_away_frees_its_place():
    """A stream on a slow engine: the client reads two events and closes the connection. The
    sequence is dropped at the scheduler's next step (it would otherwise run for minutes)."""
    engine = serverkit.SlowEngine(serverkit.engine(), delay=0.05)
    with serverkit.serving(model=engine) as url:
        body = {"model": NAME, "prompt": "Hi", "max_tokens": 120, "stream": True, "extra": None}
        body.pop("extra")
        status, events = serverkit.sse_events(url, {**body, "temperature": 0}, stop_after=2)
        assert status == 200 and len(events) == 2
        samples = {}
        for _ in range(200):  # bounded: at most ~10 s
            _, _, text = serverkit.request(url, "GET", "/metrics")
            samples = dict(line.rsplit(" ", 1) for line in text.decode().splitlines() if line and line[0] != "#")
            if samples["gpt2_sequences_cancelled_total"] == "1":
                break
            time.sleep(0.05)
        assert samples["gpt2_sequences_cancelled_total"] == "1"
        assert samples["gpt2_batch_size"] == "0"
        assert int(samples["gpt2_generation_tokens_total"]) < 120


def test_a_plain_request_abandoned_by_its_client_frees_its_place():
    import socket
    from urllib.parse import urlsplit

    engine = serverkit.SlowEngine(serverkit.engine(), delay=0.05)
    with serverkit.serving(model=engine) as url:
        parts = urlsplit(url)
        data = json.dumps({"model": NAME, "prompt": "Hi", "max_tokens": 120, "temperature": 0}).encode()
        with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
            sock.sendall(
                b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                + b"Content-Length: %d\r\n\r\n" % len(data)
                + data
            )
            time.sleep(0.3)  # it is running now; then the client goes away without reading
        samples = {}
        for _ in range(200):  # bounded: at most ~10 s
            _, _, text = serverkit.request(url, "GET", "/metrics")
            samples = dict(line.rsplit(" ", 1) for line in text.decode().splitlines() if line and line[0] != "#")
            if samples["gpt2_sequences_cancelled_total"] == "1":
                break
            time.sleep(0.05)
        assert samples["gpt2_sequences_cancelled_total"] == "1" and samples["gpt2_batch_size"] == "0"
