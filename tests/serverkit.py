"""What the server tests share: a tiny random model with GPT-2's vocabulary, a server on
127.0.0.1 (a free port, in a thread, stopped at the end), the stock `openai` client, and raw
HTTP for what no well-behaved client sends."""

from __future__ import annotations

import http.client
import json
import socket
from contextlib import contextmanager
from functools import lru_cache
from urllib.parse import urlsplit

from gpt2.config import Config

CONFIG = Config(n_layer=2, n_embd=32, n_head=2, n_ctx=128)  # GPT-2's vocabulary, tiny otherwise
NAME = "tiny"
TIMEOUT = 60  # seconds any one client call may take: every request loop is bounded


@lru_cache(maxsize=1)
def params():
    from gpt2.params import init_params

    return init_params(CONFIG, seed=0)


def engine(name="numpy", **options):
    """float64 for the NumPy engine unless told otherwise: a batched product then agrees with a
    single-row one to ~1e-15, so greedy texts alone and in a batch are the same."""
    from gpt2.engines import load_engine

    if name == "numpy":
        options.setdefault("dtype", "float64")
    return load_engine(name, CONFIG, params(), **options)


def save_model(directory):
    from gpt2.weights import save_model as save

    save(directory, CONFIG, params())
    return str(directory)


@contextmanager
def serving(settings=None, model=None, *, holder=None, routers=(), static=None):
    """A live server over `model` (an engine; default the float64 NumPy one): yields its URL."""
    from gpt2.server import ModelHolder, ServerSettings
    from gpt2.server.app import create_app
    from gpt2.server.run import BackgroundServer
    from gpt2.tokenizer import Tokenizer

    settings = settings or ServerSettings()
    if holder is None:
        holder = ModelHolder(NAME)
        holder.attach(model or engine(), Tokenizer.gpt2(), settings=settings)
    app = create_app(holder, settings, routers=routers, static=static)
    with BackgroundServer(app) as server:
        yield server.url


def client(url, **options):
    import openai

    options.setdefault("api_key", "unused")
    options.setdefault("max_retries", 0)  # the tests see every answer, 429s included
    options.setdefault("timeout", TIMEOUT)
    return openai.OpenAI(base_url=url + "/v1", **options)


def request(url, method, path, body=b"", headers=None, *, chunked=False):
    """Raw HTTP: (status, headers, body bytes). `body` bytes go as they are; a dict goes as JSON."""
    if isinstance(body, dict):
        body = json.dumps(body).encode()
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=TIMEOUT)
    try:
        if chunked:
            conn.putrequest(method, path)
            for k, v in (headers or {}).items():
                conn.putheader(k, v)
            conn.putheader("Transfer-Encoding", "chunked")
            conn.endheaders()
            for start in range(0, len(body), 65536):
                piece = body[start : start + 65536]
                try:
                    conn.send(b"%x\r\n%s\r\n" % (len(piece), piece))
                except OSError:  # the server answered and closed before the whole body went
                    break
            else:
                conn.send(b"0\r\n\r\n")
        else:
            conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def post(url, path, body, headers=None):
    status, head, data = request(url, "POST", path, body, {"Content-Type": "application/json", **(headers or {})})
    return status, head, json.loads(data) if data else None


def sse_events(url, body, headers=None, *, stop_after=None):
    """POST a streaming completion and read its server-sent events: (status, [data strings]).
    `stop_after=k`: close the connection after k events (a client going away)."""
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=TIMEOUT)
    data = json.dumps(body).encode()
    head = [
        "POST /v1/completions HTTP/1.1",
        f"Host: {parts.hostname}",
        "Content-Type: application/json",
        f"Content-Length: {len(data)}",
        *[f"{k}: {v}" for k, v in (headers or {}).items()],
    ]
    sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + data)
    stream = sock.makefile("rb")
    try:
        status = int(stream.readline().split()[1])
        while stream.readline() not in (b"\r\n", b""):  # the headers
            pass
        events = []
        while stop_after is None or len(events) < stop_after:
            line = stream.readline()
            if not line:
                break
            line = line.strip()
            if line.startswith(b"data: "):  # chunked framing lines (sizes) are skipped
                events.append(line[6:].decode())
                if events[-1] == "[DONE]":
                    break
        return status, events
    finally:
        stream.close()
        sock.close()


class SlowEngine:
    """A batched engine that sleeps in every pass: long enough requests to disconnect from,
    to fill the queue with, or to run out of time on (no assertion depends on its speed)."""

    def __init__(self, inner, delay):
        self.inner, self.delay = inner, delay
        self.name, self.config = "slow", inner.config

    def __getattr__(self, name):  # the rest of the engine contract (notices, kv_bytes_per_position, ...)
        return getattr(self.inner, name)

    def new_cache(self):
        return self.inner.new_cache()

    def forward(self, ids, cache, *, all_logits=False):
        return self.inner.forward(ids, cache, all_logits=all_logits)

    def close(self):
        self.inner.close()

    def new_batch_cache(self, n):
        return self.inner.new_batch_cache(n)

    def forward_batch(self, rows, cache, *, all_logits=False):
        import time

        time.sleep(self.delay)
        return self.inner.forward_batch(rows, cache, all_logits=all_logits)
