"""Downloads from a local server that answers the way the Hugging Face hub does:
`/{repo}/resolve/{revision}/{filename}`, X-Repo-Commit, large files redirected to a
"CDN" path whose ETag is their sha256, Range requests answered with 206."""

import hashlib
import http.server
import json
import re
import threading

import pytest

from gpt2.config import Config
from gpt2.params import init_params
from gpt2.weights import DownloadError, HubSettings, ModelNotFound, load_model
from gpt2.weights.hub import cached_snapshot, repo_id_for
from gpt2.weights.safetensors import encode_header

REPO = "openai-community/gpt2"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
CONFIG = Config(n_layer=2, n_embd=16, n_head=2, vocab_size=64, n_ctx=8)


def safetensors_bytes(params):
    return encode_header(params, {"format": "pt"}) + b"".join(bytes(t.data) for t in params.values())


class FakeHub:
    """Files by (repo, name); `cut` names files whose first full download is cut halfway."""

    def __init__(self, files):
        self.files = files
        self.cut = set()
        self.bad_sha = False
        self.requests = []  # (path, Range header or None)

    def handler(hub):  # noqa: N805 - the server's request handler, closing over the hub
        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                hub.requests.append((self.path, self.headers.get("Range")))
                m = re.fullmatch(r"/(.+)/resolve/([^/]+)/([^/]+)", self.path)
                if m and (m.group(1), m.group(3)) in hub.files:
                    repo, _, name = m.groups()
                    data = hub.files[repo, name]
                    if name.endswith((".safetensors", ".bin")):  # LFS: redirect to the CDN
                        self.send_response(302)
                        self.send_header("Location", f"/cdn/{repo}/{name}")
                        self.send_header("X-Repo-Commit", COMMIT)
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    return self.send_bytes(data, name, etag=hashlib.sha1(data).hexdigest())
                m = re.fullmatch(r"/cdn/(.+)/([^/]+)", self.path)
                if m and (m.group(1), m.group(2)) in hub.files:
                    data = hub.files[m.group(1), m.group(2)]
                    sha = hashlib.sha256(data + (b"x" if hub.bad_sha else b"")).hexdigest()
                    return self.send_bytes(data, m.group(2), etag=sha)
                self.send_error(404)

            def send_bytes(self, data, name, etag):
                start = 0
                rng = self.headers.get("Range")
                if rng:
                    start = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1))
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data) - start))
                self.send_header("ETag", f'"{etag}"')
                self.send_header("X-Repo-Commit", COMMIT)
                self.end_headers()
                body = data[start:]
                if name in hub.cut and not rng:
                    hub.cut.discard(name)
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        return Handler


@pytest.fixture
def params():
    return init_params(CONFIG, seed=3)


@pytest.fixture
def hub(params):
    fake = FakeHub(
        {
            (REPO, "config.json"): json.dumps(CONFIG.to_hf_dict()).encode(),
            (REPO, "model.safetensors"): safetensors_bytes(params),
        }
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), fake.handler())
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    fake.endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    yield fake
    server.shutdown()
    server.server_close()


def settings_for(hub, tmp_path, **kw):
    return HubSettings(endpoint=hub.endpoint, cache_dir=tmp_path / "hf" / "hub", **kw)


def snapshot_dir(tmp_path):
    return tmp_path / "hf" / "hub" / "models--openai-community--gpt2" / "snapshots" / COMMIT


def assert_same_params(got, want):
    assert list(got) == list(want)
    assert all(bytes(got[k].data) == bytes(want[k].data) for k in want)


def test_download_into_the_hub_cache_layout(hub, tmp_path, params):
    seen = []
    config, got = load_model("gpt2", hub=settings_for(hub, tmp_path), progress=lambda *a: seen.append(a))
    assert config == CONFIG
    assert_same_params(got, params)
    snap = snapshot_dir(tmp_path)
    assert sorted(p.name for p in snap.iterdir()) == ["config.json", "model.safetensors"]
    assert (snap.parent.parent / "refs" / "main").read_text() == COMMIT
    assert [p.name for p in snap.parent.iterdir()] == [COMMIT]
    assert seen[-1][0] == "model.safetensors" and seen[-1][1] == seen[-1][2] == len(
        hub.files[REPO, "model.safetensors"]
    )


def test_an_interrupted_download_resumes_with_a_range_request(hub, tmp_path, params):
    hub.cut.add("model.safetensors")
    _, got = load_model("openai-community/gpt2", hub=settings_for(hub, tmp_path))
    assert_same_params(got, params)
    ranges = [r for path, r in hub.requests if "model.safetensors" in path and r]
    assert ranges and ranges[0] != "bytes=0-"
    data = hub.files[REPO, "model.safetensors"]
    assert (snapshot_dir(tmp_path) / "model.safetensors").read_bytes() == data
    assert not list(snapshot_dir(tmp_path).glob("*.incomplete"))


def test_a_part_left_by_an_earlier_run_is_continued(hub, tmp_path, params):
    data = hub.files[REPO, "model.safetensors"]
    snapshot_dir(tmp_path).mkdir(parents=True)
    (snapshot_dir(tmp_path) / "model.safetensors.incomplete").write_bytes(data[:1000])
    _, got = load_model("gpt2", hub=settings_for(hub, tmp_path))
    assert_same_params(got, params)
    assert ("/cdn/openai-community/gpt2/model.safetensors", "bytes=1000-") in hub.requests


def test_a_cached_model_needs_no_network(hub, tmp_path, params):
    load_model("gpt2", hub=settings_for(hub, tmp_path))
    hub.requests.clear()
    _, got = load_model("gpt2", hub=settings_for(hub, tmp_path, offline=True))
    assert_same_params(got, params)
    _, got = load_model("gpt2", hub=settings_for(hub, tmp_path))
    assert hub.requests == []


def test_falls_back_to_pytorch_model_bin(hub, tmp_path, params):
    torch = pytest.importorskip("torch")
    import io

    del hub.files[REPO, "model.safetensors"]
    buf = io.BytesIO()
    torch.save({f"transformer.{k}": torch.tensor(list(t.to_array())).view(t.shape) for k, t in params.items()}, buf)
    hub.files[REPO, "pytorch_model.bin"] = buf.getvalue()
    config, got = load_model("gpt2", hub=settings_for(hub, tmp_path))
    assert config == CONFIG
    assert all(list(got[k].to_array()) == list(params[k].to_array()) for k in params)
    assert (snapshot_dir(tmp_path) / "pytorch_model.bin").is_file()


def test_no_weights_on_the_hub(hub, tmp_path):
    del hub.files[REPO, "model.safetensors"]
    with pytest.raises(ModelNotFound, match="neither model.safetensors nor pytorch_model.bin"):
        load_model("gpt2", hub=settings_for(hub, tmp_path))


def test_a_corrupted_download_is_detected_by_its_sha256(hub, tmp_path):
    hub.bad_sha = True
    with pytest.raises(DownloadError, match="sha256"):
        load_model("gpt2", hub=settings_for(hub, tmp_path))
    assert cached_snapshot(settings_for(hub, tmp_path), REPO) is None


def test_unreachable_endpoint(tmp_path):
    settings = HubSettings(endpoint="http://127.0.0.1:9", cache_dir=tmp_path / "hub", attempts=2, timeout_s=5)
    with pytest.raises(DownloadError, match="cannot download .*config.json"):
        load_model("gpt2-medium", hub=settings)


def test_offline_with_nothing_cached_says_what_to_do(tmp_path):
    settings = HubSettings.from_env({"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path)})
    with pytest.raises(ModelNotFound) as info:
        load_model("gpt2-large", hub=settings)
    message = str(info.value)
    assert "HF_HUB_OFFLINE" in message and "config.json" in message and "model.safetensors" in message
    assert str(tmp_path / "hub" / "models--openai-community--gpt2-large" / "snapshots" / "main") in message
    assert not (tmp_path / "hub").exists()  # nothing was written


def test_cli_offline_error_is_one_line(tmp_path, monkeypatch, capsys):
    from gpt2.cli import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    assert main(["info", "gpt2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "HF_HUB_OFFLINE" in err


def test_cli_downloads_with_a_progress_bar_on_stderr(hub, tmp_path, monkeypatch, capsys):
    from gpt2.cli import main

    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    assert main(["convert", "gpt2", str(tmp_path / "out")]) == 0  # (info fetches only config.json)
    captured = capsys.readouterr()
    assert json.loads((tmp_path / "out" / "config.json").read_text())["n_layer"] == 2
    assert "model.safetensors [" in captured.err


def test_huggingface_hub_finds_what_we_cached(hub, tmp_path):
    hf = pytest.importorskip("huggingface_hub")
    load_model("gpt2", hub=settings_for(hub, tmp_path))
    found = hf.try_to_load_from_cache(REPO, "model.safetensors", cache_dir=tmp_path / "hf" / "hub")
    assert found is not None and str(found).endswith("model.safetensors")


def test_settings_from_the_environment(tmp_path):
    s = HubSettings.from_env({"HF_ENDPOINT": "http://mirror.example/", "HF_HOME": str(tmp_path)})
    assert (s.endpoint, s.cache_dir, s.offline) == ("http://mirror.example", tmp_path / "hub", False)
    s = HubSettings.from_env({"HF_HOME": "/x", "HF_HUB_CACHE": str(tmp_path), "HF_HUB_OFFLINE": "true"})
    assert (s.endpoint, s.cache_dir, s.offline) == ("https://huggingface.co", tmp_path, True)


def test_known_names():
    assert repo_id_for("gpt2-xl") == "openai-community/gpt2-xl"
    assert repo_id_for("openai-community/gpt2-medium") == "openai-community/gpt2-medium"
    assert repo_id_for("someone/else") is None


def test_no_config_on_the_hub(hub, tmp_path):
    del hub.files[REPO, "config.json"]
    with pytest.raises(ModelNotFound, match="has no config.json"):
        load_model("gpt2", hub=settings_for(hub, tmp_path))
