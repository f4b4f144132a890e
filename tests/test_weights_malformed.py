"""Every malformed file or config is a typed, one-line error, and a fast one.

Regressions for what a hostile or careless user found: absurd sizes, JSON that
breaks the parser (nesting, 5,000-digit integers, 1e400), values that were coerced
instead of checked, files that are FIFOs or links to /dev/zero (which hang or fill
memory: those cases run in a subprocess with a timeout, so a regression fails
instead of hanging the suite), a `checkpoint` file pointing elsewhere, and messages
that misled."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from gpt2.config import Config
from gpt2.errors import ConfigError, Gpt2Error, ParamError
from gpt2.params import init_params
from gpt2.tensor import Tensor
from gpt2.weights import SafetensorsError, TFCheckpointError, TorchBinError, load_model, save_model, write_safetensors
from gpt2.weights.safetensors import read_safetensors

SMALL = Config(n_layer=1, n_embd=8, n_head=2, vocab_size=16, n_ctx=4)
TF_FIXTURE = Path(__file__).parent / "fixtures" / "tf_gpt2_small"
DEEP = "[" * 200_000 + "]" * 200_000
HUGE = "9" * 5000


@pytest.fixture
def model_dir(tmp_path):
    return save_model(tmp_path / "m", SMALL, init_params(SMALL, seed=1))


def write_config(directory: Path, **changes) -> None:
    config = SMALL.to_hf_dict()
    config.update(changes)
    (directory / "config.json").write_text(json.dumps(config))


def raw_safetensors(path: Path, header: bytes, data: bytes = b"") -> Path:
    path.write_bytes(struct.pack("<Q", len(header)) + header + data)
    return path


# --- config.json: sizes, types, parser-breaking JSON ------------------------------------------


@pytest.mark.parametrize("n_layer", [10**9, 10**18, 5000])
def test_absurd_sizes_are_refused_at_once(model_dir, n_layer):
    write_config(model_dir, n_layer=n_layer)
    with pytest.raises(ConfigError, match="n_layer=.* is absurd"):
        load_model(model_dir)


def test_the_config_is_checked_against_the_tensors_before_anything_is_built(model_dir, monkeypatch):
    """4000 layers is allowed, the file holds 1: said without listing 4000 layers' tensors."""
    import gpt2.weights.load as load

    built = []
    monkeypatch.setattr(load, "validate_params", lambda params, config: built.append(config))
    write_config(model_dir, n_layer=4000)
    with pytest.raises(ParamError, match=r"n_layer=4000, but the weights hold blocks: 1 \(h.0 to h.0\)"):
        load_model(model_dir)
    assert built == []


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"qkv_bias": "false"}, "qkv_bias must be true or false, got 'false'"),
        ({"qkv_bias": 0}, "qkv_bias must be true or false, got 0"),
        ({"n_layer": 2.7}, "n_layer must be an integer, got 2.7"),
        ({"n_layer": 1.0}, "n_layer must be an integer, got 1.0"),
        ({"n_layer": "2"}, "n_layer must be an integer, got '2'"),
        ({"n_layer": True}, "n_layer must be an integer, got True"),
        ({"n_head": None}, "n_head must be an integer, got None"),
        ({"n_embd": [8]}, "n_embd must be an integer, got \\[8\\]"),
        ({"layer_norm_epsilon": "1e-5"}, "layer_norm_epsilon must be a number"),
        ({"position_embedding": ["learned"]}, "position_embedding must be a string"),
        ({"activation_function": {"a": 1}}, "activation_function must be a string"),
        ({"n_positions": 4, "n_ctx": 8}, "n_positions=4 and n_ctx=8 disagree"),
        ({"n_inner": 7}, "n_inner=7 is not 4 \\* n_embd"),
        ({"n_layer": 0}, "n_layer must be a positive integer"),
    ],
)
def test_values_are_checked_not_coerced(model_dir, changes, message):
    write_config(model_dir, **changes)
    with pytest.raises(ConfigError, match=message):
        load_model(model_dir)


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"n_layer": 1e400, "n_embd": 8, "n_head": 2}', "n_layer must be an integer, got inf"),
        ('{"n_layer": 1, "n_embd": 8, "n_head": 2, "layer_norm_epsilon": 1e400}', "finite number > 0, got inf"),
        ('{"n_layer": 1, "n_embd": 8, "n_head": 2, "layer_norm_epsilon": NaN}', "finite number > 0, got nan"),
        # Python >= 3.10.7 refuses to parse past 4300 digits; before, the value is refused.
        ('{"n_layer": ' + HUGE + ', "n_embd": 8, "n_head": 2}', "not valid JSON: Exceeds the limit|is absurd"),
        ('{"n_layer": ' + HUGE[:4000] + ', "n_embd": 8, "n_head": 2}', "an integer of about 4000 digits is absurd"),
        ('{"n_layer": 1, "x": ' + DEEP + "}", "nests its JSON too deeply"),
        (DEEP, "nests its JSON too deeply"),
        ('{"n_layer": 1', "not valid JSON"),
        ("[1, 2]", "not a JSON object"),
    ],
    ids=["1e400", "epsilon-1e400", "epsilon-nan", "5000-digits", "4000-digits", "deep-value", "deep", "cut", "list"],
)
def test_json_that_breaks_the_parser_is_a_config_error(model_dir, text, message):
    (model_dir / "config.json").write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        load_model(model_dir)
    assert len(str(info.value)) < 400 and "\n" not in str(info.value)


def test_config_json_that_is_not_utf8(model_dir):
    (model_dir / "config.json").write_bytes(b'{"n_layer": "\xff"}')
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_model(model_dir)


def test_from_hf_dict_and_the_constructor_check_types_directly():
    with pytest.raises(ConfigError):
        Config.from_hf_dict({"n_layer": 1, "n_embd": 8})  # no n_head
    with pytest.raises(ConfigError, match="must be a JSON object"):
        Config.from_hf_dict([("n_layer", 1)])  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="dropout"):
        Config(dropout="0.1")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="about 5000 digits"):
        Config(n_layer=10**5000)


# --- safetensors headers -----------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [["F32"], {"F32": 1}, None, 1, 1.5, True])
def test_a_dtype_that_is_not_a_string(tmp_path, dtype):
    header = json.dumps({"x": {"dtype": dtype, "shape": [1], "data_offsets": [0, 4]}}).encode()
    path = raw_safetensors(tmp_path / "x.safetensors", header, bytes(4))
    with pytest.raises(SafetensorsError, match="unknown dtype"):
        read_safetensors(path)


@pytest.mark.parametrize(
    "header, message",
    [
        (DEEP.encode(), "nests its JSON too deeply"),
        (('{"x": ' + DEEP + "}").encode(), "nests its JSON too deeply"),
        (
            ('{"x": {"dtype": "F32", "shape": [' + HUGE + '], "data_offsets": [0, 4]}}').encode(),
            "Exceeds the limit|more bytes than",
        ),
        (
            ('{"x": {"dtype": "F32", "shape": [1], "data_offsets": [0, ' + HUGE + "]}}").encode(),
            "Exceeds the limit|ends at byte",
        ),
        (
            ('{"x": {"dtype": "F32", "shape": [' + HUGE[:4000] + '], "data_offsets": [0, 4]}}').encode(),
            "would need more bytes than",
        ),
        (b'{"x": {"dtype": "F32", "shape": [1e400], "data_offsets": [0, 4]}}', "shape \\[inf\\]"),
    ],
    ids=["deep", "deep-value", "5000-digit-shape", "5000-digit-offset", "4000-digit-shape", "1e400-shape"],
)
def test_headers_that_break_the_parser(tmp_path, header, message):
    path = raw_safetensors(tmp_path / "x.safetensors", header, bytes(4))
    with pytest.raises(SafetensorsError, match=message) as info:
        read_safetensors(path)
    assert len(str(info.value)) < 400


def test_a_forged_tensor_name_is_not_copied_whole_into_the_message(tmp_path):
    write_safetensors(tmp_path / "w.safetensors", {"h." + "9" * 5000 + ".x": Tensor.from_floats([1.0], (1,))})
    with pytest.raises(Gpt2Error) as info:
        load_model(tmp_path / "w.safetensors")
    assert len(str(info.value)) < 400


# --- files that are not regular files ----------------------------------------------------------

# (case id, what to break, the path to load): in OpenAI's TensorFlow release, or in a
# Hugging Face directory (where the .bin case first removes model.safetensors).
TF_CASES = [
    ("index", "model.ckpt.index", "."),
    ("index-by-prefix", "model.ckpt.index", "model.ckpt"),
    ("data", "model.ckpt.data-00000-of-00001", "."),
    ("checkpoint", "checkpoint", "."),
    ("hparams", "hparams.json", "."),
]
HF_CASES = [
    ("safetensors", "model.safetensors", "."),
    ("config", "config.json", "."),
    ("bin", "pytorch_model.bin", "."),
]
KINDS = {"fifo": "FIFO", "dev-zero": "character device"}

DRIVER = r"""
import contextlib, io, json, sys
from gpt2.cli import main
for case, target in json.loads(sys.argv[1]):
    print(json.dumps({"started": case}), flush=True)  # if this process hangs, the last line says where
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        status = main(["info", target])
    print(json.dumps({"case": case, "status": status, "stderr": err.getvalue()}), flush=True)
"""

needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo") or not os.path.exists("/dev/zero"), reason="POSIX only")


def make_special(path: Path, kind: str) -> None:
    path.unlink(missing_ok=True)
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to("/dev/zero")


@pytest.fixture(scope="module")
def special_file_results(tmp_path_factory):
    """`gpt2 info` on every case, in one fresh process with a timeout: a reader that waits
    on a FIFO or reads /dev/zero fails these tests instead of hanging the suite."""
    root = tmp_path_factory.mktemp("special")
    cases = []
    for kind in KINDS:
        for case, name, target in TF_CASES + HF_CASES:
            directory = root / f"{kind}-{case}"
            if (case, name, target) in TF_CASES:
                shutil.copytree(TF_FIXTURE, directory)
            else:
                save_model(directory, SMALL, init_params(SMALL, seed=1))
                if name == "pytorch_model.bin":
                    (directory / "model.safetensors").unlink()
            make_special(directory / name, kind)
            cases.append((f"{kind}-{case}", str(directory / target)))
    result = subprocess.run(
        [sys.executable, "-c", DRIVER, json.dumps(cases)], capture_output=True, text=True, timeout=300
    )
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    return {line["case"]: line for line in lines if "case" in line}


@needs_fifo
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case, name, target", TF_CASES + HF_CASES, ids=[c[0] for c in TF_CASES + HF_CASES])
def test_files_that_are_not_regular_files(special_file_results, kind, case, name, target):
    got = special_file_results[f"{kind}-{case}"]
    assert got["status"] == 2, got
    err = got["stderr"]
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert KINDS[kind] in err and name in err, err
    assert "no such file" not in err.lower(), err


@needs_fifo
def test_a_fifo_bin_read_directly_is_not_reported_missing(tmp_path):
    pytest.importorskip("torch")
    from gpt2.weights.torch_bin import read_torch_bin

    make_special(tmp_path / "x.bin", "fifo")
    with pytest.raises(TorchBinError, match="FIFO") as info:
        read_torch_bin(tmp_path / "x.bin")
    assert "no such file" not in str(info.value)


# --- TensorFlow: the checkpoint file stays inside its directory; errors name the file ----------


@pytest.fixture
def tf_copy(tmp_path):
    shutil.copytree(TF_FIXTURE, tmp_path / "ckpt")
    return tmp_path / "ckpt"


def test_the_checkpoint_file_cannot_point_outside_its_directory(tf_copy, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for f in tf_copy.glob("model.ckpt.*"):
        shutil.move(f, elsewhere / f.name)
    for named in (str(elsewhere / "model.ckpt"), "../elsewhere/model.ckpt"):
        (tf_copy / "checkpoint").write_text(f'model_checkpoint_path: "{named}"\n')
        with pytest.raises(TFCheckpointError, match="outside .*pass that prefix .* explicitly"):
            load_model(tf_copy)
    shutil.copy(tf_copy / "hparams.json", elsewhere)
    assert load_model(elsewhere / "model.ckpt")[0].n_layer == 2  # named explicitly: fine


def test_a_moved_tensorflow_1_checkpoint_with_an_absolute_path_still_loads(tf_copy):
    (tf_copy / "checkpoint").write_text('model_checkpoint_path: "/old/machine/run/model.ckpt"\n')
    assert load_model(tf_copy)[0].n_layer == 2


def test_tf_errors_name_the_file(tf_copy):
    shard = tf_copy / "model.ckpt.data-00000-of-00001"
    shard.write_bytes(shard.read_bytes()[:-100])
    with pytest.raises(TFCheckpointError, match=f"{shard}: tensor 'model/.*truncated file"):
        load_model(tf_copy)
    from gpt2.weights.tf_checkpoint import read_bundle

    index = tf_copy / "model.ckpt.index"
    index.write_bytes(index.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(TFCheckpointError, match=f"{index}: bad table magic"):
        read_bundle(tf_copy / "model.ckpt")


# --- PyTorch .bin: truncated zips and malicious pickles ----------------------------------------


@pytest.fixture
def good_bin(tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "pytorch_model.bin"
    torch.save({"wte.weight": torch.zeros(64, 64)}, path)
    return path


@pytest.mark.parametrize("keep", [0, 10, 100, 0.5, -22, -1])
def test_a_truncated_bin_says_so(good_bin, keep):
    data = good_bin.read_bytes()
    cut = data[: int(len(data) * keep) if isinstance(keep, float) else keep]
    good_bin.write_bytes(cut)
    with pytest.raises(TorchBinError) as info:
        load_model(good_bin)
    message = str(info.value)
    assert "empty" in message or "truncated" in message, message
    assert "Invalid argument" not in message


def test_a_malicious_pickle_is_refused_without_torchs_advice(tmp_path):
    torch = pytest.importorskip("torch")

    class Evil:
        def __reduce__(self):
            return (open, (str(tmp_path / "pwned"), "w"))

    path = tmp_path / "evil.bin"
    torch.save({"wte.weight": torch.zeros(2, 2), "evil": Evil()}, path)
    with pytest.raises(TorchBinError) as info:
        load_model(path)
    message = str(info.value)
    assert "refused: unpickling it would call" in message and "open" in message
    for advice in ("weights_only=False", "weights_only` set to `False", "safe_globals", "trust", "\x1b"):
        assert advice not in message
    assert not (tmp_path / "pwned").exists()
