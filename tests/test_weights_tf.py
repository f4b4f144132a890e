"""OpenAI's TensorFlow checkpoint format, read without TensorFlow.

The fixture in tests/fixtures/tf_gpt2_small was written by real TensorFlow
(scripts/make_tf_fixture.py) with OpenAI's variable names; its expected logits
come from an independent NumPy forward pass in that script."""

import json
import shutil
import struct
from pathlib import Path

import pytest

from gpt2.config import Config
from gpt2.weights import TFCheckpointError, WeightsError, load_model
from gpt2.weights.names import tf_to_ours
from gpt2.weights.tf_checkpoint import (
    crc32c,
    masked_crc32c,
    parse_bundle_entry,
    proto_fields,
    read_table,
    read_tf_checkpoint,
)

FIXTURE = Path(__file__).parent / "fixtures" / "tf_gpt2_small"
EXPECTED = json.loads((FIXTURE / "expected.json").read_text())


@pytest.fixture
def copy(tmp_path):
    """A scratch copy of the fixture, to break."""
    shutil.copytree(FIXTURE, tmp_path / "ckpt")
    return tmp_path / "ckpt"


def test_reads_every_variable_with_checksums():
    tensors = read_tf_checkpoint(FIXTURE / "model.ckpt", verify_crc=True)
    assert tensors["model/wte"].shape == (96, 32)
    assert tensors["model/h1/attn/c_attn/w"].shape == (1, 32, 96)
    assert tensors["model/h0/mlp/c_proj/w"].shape == (1, 128, 32)
    assert len(tensors) == 2 + 2 * 12 + 2
    assert {t.dtype for t in tensors.values()} == {"F32"}


def test_loads_config_and_tree():
    config, params = load_model(FIXTURE)
    assert config == Config(n_layer=2, n_embd=32, n_head=4, vocab_size=96, n_ctx=16)
    assert params["h.0.attn.c_attn.weight"].shape == (32, 96)  # the [1, in, out] kernel squeezed


def test_logits_match_the_independent_forward():
    torch = pytest.importorskip("torch")
    from gpt2.engines.torch.model import GPT2

    config, params = load_model(FIXTURE)
    with torch.no_grad():
        logits = GPT2.from_params(config, params).eval()(torch.tensor([EXPECTED["input_ids"]]))[0][0]
    expected = torch.tensor(EXPECTED["logits"], dtype=torch.float64)
    assert (logits.double() - expected).abs().max().item() <= 1e-4


@pytest.mark.parametrize("engine_name", ["pure", "numpy", "torch"])
def test_every_engine_matches_the_independent_forward(engine_name):
    from gpt2.engines import available_engines, load_engine

    if engine_name not in available_engines():
        pytest.skip(f"the {engine_name} engine's dependency is not installed")
    config, params = load_model(FIXTURE)
    engine = load_engine(engine_name, config, params)
    rows = engine.forward(EXPECTED["input_ids"], engine.new_cache(), all_logits=True)
    rows = [[float(v) for v in row] for row in rows]
    worst = max(abs(a - b) for row, exp in zip(rows, EXPECTED["logits"]) for a, b in zip(row, exp))
    assert len(rows) == len(EXPECTED["logits"]) and worst <= 1e-4


def test_convert_to_a_directory_transformers_loads(tmp_path):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from gpt2.cli import main

    assert main(["convert", str(FIXTURE), str(tmp_path / "hf")]) == 0
    model = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "hf").eval()
    with torch.no_grad():
        logits = model(torch.tensor([EXPECTED["input_ids"]])).logits[0]
    assert (logits.double() - torch.tensor(EXPECTED["logits"], dtype=torch.float64)).abs().max().item() <= 1e-4


def test_every_way_to_name_the_checkpoint(copy):
    for target in (copy, copy / "model.ckpt", copy / "model.ckpt.index"):
        config, _ = load_model(target)
        assert config.n_layer == 2
    (copy / "checkpoint").unlink()  # then the one *.index is used
    assert load_model(copy)[0].n_embd == 32


def test_names():
    assert tf_to_ours("model/wte") == "wte.weight"
    assert tf_to_ours("model/wpe") == "wpe.weight"
    assert tf_to_ours("model/h10/ln_2/g") == "h.10.ln_2.weight"
    assert tf_to_ours("model/h0/attn/c_proj/b") == "h.0.attn.c_proj.bias"
    assert tf_to_ours("model/ln_f/b") == "ln_f.bias"
    assert tf_to_ours("global_step") is None


def test_crc32c_known_values():
    assert crc32c(b"") == 0
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(bytes(32)) == 0x8A9136AA  # RFC 3720 test vector
    assert masked_crc32c(b"") == 0xA282EAD8


def test_protobuf_decoding():
    # dtype=1, shape{dim{size:3} dim{size:300}}, shard_id=0, offset=150, size=3600, crc32c=7
    shape = b"\x12\x02\x08\x03" + b"\x12\x03\x08\xac\x02"
    msg = (
        b"\x08\x01"
        + b"\x12"
        + bytes([len(shape)])
        + shape
        + b"\x20\x96\x01"
        + b"\x28\x90\x1c"
        + b"\x35"
        + struct.pack("<I", 7)
    )
    entry = parse_bundle_entry(msg)
    assert (entry.dtype, entry.shape, entry.offset, entry.size, entry.crc32c) == (1, (3, 300), 150, 3600, 7)
    with pytest.raises(TFCheckpointError, match="wire type"):
        list(proto_fields(b"\x0b"))  # start-group: not used by these messages
    with pytest.raises(TFCheckpointError, match="truncated"):
        list(proto_fields(b"\x12\x05ab"))


# --- broken files ------------------------------------------------------------------


def test_not_a_table(copy):
    index = copy / "model.ckpt.index"
    index.write_bytes(index.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(TFCheckpointError, match="magic"):
        load_model(copy)


def test_corrupt_index_block(copy):
    index = copy / "model.ckpt.index"
    raw = bytearray(index.read_bytes())
    raw[20] ^= 0xFF  # inside the first data block
    index.write_bytes(bytes(raw))
    with pytest.raises(TFCheckpointError, match="checksum"):
        load_model(copy)


def test_compressed_block_is_refused(copy):
    index = copy / "model.ckpt.index"
    raw = bytearray(index.read_bytes())
    # Rewrite the first data block's trailer as snappy with a valid checksum.
    table_end = len(raw) - 48
    data_block_size = _first_data_block_size(bytes(raw))
    raw[data_block_size] = 1
    raw[data_block_size + 1 : data_block_size + 5] = struct.pack("<I", masked_crc32c(bytes(raw[: data_block_size + 1])))
    assert data_block_size + 5 <= table_end
    index.write_bytes(bytes(raw))
    with pytest.raises(TFCheckpointError, match="snappy"):
        load_model(copy)


def _first_data_block_size(raw: bytes) -> int:
    from gpt2.weights.tf_checkpoint import _block_entries, _block_handle, _read_block

    footer = raw[-48:]
    _, pos = _block_handle(footer, 0)
    index_handle, _ = _block_handle(footer, pos)
    _, handle = next(_block_entries(_read_block(raw, index_handle)))
    (offset, size), _ = _block_handle(handle, 0)
    assert offset == 0
    return size


def test_truncated_data_shard(copy):
    shard = copy / "model.ckpt.data-00000-of-00001"
    shard.write_bytes(shard.read_bytes()[:-100])
    with pytest.raises(TFCheckpointError, match="truncated"):
        load_model(copy)


def test_corrupt_data_shard(copy):
    shard = copy / "model.ckpt.data-00000-of-00001"
    raw = bytearray(shard.read_bytes())
    raw[1000] ^= 0x01
    shard.write_bytes(bytes(raw))
    with pytest.raises(TFCheckpointError, match="checksum"):
        load_model(copy, verify_crc=True)


def test_missing_data_shard(copy):
    (copy / "model.ckpt.data-00000-of-00001").unlink()
    with pytest.raises(TFCheckpointError, match="data shard"):
        load_model(copy)


def test_without_hparams_the_config_is_inferred_or_explained(copy):
    (copy / "hparams.json").unlink()
    # 32 wide is no GPT-2 size and not a multiple of 64: the head count cannot be guessed.
    with pytest.raises(WeightsError, match="n_head"):
        load_model(copy)


def test_table_reader_on_the_fixture_index():
    table = read_table((FIXTURE / "model.ckpt.index").read_bytes())
    assert b"" in table and b"model/wte" in table
    assert list(table) == sorted(table)


# --- fuzzing: whatever the bytes, only our typed error comes out ----------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from gpt2.weights.tf_checkpoint import TABLE_MAGIC, parse_bundle_header  # noqa: E402


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_protobuf_decoding_fuzz(blob):
    for parse in (parse_bundle_entry, parse_bundle_header):
        try:
            parse(blob)
        except TFCheckpointError:
            pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.integers(0, 250), st.integers(0, 250))
def test_table_fuzz(body, offset, size):
    """Random bytes with a valid footer pointing somewhere: only TFCheckpointError."""
    handle = bytes([offset & 0x7F, size & 0x7F]) * 2
    footer = handle + bytes(40 - len(handle)) + struct.pack("<Q", TABLE_MAGIC)
    try:
        read_table(body + footer)
    except TFCheckpointError:
        pass
