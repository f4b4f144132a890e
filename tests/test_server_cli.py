"""`gpt2 serve` as a user runs it: a subprocess on 127.0.0.1 (a free port), one log line per
request without the prompt's text unless asked, a clean stop, and one-line errors."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

import serverkit

SERVE = [sys.executable, "-m", "gpt2", "serve"]
START_LIMIT = 120  # seconds for the subprocess to say it serves


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    pytest.importorskip("numpy")
    return serverkit.save_model(tmp_path_factory.mktemp("served") / "tiny-model")


def run_serve(*args, env=None):
    return subprocess.run([*SERVE, *args], capture_output=True, text=True, timeout=START_LIMIT, env=env)


class Served:
    """`gpt2 serve ... --port 0` in a subprocess; the URL read from its log."""

    def __init__(self, *args, env=None):
        self.proc = subprocess.Popen([*SERVE, *args, "--port", "0"], stderr=subprocess.PIPE, text=True, env=env)
        self.lines = []
        self.url = None
        deadline = time.monotonic() + START_LIMIT
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            self.lines.append(line)
            found = re.search(r"serving \S+ \(\S+ engine\) at (http://\S+)", line)
            if found:
                self.url = found.group(1)
                return
        self.stop()
        raise AssertionError("gpt2 serve did not start:\n" + "".join(self.lines))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            _, rest = self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, rest = self.proc.communicate()
        self.lines.append(rest)
        return self.proc.returncode, "".join(self.lines)


@pytest.mark.parametrize("log_prompts", [False, True])
def test_serve_answers_logs_one_line_per_request_and_stops_cleanly(model_dir, log_prompts):
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    served = Served("--model", model_dir, *(["--log-prompts"] if log_prompts else []))
    try:
        assert served.url.startswith("http://127.0.0.1:")
        status, _, body = serverkit.request(served.url, "GET", "/health")
        assert status == 200 and json.loads(body) == {"status": "ok", "model": "tiny-model"}
        status, _, body = serverkit.post(
            served.url, "/v1/completions", {"model": "tiny-model", "prompt": "SECRET PROMPT", "max_tokens": 3}
        )
        assert status == 200 and body["usage"]["completion_tokens"] >= 1
        usage = body["usage"]
    finally:
        code, log = served.stop()
    assert code == 130, log  # interrupted, as every gpt2 command reports Ctrl-C
    lines = [line for line in log.splitlines() if "POST /v1/completions 200" in line]
    assert len(lines) == 1
    assert f"prompt_tokens={usage['prompt_tokens']} " in lines[0]
    assert f"completion_tokens={usage['completion_tokens']}" in lines[0]
    assert ("SECRET PROMPT" in log) == log_prompts
    assert "chat template: plain (default)" in log
    assert "Traceback" not in log


def test_a_model_that_cannot_be_loaded_is_one_line_and_exit_2(tmp_path):
    pytest.importorskip("fastapi")
    out = run_serve("--model", str(tmp_path / "missing"), "--port", "0")
    assert out.returncode == 2
    errors = [line for line in out.stderr.splitlines() if "error" in line.lower()]
    assert errors[-1].startswith("gpt2 serve: error: cannot serve") and "Traceback" not in out.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--max-batch", "0"], "max_batch must be an integer >= 1"),
        (["--port", "70000"], "port must be in [0, 65535]"),
        (["--max-queue", "4", "--max-choices", "8"], "max_queue (4) must be at least max_choices (8)"),
        (["--timeout", "0"], "request_timeout must be a number of seconds > 0"),
        (["--header-timeout", "0"], "header_timeout must be a number of seconds > 0, got 0.0"),
        (["--max-connections", "0"], "max_connections must be an integer >= 1, got 0"),
        (["--allowed-host", "http://box.lan"], "an allowed host is a name without scheme or port"),
        (["--prefill-chunk", "0"], "prefill_chunk must be an integer >= 1, got 0"),
        (["--prefill-chunk", "many"], "argument --prefill-chunk: invalid int value: 'many'"),
        (["--engine", "nope"], "unknown engine 'nope'"),
        (["--chat-template", "nope.jinja"], "--chat-template nope.jinja: no such file, and not a built-in template"),
    ],
)
def test_bad_settings_are_one_line_and_exit_2(args, message):
    out = run_serve(*args)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1] == f"gpt2 serve: error: {message}" or message in out.stderr
    assert "Traceback" not in out.stderr


def test_a_port_in_use_is_one_line_and_exit_2(model_dir):
    pytest.importorskip("fastapi")
    from gpt2.server.run import listen

    sock = listen("127.0.0.1", 0)
    try:
        port = sock.getsockname()[1]
        out = run_serve("--model", model_dir, "--port", str(port))
    finally:
        sock.close()
    assert out.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in out.stderr
    assert "Traceback" not in out.stderr


def test_without_fastapi_serve_says_how_to_install_it(blocked_imports):
    code = blocked_imports(("fastapi", "uvicorn")) + "import sys; from gpt2.cli import main; sys.exit(main(['serve']))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert out.stderr.strip() == 'gpt2 serve: error: gpt2 serve needs fastapi and uvicorn: pip install -e ".[serve]"'


def test_the_api_key_comes_from_the_environment(model_dir):
    pytest.importorskip("fastapi")
    served = Served("--model", model_dir, env={**os.environ, "GPT2_API_KEY": "from-env"})
    try:
        assert serverkit.request(served.url, "GET", "/v1/models")[0] == 401
        assert serverkit.request(served.url, "GET", "/v1/models", headers={"X-Api-Key": "from-env"})[0] == 200
        assert serverkit.request(served.url, "GET", "/health")[0] == 200
    finally:
        served.stop()


@pytest.mark.parametrize(
    "args, env, message",
    [
        (["--api-key", ""], {}, "--api-key is empty: give a key, or leave the option out to serve without one"),
        (["--api-key", "  "], {}, "--api-key is empty"),
        ([], {"GPT2_API_KEY": ""}, "GPT2_API_KEY is set but empty: set it to a key, or unset it to serve without one"),
    ],
)
def test_an_empty_api_key_is_refused_not_switched_off(model_dir, args, env, message):
    pytest.importorskip("fastapi")
    out = run_serve("--model", model_dir, "--port", "0", *args, env={**os.environ, **env})
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines() == [f"gpt2 serve: error: {message}"] or message in out.stderr


def test_a_bind_error_is_not_preceded_by_the_no_key_notice(model_dir):
    """192.0.2.1 (an address for documentation) is on no interface here: listening on it fails,
    and nothing may say it listens there without a key first."""
    pytest.importorskip("fastapi")
    out = run_serve("--model", model_dir, "--host", "192.0.2.1", "--port", "0")
    assert out.returncode == 2 and "cannot listen on 192.0.2.1:0" in out.stderr
    assert "without an API key" not in out.stderr and "Traceback" not in out.stderr


def test_the_connection_limits_come_from_the_command_line(model_dir):
    pytest.importorskip("fastapi")
    import socket
    from urllib.parse import urlsplit

    served = Served("--model", model_dir, "--header-timeout", "0.5", "--body-timeout", "0.5")
    try:
        parts = urlsplit(served.url)
        with socket.create_connection((parts.hostname, parts.port), timeout=60) as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the rest
            answer = b""
            while chunk := sock.recv(4096):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 408 ") and b"within 0.5 s" in answer
        assert serverkit.request(served.url, "GET", "/health")[0] == 200
    finally:
        served.stop()


def test_binding_beyond_this_machine_without_a_key_warns():
    from gpt2.server.settings import bind_warning, is_loopback

    assert bind_warning("0.0.0.0", None) and "without an API key" in bind_warning("0.0.0.0", None)
    assert bind_warning("192.168.1.5", None) and bind_warning("myhost.example", None)
    assert bind_warning("0.0.0.0", "key") is None
    for host in ("127.0.0.1", "127.1.2.3", "::1", "localhost"):
        assert is_loopback(host) and bind_warning(host, None) is None


@pytest.mark.parametrize(
    "flags, expected",
    [([], "numpy"), (["--engine", "torch"], "torch"), (["--device", "cpu"], "numpy")],
)
def test_serve_runs_the_engine_every_command_runs_unless_told(monkeypatch, flags, expected):
    """On a CPU the NumPy engine, as every command: it batched best when measured (docs/server.md;
    the server ran PyTorch by default before)."""
    pytest.importorskip("fastapi")
    pytest.importorskip("torch")
    pytest.importorskip("numpy")
    from gpt2.cli import main
    from gpt2.server import run as server_run

    seen = {}
    monkeypatch.setattr(server_run, "serve", lambda model, engine, settings, **kw: seen.update(engine=engine))
    assert main(["serve", "--model", "gpt2-shakespeare", *flags]) == 0
    assert seen["engine"] == expected
