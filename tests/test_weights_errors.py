"""Bad files give typed errors, never code execution, crashes or partial loads; and
`gpt2 info BADFILE` says what is wrong in one line with exit status 2."""

import json
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from gpt2.cli import main
from gpt2.config import Config
from gpt2.params import init_params
from gpt2.tensor import Tensor
from gpt2.weights import ModelNotFound, SafetensorsError, TorchBinError, load_model, write_safetensors


class Evil:
    """Unpickling this would create the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_malicious_raw_pickle_never_runs(tmp_path):
    pytest.importorskip("torch")
    marker = tmp_path / "pwned"
    path = tmp_path / "pytorch_model.bin"
    path.write_bytes(pickle.dumps({"wte.weight": Evil(marker)}, protocol=2))
    with pytest.raises(TorchBinError):
        load_model(path)
    assert not marker.exists()


def test_malicious_torch_zip_never_runs(tmp_path):
    torch = pytest.importorskip("torch")
    marker = tmp_path / "pwned"
    (tmp_path / "model").mkdir()
    path = tmp_path / "model" / "pytorch_model.bin"
    torch.save({"wte.weight": torch.zeros(2, 2), "evil": Evil(marker)}, path)
    assert not marker.exists()
    with pytest.raises(TorchBinError, match="weights-only"):
        load_model(tmp_path / "model")
    assert not marker.exists()
    assert main(["info", str(path)]) == 2
    assert not marker.exists()


def test_bin_without_torch_says_what_to_do(tmp_path, monkeypatch):
    path = tmp_path / "pytorch_model.bin"
    path.write_bytes(b"PK\x03\x04")
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now fails
    with pytest.raises(TorchBinError, match=r'pip install -e "\.\[torch\]".*safetensors'):
        load_model(path)


def test_bin_that_is_not_a_state_dict(tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "x.bin"
    torch.save([torch.zeros(1)], path)
    with pytest.raises(TorchBinError, match="state dict"):
        load_model(path)
    torch.save({"a": torch.zeros(2, dtype=torch.int64)}, path)
    with pytest.raises(TorchBinError, match="float"):
        load_model(path)


def test_unknown_name_and_empty_directory(tmp_path):
    with pytest.raises(ModelNotFound, match="not a known model name"):
        load_model("gpt3-mega")
    with pytest.raises(ModelNotFound, match="no model.safetensors"):
        load_model(tmp_path)


@pytest.fixture
def bad_safetensors(tmp_path):
    path = tmp_path / "bad.safetensors"
    write_safetensors(path, {"wte.weight": Tensor.from_floats([1.0] * 8, (4, 2))})
    path.write_bytes(path.read_bytes()[:-4])  # truncated
    return path


def test_info_on_a_bad_file_is_one_line_and_exit_2(bad_safetensors, capsys):
    assert main(["info", str(bad_safetensors)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("gpt2 info: error: ") and "truncated" in err
    with pytest.raises(SafetensorsError):
        load_model(bad_safetensors)


def test_info_on_a_bad_file_in_a_fresh_process(bad_safetensors):
    out = subprocess.run([sys.executable, "-m", "gpt2", "info", str(bad_safetensors)], capture_output=True, text=True)
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr


@pytest.mark.parametrize("case", ["wrong_wte", "bad_header", "overlap"])
def test_info_on_other_bad_files(tmp_path, capsys, case):
    path = tmp_path / "model.safetensors"
    if case == "wrong_wte":
        config = Config(n_layer=1, n_embd=4, n_head=1, vocab_size=3, n_ctx=2)
        (tmp_path / "config.json").write_text(json.dumps(config.to_hf_dict()))
        params = init_params(config)
        params["wte.weight"] = Tensor.from_floats([0.0] * 8, (2, 4))  # 2 rows, not 3
        write_safetensors(path, params)
    elif case == "bad_header":
        path.write_bytes(struct.pack("<Q", 4) + b"nope")
    else:
        header = json.dumps(
            {
                "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
            }
        ).encode()
        path.write_bytes(struct.pack("<Q", len(header)) + header + bytes(12))
    assert main(["info", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert {"wrong_wte": "wte.weight", "bad_header": "JSON", "overlap": "overlaps"}[case] in err


def test_info_on_the_tf_fixture_json(capsys):
    fixture = Path(__file__).parent / "fixtures" / "tf_gpt2_small"
    assert main(["info", str(fixture), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["format"] == "tf" and info["parameters"] == 29056 and info["config"]["n_head"] == 4


def test_legacy_torch_format_loads_weights_only(tmp_path):
    """Checkpoints from before PyTorch 1.6 (like the oldest hub uploads) are not zip files:
    they load without mmap, still through the weights-only unpickler."""
    torch = pytest.importorskip("torch")
    from gpt2.weights.torch_bin import read_torch_bin

    path = tmp_path / "old.bin"
    torch.save(
        {"a": torch.arange(3.0), "b": torch.ones(2, dtype=torch.bfloat16)}, path, _use_new_zipfile_serialization=False
    )
    tensors = read_torch_bin(path)
    assert list(tensors["a"].to_array()) == [0.0, 1.0, 2.0]
    assert tensors["b"].dtype == "BF16" and list(tensors["b"].to_array()) == [1.0, 1.0]


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda tmp: "", "empty model name"),
        (lambda tmp: "/dev/null", "is not a regular file or a directory"),
        (
            lambda tmp: (tmp / "hparams.json").write_text('{"n_layer": 2}') and tmp / "hparams.json",
            "is not a model file",
        ),
        (lambda tmp: (tmp / "notes").write_bytes(b"\x7fELF" + bytes(60)) and tmp / "notes", "is not a model file"),
    ],
)
def test_things_that_are_not_models_say_so(tmp_path, capsys, make, message):
    # Not "header length 8529657312109922939 exceeds the limit": a user who points
    # `gpt2 info` at the wrong file is told it is not a model at all.
    target = str(make(tmp_path))
    assert main(["info", target]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("gpt2 info: error: ") and message in err


def test_a_safetensors_file_without_its_suffix_still_loads(tmp_path):
    config = Config(n_layer=1, n_embd=4, n_head=1, vocab_size=3, n_ctx=2)
    write_safetensors(tmp_path / "weights", init_params(config))
    (tmp_path / "config.json").write_text(json.dumps(config.to_hf_dict()))
    loaded, params = load_model(tmp_path / "weights")
    assert loaded.n_embd == 4 and set(params) == set(init_params(config))
