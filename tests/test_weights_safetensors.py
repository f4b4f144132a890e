"""The standard-library safetensors reader and writer: round trips, zero copy,
compatibility with the reference `safetensors` package, and a typed error for
every broken promise of the format."""

import json
import mmap
import os
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpt2.tensor import Tensor
from gpt2.weights import SafetensorsError, read_safetensors, write_safetensors
from gpt2.weights.safetensors import encode_header, read_header


def raw_file(path, header, data=b"", *, length=None):
    """Write a safetensors file by hand: any header, any data, any declared length."""
    blob = header if isinstance(header, bytes) else json.dumps(header).encode()
    n = len(blob) if length is None else length
    path.write_bytes(struct.pack("<Q", n) + blob + data)
    return path


def f32(n):
    return {"dtype": "F32", "shape": [n], "data_offsets": [0, 4 * n]}


# --- round trips -------------------------------------------------------------------


def test_round_trip_every_dtype_and_metadata(tmp_path):
    tensors = {
        "a": Tensor.from_floats([1.0, -2.5, 3.25, 0.0], (2, 2)),
        "b": Tensor.from_floats([1.0, 2.0], (2,), dtype="F64"),
        "c": Tensor((3,), "F16", struct.pack("<3e", 0.5, -1.0, 65504.0)),
        "d": Tensor((2,), "BF16", bytes([0x80, 0x3F, 0x00, 0xC0])),  # 1.0, -2.0
        "empty": Tensor((0, 4), "F32", b""),
    }
    path = tmp_path / "x.safetensors"
    write_safetensors(path, tensors, {"format": "pt", "note": "hi"})
    got, meta = read_safetensors(path)
    assert meta == {"format": "pt", "note": "hi"}
    assert list(got) == list(tensors)
    for name, t in tensors.items():
        assert got[name].shape == t.shape and got[name].dtype == t.dtype
        assert bytes(got[name].data) == bytes(memoryview(t.data).cast("B"))
    assert list(got["c"].to_array()) == [0.5, -1.0, 65504.0]
    assert list(got["d"].to_array()) == [1.0, -2.0]


def test_data_is_a_zero_copy_view_of_a_memory_map(tmp_path):
    path = tmp_path / "x.safetensors"
    write_safetensors(path, {"w": Tensor.from_floats(range(1000), (10, 100))})
    tensors, _ = read_safetensors(path)
    view = tensors["w"].data
    assert isinstance(view, memoryview) and isinstance(view.obj, mmap.mmap)


def test_header_is_padded_to_eight_bytes_with_spaces():
    for n in range(1, 9):
        head = encode_header({"x" * n: Tensor.from_floats([1.0], (1,))})
        (length,) = struct.unpack("<Q", head[:8])
        assert length == len(head) - 8 and len(head) % 8 == 0
        assert head.rstrip(b" ").endswith(b"}")


def test_reference_library_reads_ours_and_we_read_its(tmp_path):
    torch = pytest.importorskip("torch")
    st_torch = pytest.importorskip("safetensors.torch")
    ours = tmp_path / "ours.safetensors"
    write_safetensors(
        ours, {"a": Tensor.from_floats([1.0, 2.0, 3.0], (3,)), "b": Tensor((1,), "BF16", b"\x80\x3f")}, {"format": "pt"}
    )
    loaded = st_torch.load_file(ours)
    assert loaded["a"].tolist() == [1.0, 2.0, 3.0] and loaded["b"].dtype == torch.bfloat16
    theirs = tmp_path / "theirs.safetensors"
    ref = {"x": torch.randn(4, 5), "y": torch.randn(3).to(torch.bfloat16), "z": torch.randn(2, 2).half()}
    st_torch.save_file(ref, theirs)
    got, _ = read_safetensors(theirs)
    for name, t in ref.items():
        assert got[name].shape == tuple(t.shape)
        assert list(got[name].to_array()) == pytest.approx(t.float().flatten().tolist())


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["F32", "F64", "F16", "BF16"]), st.lists(st.integers(0, 4), max_size=3)), max_size=5
    )
)
def test_round_trip_property(tmp_path_factory, specs):
    from gpt2.tensor import DTYPE_SIZES

    tensors = {}
    for i, (dtype, shape) in enumerate(specs):
        n = 1
        for s in shape:
            n *= s
        tensors[f"t{i}"] = Tensor(tuple(shape), dtype, bytes((i + j) % 251 for j in range(n * DTYPE_SIZES[dtype])))
    path = tmp_path_factory.mktemp("prop") / "p.safetensors"
    write_safetensors(path, tensors)
    got, _ = read_safetensors(path)
    assert {k: (v.shape, v.dtype, bytes(v.data)) for k, v in got.items()} == {
        k: (v.shape, v.dtype, bytes(v.data)) for k, v in tensors.items()
    }


def test_failed_write_leaves_no_file_behind(tmp_path):
    path = tmp_path / "x.safetensors"

    def boom(done, total):
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_safetensors(path, {"a": Tensor.from_floats([1.0], (1,))}, progress=boom)
    assert list(tmp_path.iterdir()) == []


# --- every broken promise is a typed error -------------------------------------------


def test_file_shorter_than_the_length_field(tmp_path):
    (tmp_path / "x").write_bytes(b"\x01\x02")
    with pytest.raises(SafetensorsError, match="truncated"):
        read_safetensors(tmp_path / "x")


def test_truncated_data(tmp_path):
    path = write_ok(tmp_path)
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(SafetensorsError, match="truncated"):
        read_safetensors(path)


def test_trailing_bytes(tmp_path):
    path = write_ok(tmp_path)
    path.write_bytes(path.read_bytes() + b"\0" * 4)
    with pytest.raises(SafetensorsError, match="trailing bytes"):
        read_safetensors(path)


def test_header_length_larger_than_file(tmp_path):
    path = raw_file(tmp_path / "x", {"a": f32(1)}, b"\0" * 4, length=10_000)
    with pytest.raises(SafetensorsError, match="larger than"):
        read_safetensors(path)


def test_header_length_over_the_limit(tmp_path):
    path = raw_file(tmp_path / "x", b"{}", length=2**40)
    with pytest.raises(SafetensorsError, match="exceeds"):
        read_safetensors(path)


@pytest.mark.parametrize(
    "blob, message",
    [
        (b'{"a": \xff}', "UTF-8"),
        (b'{"a": ', "not valid JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"__metadata__": {"k": 1}}', "__metadata__"),
        (
            b'{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, '
            b'"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}',
            "twice",
        ),
    ],
)
def test_malformed_header(tmp_path, blob, message):
    path = raw_file(tmp_path / "x", blob, b"\0" * 4)
    with pytest.raises(SafetensorsError, match=message):
        read_safetensors(path)


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"dtype": "F33", "shape": [1], "data_offsets": [0, 4]}, "unknown dtype"),
        ({"dtype": "I32", "shape": [1], "data_offsets": [0, 4]}, "dtype I32"),
        ({"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}, "non-negative"),
        ({"dtype": "F32", "shape": [1.5], "data_offsets": [0, 4]}, "non-negative"),
        ({"dtype": "F32", "shape": [True], "data_offsets": [0, 4]}, "non-negative"),
        ({"dtype": "F32", "shape": [2**62, 2**62, 2**62], "data_offsets": [0, 4]}, "more bytes"),
        ({"dtype": "F32", "shape": [3, 0], "data_offsets": [0, 4]}, "needs 0 bytes"),
        ({"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}, "begin > end"),
        ({"dtype": "F32", "shape": [1], "data_offsets": [0]}, "data_offsets"),
        ({"dtype": "F32", "shape": [1]}, "exactly the keys"),
    ],
)
def test_bad_tensor_entry(tmp_path, spec, message):
    path = raw_file(tmp_path / "x", {"a": spec}, b"\0" * 4)
    with pytest.raises(SafetensorsError, match=message):
        read_safetensors(path)


def test_overlapping_offsets(tmp_path):
    header = {
        "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
        "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
    }
    path = raw_file(tmp_path / "x", header, b"\0" * 12)
    with pytest.raises(SafetensorsError, match="overlaps"):
        read_safetensors(path)


def test_gap_between_tensors(tmp_path):
    header = {
        "a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
        "b": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]},
    }
    path = raw_file(tmp_path / "x", header, b"\0" * 12)
    with pytest.raises(SafetensorsError, match="unclaimed"):
        read_safetensors(path)


def test_offsets_past_the_data_area(tmp_path):
    path = raw_file(tmp_path / "x", {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 4)
    with pytest.raises(SafetensorsError, match="truncated"):
        read_safetensors(path)


def test_header_only_reading_does_not_need_the_data(tmp_path):
    path = write_ok(tmp_path)
    header = read_header(path)
    assert [(e.name, e.shape) for e in header.entries] == [("w", (2, 3))]
    assert header.data_start % 8 == 0


def test_missing_file(tmp_path):
    with pytest.raises(SafetensorsError, match="cannot read"):
        read_safetensors(tmp_path / "nope.safetensors")


def write_ok(tmp_path):
    path = tmp_path / "ok.safetensors"
    write_safetensors(path, {"w": Tensor.from_floats([0.5] * 6, (2, 3))})
    assert os.path.getsize(path) > 0
    return path


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=80),
        st.recursive(
            st.none() | st.booleans() | st.integers(-3, 2**70) | st.text(max_size=4),
            lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=4), kids, max_size=3),
            max_leaves=8,
        ).map(lambda v: json.dumps({"t": v}).encode()),
    ),
    st.binary(max_size=16),
)
def test_header_fuzz(tmp_path_factory, header, data):
    """Whatever the header says, reading gives tensors or a SafetensorsError, nothing else."""
    path = raw_file(tmp_path_factory.mktemp("fuzz") / "f", header, data)
    try:
        read_safetensors(path)
    except SafetensorsError:
        pass
