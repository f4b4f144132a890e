"""The hub cache never keeps a bad file: downloads from a local server (127.0.0.1) that
misbehaves on purpose. Every server here answers a bounded number of bytes and every
client runs with short timeouts and a deadline, so no test can hang.

The well-behaved answers copy the Hugging Face hub: `config.json` served directly; a
large file redirected (302) to storage, the redirect carrying X-Repo-Commit and, as
the hub does for Git LFS files, X-Linked-Etag (the sha256) and X-Linked-Size; the
storage itself sends neither (as Xet-backed storage does not)."""

from __future__ import annotations

import hashlib
import http.server
import json
import re
import shutil
import threading
import time

import pytest

from gpt2.cli import main
from gpt2.config import Config
from gpt2.params import init_params
from gpt2.weights import DownloadError, HubSettings, ModelNotFound, SafetensorsError, load_model
from gpt2.weights.hub import cached_snapshot, check_repo_id, check_revision, download_model
from gpt2.weights.safetensors import encode_header

REPO = "openai-community/gpt2"
COMMIT = "89abcdef0123456789abcdef0123456789abcdef"
CONFIG = Config(n_layer=1, n_embd=8, n_head=2, vocab_size=16, n_ctx=4)
HTML = b"<!DOCTYPE html><html><body>Please log in to the hotel Wi-Fi</body></html>"


def weights_bytes() -> bytes:
    params = init_params(CONFIG, seed=5)
    return encode_header(params, {"format": "pt"}) + b"".join(bytes(t.data) for t in params.values())


class Hub:
    """`behave[name]`: a function (handler, data, range start) that answers the storage's
    request for `name` instead of the well-behaved answer; `linked=False` leaves the
    sha256 and size out of the redirect (a mirror that does not send them)."""

    def __init__(self) -> None:
        self.files = {"config.json": json.dumps(CONFIG.to_hf_dict()).encode(), "model.safetensors": weights_bytes()}
        self.behave: dict = {}
        self.linked = True
        self.linked_sha = None  # override the sha256 the redirect announces
        self.requests: list[tuple[str, str | None]] = []

    def handler(hub):  # noqa: N805 - the request handler, closing over the hub
        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                hub.requests.append((self.path, self.headers.get("Range")))
                m = re.fullmatch(r"/(.+)/resolve/([^/]+)/([^/]+)", self.path)
                if m and m.group(3) in hub.files:
                    name = m.group(3)
                    data = hub.files[name]
                    if name.endswith(".safetensors"):
                        self.send_response(302)
                        self.send_header("Location", f"/storage/{name}")
                        self.send_header("X-Repo-Commit", COMMIT)
                        if hub.linked:
                            self.send_header("X-Linked-Etag", f'"{hub.linked_sha or hashlib.sha256(data).hexdigest()}"')
                            self.send_header("X-Linked-Size", str(len(data)))
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    return self.answer(name, data)
                m = re.fullmatch(r"/storage/([^/]+)", self.path)
                if m and m.group(1) in hub.files:
                    return self.answer(m.group(1), hub.files[m.group(1)])
                self.send_error(404)

            def answer(self, name, data):
                rng = self.headers.get("Range")
                start = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1)) if rng else 0
                if name in hub.behave:
                    return hub.behave[name](self, data, start)
                if start:
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data) - start))
                self.send_header("X-Repo-Commit", COMMIT)
                self.end_headers()
                self.wfile.write(data[start:])

        return Handler


@pytest.fixture
def hub():
    fake = Hub()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), fake.handler())
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    fake.endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    yield fake
    server.shutdown()
    server.server_close()


def settings_for(hub, tmp_path, **kw):
    kw = {"attempts": 3, "timeout_s": 5.0, "deadline_s": 20.0, **kw}
    return HubSettings(endpoint=hub.endpoint, cache_dir=tmp_path / "hub", **kw)


def snapshot(tmp_path):
    return tmp_path / "hub" / "models--openai-community--gpt2" / "snapshots" / COMMIT


def cached_files(tmp_path):
    """Every file under the cache that is not an `.incomplete` part."""
    root = tmp_path / "hub"
    return sorted(p.name for p in root.rglob("*") if p.is_file() and not p.name.endswith(".incomplete"))


def assert_nothing_cached(hub, tmp_path):
    assert cached_snapshot(settings_for(hub, tmp_path), REPO) is None
    assert "model.safetensors" not in cached_files(tmp_path)


def assert_healthy_hub_heals_it(hub, tmp_path):
    """Once the hub behaves, the same cache gives the right model (nothing poisoned it)."""
    hub.behave.clear()
    config, params = load_model("gpt2", hub=settings_for(hub, tmp_path))
    assert config == CONFIG
    assert (snapshot(tmp_path) / "model.safetensors").read_bytes() == hub.files["model.safetensors"]


# --- misbehaving answers --------------------------------------------------------------------


def cut_without_length(handler, data, start):
    """No Content-Length, half the bytes, then the connection closes: looks like a whole file."""
    handler.send_response(200)
    handler.end_headers()
    handler.wfile.write(data[start:][: len(data) // 2])


@pytest.mark.parametrize("linked", [True, False], ids=["hub-headers", "bare-mirror"])
def test_a_cut_download_without_a_length_is_never_cached(hub, tmp_path, linked):
    hub.linked = linked  # without X-Linked-*, only the safetensors parse can tell it is cut
    hub.behave["model.safetensors"] = cut_without_length
    with pytest.raises(DownloadError, match="nothing was saved") as info:
        load_model("gpt2", hub=settings_for(hub, tmp_path))
    assert ("hub says the file has" if linked else "damaged or incomplete") in str(info.value)
    assert_nothing_cached(hub, tmp_path)
    assert_healthy_hub_heals_it(hub, tmp_path)


def test_a_cut_config_without_a_length_is_never_cached(hub, tmp_path):
    hub.behave["config.json"] = cut_without_length
    with pytest.raises(DownloadError, match="config.json is not valid JSON"):
        load_model("gpt2", hub=settings_for(hub, tmp_path))
    assert cached_files(tmp_path) == []
    assert_healthy_hub_heals_it(hub, tmp_path)


def html_page(content_type):
    def answer(handler, data, start):
        handler.send_response(200)
        if content_type:
            handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(HTML)))
        handler.end_headers()
        handler.wfile.write(HTML)

    return answer


@pytest.mark.parametrize("name", ["config.json", "model.safetensors"])
def test_a_captive_portal_page_is_refused_at_once(hub, tmp_path, name):
    hub.linked = False
    hub.behave[name] = html_page("text/html; charset=utf-8")
    with pytest.raises(DownloadError, match="HTML page") as info:
        load_model("gpt2", hub=settings_for(hub, tmp_path))
    assert "nothing was saved" in str(info.value)
    # Not retried, a portal stays a portal: one request (the weights: the redirect, then storage).
    assert sum(path.endswith(name) for path, _ in hub.requests) == (2 if name.endswith(".safetensors") else 1)
    assert_nothing_cached(hub, tmp_path)
    assert_healthy_hub_heals_it(hub, tmp_path)


def test_an_html_page_without_its_content_type_fails_the_format_check(hub, tmp_path):
    hub.linked = False
    hub.behave["model.safetensors"] = html_page(None)
    with pytest.raises(DownloadError, match="damaged or incomplete"):
        load_model("gpt2", hub=settings_for(hub, tmp_path))
    assert_nothing_cached(hub, tmp_path)


def wrong_range(offset_of):
    """A 206 that ignores where the client asked to start (a proxy's idea of a range)."""

    def answer(handler, data, start):
        begin = offset_of(start)
        handler.send_response(206 if start else 200)
        if start:
            handler.send_header("Content-Range", f"bytes {begin}-{len(data) - 1}/{len(data)}")
        handler.send_header("Content-Length", str(len(data) - begin))
        handler.end_headers()
        handler.wfile.write(data[begin:])

    return answer


@pytest.mark.parametrize("offset_of", [lambda start: 0, lambda start: start // 2], ids=["from-0", "elsewhere"])
def test_a_206_from_the_wrong_byte_is_never_appended(hub, tmp_path, offset_of):
    data = hub.files["model.safetensors"]
    snapshot(tmp_path).mkdir(parents=True)
    (snapshot(tmp_path) / "model.safetensors.incomplete").write_bytes(data[:300])
    # The commit is known from an earlier run, so the part is resumed.
    (tmp_path / "hub" / "models--openai-community--gpt2" / "refs").mkdir()
    (tmp_path / "hub" / "models--openai-community--gpt2" / "refs" / "main").write_text(COMMIT)
    hub.linked = False  # no sha256 to catch it afterwards: the Content-Range check must
    hub.behave["model.safetensors"] = wrong_range(offset_of)
    _, params = load_model("gpt2", hub=settings_for(hub, tmp_path))
    assert (snapshot(tmp_path) / "model.safetensors").read_bytes() == data
    assert ("/storage/model.safetensors", "bytes=300-") in hub.requests


def trickle(handler, data, start):
    """Announces the whole file, then sends a byte every 50 ms (at most 200 bytes: 10 s)."""
    handler.send_response(200)
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    for byte in data[:200]:
        try:
            handler.wfile.write(bytes([byte]))
            handler.wfile.flush()
        except OSError:
            return  # the client gave up
        time.sleep(0.05)


def test_a_trickling_server_meets_the_deadline(hub, tmp_path):
    hub.behave["model.safetensors"] = trickle
    settings = settings_for(hub, tmp_path, deadline_s=0.6, timeout_s=2.0)
    with pytest.raises(DownloadError) as info:
        load_model("gpt2", hub=settings)
    message = str(info.value)
    assert "0.6 s deadline" in message and "GPT2_DOWNLOAD_DEADLINE" in message
    assert "the next run resumes them" in message  # the bytes received are kept as a part
    assert_nothing_cached(hub, tmp_path)
    assert_healthy_hub_heals_it(hub, tmp_path)


def test_the_deadline_comes_from_the_environment(tmp_path):
    env = {"HF_HOME": str(tmp_path)}
    assert HubSettings.from_env(env).deadline_s == 3600
    assert HubSettings.from_env({**env, "GPT2_DOWNLOAD_DEADLINE": "90"}).deadline_s == 90
    assert HubSettings.from_env({**env, "GPT2_DOWNLOAD_DEADLINE": "none"}).deadline_s is None
    for bad in ("soon", "-5", "inf", "nan"):
        with pytest.raises(DownloadError, match="GPT2_DOWNLOAD_DEADLINE"):
            HubSettings.from_env({**env, "GPT2_DOWNLOAD_DEADLINE": bad})


def test_a_sha256_mismatch_announced_on_the_redirect(hub, tmp_path):
    hub.linked_sha = "0" * 64
    with pytest.raises(DownloadError, match="sha256"):
        load_model("gpt2", hub=settings_for(hub, tmp_path))
    assert_nothing_cached(hub, tmp_path)


def test_a_server_error_is_retried(hub, tmp_path):
    failures = []

    def flaky(handler, data, start):
        if not failures:
            failures.append(1)
            handler.send_error(503)
            return
        hub.behave.clear()
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    hub.behave["model.safetensors"] = flaky
    config, _ = load_model("gpt2", hub=settings_for(hub, tmp_path))
    assert config == CONFIG and failures == [1]


# --- names, revisions, endpoints --------------------------------------------------------------


@pytest.mark.parametrize(
    "revision", ["../../outside", "/tmp/absolute", "main/../..", "ma\0in", "", "a//b", ".", "x\\y", "refs/../../x"]
)
def test_revisions_that_are_paths_are_refused(hub, tmp_path, revision):
    with pytest.raises(ModelNotFound, match="is not a revision"):
        download_model(REPO, settings_for(hub, tmp_path), revision=revision)
    assert hub.requests == [] and not (tmp_path / "hub").exists()


def test_a_branch_with_slashes_stays_inside_the_cache(hub, tmp_path):
    assert check_revision("refs/pr/1") == "refs/pr/1"
    path = download_model(REPO, settings_for(hub, tmp_path), revision="refs/pr/1")
    assert path == snapshot(tmp_path)
    assert hub.requests[0][0] == "/openai-community/gpt2/resolve/refs%2Fpr%2F1/config.json"
    ref = tmp_path / "hub" / "models--openai-community--gpt2" / "refs" / "refs" / "pr" / "1"
    assert ref.read_text() == COMMIT
    assert not (snapshot(tmp_path).parent / "refs").exists()  # the staging folder was removed


@pytest.mark.parametrize("repo", ["a/b/c", "../x", "owner/..", "/abs/x", "owner/na\0me", "gpt2", "o/a--b", "o/"])
def test_repository_names_that_are_paths_are_refused(hub, tmp_path, repo):
    with pytest.raises(ModelNotFound, match="not a hub repository name"):
        download_model(repo, settings_for(hub, tmp_path))
    assert hub.requests == []
    with pytest.raises(ModelNotFound):
        check_repo_id(repo)


def test_a_ref_that_is_not_a_commit_is_not_followed(hub, tmp_path):
    load_model("gpt2", hub=settings_for(hub, tmp_path))
    ref = tmp_path / "hub" / "models--openai-community--gpt2" / "refs" / "main"
    ref.write_text("../../../elsewhere")
    assert cached_snapshot(settings_for(hub, tmp_path), REPO) is None


@pytest.mark.parametrize(
    "endpoint", ["huggingface.co", "ftp://mirror", "http://", "https://x/?q=1", "http://[::1", "http://a b"]
)
def test_an_endpoint_that_is_not_a_url_is_a_clear_error(endpoint):
    with pytest.raises(DownloadError, match=r"HF_ENDPOINT\) is not an http\(s\) URL"):
        HubSettings.from_env({"HF_ENDPOINT": endpoint})


def test_cli_with_a_bad_endpoint_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_ENDPOINT", "localhost:8080")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    assert main(["info", "gpt2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "HF_ENDPOINT" in err and "Traceback" not in err


# --- a bad file already in the cache -----------------------------------------------------------


def test_a_damaged_cached_model_names_the_folder_to_delete(hub, tmp_path):
    load_model("gpt2", hub=settings_for(hub, tmp_path))
    path = snapshot(tmp_path) / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-10])  # damaged after the download (a disk, another tool)
    folder = tmp_path / "hub" / "models--openai-community--gpt2"
    with pytest.raises(SafetensorsError) as info:
        load_model("gpt2", hub=settings_for(hub, tmp_path, offline=True))
    assert f"delete {folder} and run again" in str(info.value)
    shutil.rmtree(folder)
    assert_healthy_hub_heals_it(hub, tmp_path)
