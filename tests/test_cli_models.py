"""`gpt2 models` and `gpt2 info`: presets, packaged models and the Hugging Face cache listed with their
sizes; a hub model described from its config.json alone, fetched from a local stand-in for the hub."""

import http.server
import json
import os
import threading

import pytest

from gpt2.cli import main
from gpt2.config import Config
from gpt2.params import init_params
from gpt2.weights import save_model, write_safetensors

GPT2_CONFIG = json.dumps(Config.preset("gpt2").to_hf_dict()).encode()
COMMIT = "0123456789abcdef0123456789abcdef01234567"
SMALL = Config(n_layer=1, n_embd=8, n_head=2, vocab_size=11, n_ctx=16)


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """A hub on 127.0.0.1 that serves openai-community/gpt2's config.json (and nothing else), and a
    private Hugging Face cache."""
    requests = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            requests.append(self.path)
            if self.path == "/openai-community/gpt2/resolve/main/config.json":
                self.send_response(200)
                self.send_header("Content-Length", str(len(GPT2_CONFIG)))
                self.send_header("X-Repo-Commit", COMMIT)
                self.end_headers()
                self.wfile.write(GPT2_CONFIG)
            else:
                self.send_error(404)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    yield requests
    server.shutdown()
    server.server_close()


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_info_of_a_preset_reads_nothing(capsys):
    code, out, err = run(capsys, "info", "tiny")
    assert code == 0 and "format       preset" in out and f"{Config.preset('tiny').num_parameters():,}" in out
    info = json.loads(run(capsys, "info", "-m", "tiny", "--json")[1])
    assert info["weights"] is None and info["parameters"] == Config.preset("tiny").num_parameters()


def test_info_of_a_hub_model_fetches_only_its_config(capsys, hub, tmp_path):
    code, out, err = run(capsys, "info", "gpt2")
    assert code == 0, err
    assert hub == ["/openai-community/gpt2/resolve/main/config.json"]  # no weights asked for
    assert "124,439,808" in out and "not downloaded" in out
    snapshot = tmp_path / "hf" / "hub" / "models--openai-community--gpt2" / "snapshots" / COMMIT
    assert sorted(p.name for p in snapshot.iterdir()) == ["config.json"]
    assert run(capsys, "info")[0] == 0  # the default model is gpt2, and its config is now cached
    assert len(hub) == 1


def test_info_of_a_hub_model_offline_and_uncached_is_one_line(capsys, hub, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, out, err = run(capsys, "info", "gpt2-medium")
    assert code == 2 and hub == [] and len(err.strip().splitlines()) == 1 and "HF_HUB_OFFLINE" in err


def test_info_of_a_bare_safetensors_file_says_the_head_count_is_a_guess(capsys, tmp_path):
    params = init_params(Config(n_layer=1, n_embd=128, n_head=2, vocab_size=11, n_ctx=16), seed=0)
    write_safetensors(tmp_path / "model.safetensors", params)
    code, out, err = run(capsys, "info", str(tmp_path / "model.safetensors"))
    assert code == 0 and "n_head guessed from the width" in out and "n_head=2 " in out
    info = json.loads(run(capsys, "info", str(tmp_path / "model.safetensors"), "--json")[1])
    assert info["n_head_guessed"] is True and info["config_file"] is None


def test_info_takes_the_model_once(capsys):
    code, out, err = run(capsys, "info", "tiny", "-m", "gpt2-xl")
    assert code == 2 and "give the model once" in err


def link_layout(root, files):
    """huggingface_hub's cache layout: bytes in blobs/, snapshots/<commit>/<name> a link to them."""
    (root / "blobs").mkdir(parents=True)
    snapshot = root / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(COMMIT)
    for i, (name, data) in enumerate(files.items()):
        (root / "blobs" / f"blob{i}").write_bytes(data)
        os.symlink(root / "blobs" / f"blob{i}", snapshot / name)
    return snapshot


def test_models_lists_presets_packaged_models_and_the_cache(capsys, hub, tmp_path, monkeypatch):
    import gpt2.weights.info as info_module

    cache = tmp_path / "hf" / "hub"
    save_model(tmp_path / "small", SMALL, init_params(SMALL, seed=0))
    files = {p.name: p.read_bytes() for p in (tmp_path / "small").iterdir()}
    link_layout(cache / "models--someone--small-gpt2", files)
    link_layout(cache / "models--openai-community--gpt2", files)  # a stand-in for the 124M download
    link_layout(cache / "models--someone--bert", {"config.json": b'{"model_type": "bert"}'})
    packaged = tmp_path / "packaged"
    save_model(packaged / "gpt2-shakespeare", SMALL, init_params(SMALL, seed=1))
    monkeypatch.setattr(info_module, "PACKAGED_DIR", packaged)

    code, out, err = run(capsys, "models", "--json")
    assert code == 0 and hub == []  # listing never touches the network
    listed = {m["name"]: m for m in json.loads(out)["models"]}
    size = sum(len(d) for d in files.values()) + len(COMMIT)  # the bytes, and refs/main
    assert listed["someone/small-gpt2"]["kind"] == "cached" and listed["someone/small-gpt2"]["size_bytes"] == size
    assert listed["gpt2"]["kind"] == "preset" and listed["gpt2"]["size_bytes"] == size  # links counted once
    assert (
        listed["gpt2-xl"]["size_bytes"] is None
        and listed["tiny"]["parameters"] == Config.preset("tiny").num_parameters()
    )
    assert listed["gpt2-shakespeare"]["kind"] == "packaged"
    assert "someone/bert" not in listed
    code, out, err = run(capsys, "models")
    assert code == 0 and "someone/small-gpt2" in out and "gpt2-shakespeare" in out and str(cache) in out


def test_models_never_follows_a_ref_that_is_not_a_commit_hash(capsys, hub, tmp_path, monkeypatch):
    """refs/main names a snapshot by its commit hash; anything else (a path out of the cache)
    is ignored, and the newest snapshot is listed instead."""
    cache = tmp_path / "hf" / "hub"
    save_model(tmp_path / "small", SMALL, init_params(SMALL, seed=0))
    root = cache / "models--someone--small-gpt2"
    link_layout(root, {p.name: p.read_bytes() for p in (tmp_path / "small").iterdir()})
    outside = tmp_path / "outside"
    save_model(outside, SMALL, init_params(SMALL, seed=2))
    (root / "refs" / "main").write_text("../../../../outside")
    code, out, err = run(capsys, "models", "--json")
    assert code == 0
    listed = {m["name"]: m for m in json.loads(out)["models"]}
    assert listed["someone/small-gpt2"]["path"].endswith(COMMIT)
