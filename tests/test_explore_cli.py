"""`gpt2 explore`: it serves the page and the API on 127.0.0.1, stops on Ctrl-C, and says in one line
what is wrong when it cannot start."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

pytest.importorskip("numpy")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from gpt2.cli import main  # noqa: E402

STARTUP_S = 120  # bound on the server's start, on a loaded machine


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_help_lists_the_options(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["explore", "--help"])
    out, _ = capsys.readouterr()
    assert exc.value.code == 0
    for option in ("--model", "--engine", "--port", "--no-browser", "--allowed-host"):
        assert option in out


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--engine", "jax"], ["unknown engine 'jax'"]),
        (["--port", "70000"], ["--port", "65535"]),
        (["--engine", "pure", "--dtype", "float32"], ["--dtype"]),
        (["--allowed-host", "box.lan:8000"], ["allowed host", "box.lan:8000"]),
    ],
)
def test_mistakes_are_one_line(capsys, explore_model, argv, words):
    code, out, err = run(capsys, "explore", "--model", str(explore_model.directory), "--no-browser", *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("gpt2 explore: error: ")
    for word in words:
        assert word in err


def test_a_busy_port_is_a_clear_error(capsys, explore_model):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        code, _, err = run(
            capsys, "explore", "--model", str(explore_model.directory), "--port", str(port), "--no-browser"
        )
    assert code == 2 and f"cannot listen on 127.0.0.1:{port}" in err and err.count("\n") == 1


def test_it_serves_on_localhost_and_stops_on_ctrl_c(explore_model):
    process = subprocess.Popen(
        [sys.executable, "-m", "gpt2", "explore", "--model", str(explore_model.directory), "--engine", "numpy"]
        + ["--port", "0", "--no-browser"],
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        line = _read_line(process, STARTUP_S)
        assert "gpt2 explore:" in line and "numpy engine" in line, line
        url = line.split(" at ")[1].split()[0]
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url, timeout=30) as page:
            assert b"gpt2 explore" in page.read()
        request = urllib.request.Request(
            url + "api/trace", json.dumps({"text": "Hello world"}).encode(), {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            assert [t["id"] for t in json.loads(response.read())["tokens"]] == [15496, 995]
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0
        assert "stopped" in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
        process.stderr.close()
        process.stdout.close()


def _read_line(process: subprocess.Popen, timeout: float) -> str:
    """The first line the server writes to stderr, within `timeout` seconds."""
    import selectors

    selector = selectors.DefaultSelector()
    selector.register(process.stderr, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if selector.select(timeout=1.0):
            line = process.stderr.readline()
            if line.strip():
                return line
            if process.poll() is not None:
                break
    raise AssertionError(f"no line from gpt2 explore in {timeout} s (exit {process.poll()})")


def test_without_fastapi_it_says_what_to_install(blocked_imports, explore_model):
    code = (
        blocked_imports(("fastapi", "uvicorn"))
        + "import sys\nfrom gpt2.cli import main\n"
        + f"sys.exit(main(['explore', '--model', {str(explore_model.directory)!r}, '--no-browser']))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.count("\n") == 1 and "needs fastapi, uvicorn" in out.stderr and ".[serve]" in out.stderr
