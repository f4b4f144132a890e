"""What a hostile neighbour or web page does to a local server: connections that never finish
their request (slowloris), requests by another name (DNS rebinding) or from another site's page,
and bodies whose echo cannot be encoded or is huge. Every server here binds 127.0.0.1; every wait
is bounded."""

import http.client
import json
import selectors
import socket
import time
from urllib.parse import urlsplit

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("numpy")

import serverkit  # noqa: E402
from gpt2.server import ServerSettings  # noqa: E402
from gpt2.server.errors import ServerError  # noqa: E402
from serverkit import NAME  # noqa: E402

WAIT = 60  # seconds any one wait may take at most (the server's own limits are far shorter)
PARTIAL_HEAD = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "  # never finished


def address(url):
    parts = urlsplit(url)
    return parts.hostname, parts.port


def slow_connection(url, data=PARTIAL_HEAD):
    sock = socket.create_connection(address(url), timeout=WAIT)
    sock.sendall(data)
    return sock


def read_until_closed(sock):
    """Everything the server sends until it closes the connection (socket.timeout: it did not)."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def closed_count(socks, wanted):
    """How many of `socks` the server closes, waiting (at most WAIT s) until `wanted` are."""
    selector = selectors.DefaultSelector()
    for sock in socks:
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
    closed = 0
    deadline = time.monotonic() + WAIT
    while closed < wanted and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=1):
            try:
                data = key.fileobj.recv(65536)
            except ConnectionResetError:
                data = b""
            if not data:
                selector.unregister(key.fileobj)
                closed += 1
    selector.close()
    return closed


def error_of(status, body, expected):
    assert status == expected, body
    data = json.loads(body)
    assert set(data) == {"error"} and set(data["error"]) == {"message", "type", "param", "code"}
    return data["error"]


# --- slowloris -------------------------------------------------------------------------------


def test_a_request_head_or_body_that_never_arrives_is_answered_408_and_closed():
    settings = ServerSettings(header_timeout=0.5, body_timeout=0.5)
    with serverkit.serving(settings) as url:
        heads = [slow_connection(url) for _ in range(5)]
        silent = slow_connection(url, b"")  # connects, sends nothing
        body = slow_connection(
            url,
            b"POST /tokenize HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"content": ',
        )
        try:
            for sock in [*heads, silent]:
                answer = read_until_closed(sock)
                assert answer.startswith(b"HTTP/1.1 408 ") and b"did not arrive within 0.5 s" in answer
            answer = read_until_closed(body)
            assert answer.startswith(b"HTTP/1.1 408 ") and b"request body did not arrive" in answer
            assert serverkit.request(url, "GET", "/health")[0] == 200
        finally:
            for sock in [*heads, silent, body]:
                sock.close()


def test_slow_connections_beyond_the_limit_make_room_for_new_clients():
    """40 connections that never finish their head, on a server that keeps 8 open: each new one
    closes the one that has waited longest, so /health answers and 32 + 1 are closed long
    before their (10 minute) head timeout."""
    settings = ServerSettings(header_timeout=600, max_connections=8)
    with serverkit.serving(settings) as url:
        socks = [slow_connection(url) for _ in range(40)]
        try:
            assert serverkit.request(url, "GET", "/health")[0] == 200
            assert closed_count(socks, 33) == 33
        finally:
            for sock in socks:
                sock.close()


def test_health_answers_while_many_slow_connections_are_open_and_they_close_by_default():
    with serverkit.serving() as url:  # the defaults: 10 s for a head, 256 connections
        socks = [slow_connection(url) for _ in range(120)]
        try:
            for _ in range(3):
                assert serverkit.request(url, "GET", "/health")[0] == 200
            assert closed_count(socks, len(socks)) == len(socks)
        finally:
            for sock in socks:
                sock.close()


@pytest.mark.parametrize(
    "changes",
    [{"header_timeout": 0}, {"body_timeout": float("inf")}, {"max_connections": 0}, {"allowed_hosts": ("a:80",)}],
)
def test_connection_settings_are_checked(changes):
    with pytest.raises(ServerError):
        ServerSettings(**changes)


# --- Host and Origin -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def url():
    with serverkit.serving(ServerSettings(allowed_hosts=("box.lan", ".corp.example"))) as url:
        yield url


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8000", "127.0.0.1.evil.example", "corp.example.com"])
def test_a_request_by_another_name_is_refused_421(url, host):
    for method, path in (("GET", "/health"), ("GET", "/v1/models")):
        status, _, body = serverkit.request(url, method, path, headers={"Host": host})
        assert error_of(status, body, 421)["code"] == "host_not_allowed"


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "127.0.0.1:{port}", "localhost:{port}", "LOCALHOST", "[::1]:{port}", "box.lan", "a.corp.example"],
)
def test_this_machines_names_the_bound_host_and_allowed_names_are_answered(url, host):
    host = host.format(port=address(url)[1])
    assert serverkit.request(url, "GET", "/health", headers={"Host": host})[0] == 200


def completion_from(url, headers, content_type="application/json"):
    body = json.dumps({"model": NAME, "prompt": "Hi", "max_tokens": 1}).encode()
    return serverkit.request(url, "POST", "/v1/completions", body, {"Content-Type": content_type, **headers})


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Origin": "http://127.0.0.1:1"},  # another port is another origin
        {"Origin": "https://127.0.0.1:{port}"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
    ],
)
@pytest.mark.parametrize("content_type", ["application/json", "text/plain"])
def test_a_write_from_another_origin_is_refused_403(url, headers, content_type):
    headers = {k: v.format(port=address(url)[1]) for k, v in headers.items()}
    status, _, body = completion_from(url, headers, content_type)
    assert error_of(status, body, 403)["code"] == "cross_origin_request"


def test_writes_from_the_servers_own_origin_and_from_programs_are_served(url):
    port = address(url)[1]
    for headers in ({}, {"Origin": f"http://127.0.0.1:{port}"}, {"Sec-Fetch-Site": "same-origin"}):
        status, _, body = completion_from(url, headers)
        assert status == 200, body
    status, _, body = completion_from(url, {"Host": f"localhost:{port}", "Origin": f"http://localhost:{port}"})
    assert status == 200, body


def test_reads_from_another_origin_are_answered_without_cors_headers(url):
    status, headers, _ = serverkit.request(url, "GET", "/v1/models", headers={"Origin": "http://evil.example"})
    assert status == 200 and not any(k.lower().startswith("access-control-") for k in headers)


# --- bodies that broke the error path --------------------------------------------------------


def exchange(sock, method, path, body=b""):
    """One request on an open connection and its answer: (status, body, will_close)."""
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    sock.sendall(head.encode() + b"Content-Length: %d\r\n\r\n" % len(body) + body)
    response = http.client.HTTPResponse(sock)
    response.begin()
    return response.status, response.read(), response.will_close


@pytest.mark.parametrize(
    "path, raw, status",
    [
        ("/v1/completions", b'{"model": "\\ud800", "prompt": "Hi"}', 404),
        ("/v1/completions", b'{"model": "tiny", "prompt": "Hi", "\\ud800": 1}', 400),
        ("/tokenize", b'{"content": "Hi", "\\udfff": 1}', 400),
        ("/detokenize", b'{"tokens": [1], "\\ud800x": 1}', 400),
    ],
)
def test_a_lone_surrogate_in_a_name_is_a_4xx_and_the_connection_stays_open(url, path, raw, status):
    with socket.create_connection(address(url), timeout=WAIT) as sock:
        got, body, will_close = exchange(sock, "POST", path, raw)
        error = error_of(got, body, status)
        assert "\\ud" in error["message"] or "\\ud" in (error["param"] or "")
        assert not will_close
        assert exchange(sock, "GET", "/health")[0] == 200  # the same connection


def test_an_error_repeats_a_huge_request_only_in_part(url):
    name = "k" * 200_000  # an unknown field: its name is repeated in the message and as `param`
    status, _, body = serverkit.request(
        url, "POST", "/v1/completions", {"model": NAME, "prompt": "Hi", name: 1}, {"Content-Type": "application/json"}
    )
    error = error_of(status, body, 400)
    assert len(body) < 2000 and "cut" in error["message"]
    status, _, body = serverkit.request(url, "GET", "/" + "x" * 8000)
    assert error_of(status, body, 404) and len(body) < 2000
