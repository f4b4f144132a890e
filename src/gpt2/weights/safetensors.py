"""The safetensors format, read and written with the standard library alone.

A `.safetensors` file is three parts:

    [8 bytes]  N, the header length, unsigned little-endian
    [N bytes]  a UTF-8 JSON object: {"name": {"dtype": "F32", "shape": [2, 3],
               "data_offsets": [begin, end]}, ..., "__metadata__": {"str": "str"}}
    [rest]     the tensors' bytes, little-endian, C order; offsets count from here

Reading memory-maps the file and hands out `Tensor`s whose data is a
`memoryview` into the map: nothing is copied until an engine converts it. Every
promise of the format is checked before a single tensor is returned, and any
violation is a :class:`SafetensorsError` naming what is wrong.

>>> import tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "t.safetensors")
>>> write_safetensors(path, {"x": Tensor.from_floats([1.0, 2.0], (2,))})
>>> tensors, metadata = read_safetensors(path)
>>> tensors["x"].shape, list(tensors["x"].to_array())
((2,), [1.0, 2.0])
"""

from __future__ import annotations

import json
import mmap
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ..atomic import atomic_writer
from ..config import show_value
from ..regular_file import open_regular
from ..tensor import DTYPE_SIZES, Tensor
from .errors import SafetensorsError

MAX_HEADER_BYTES = 100 * 1024 * 1024  # the reference implementation's bound
MAX_RANK = 32

# Every dtype the format defines, with its size; we read the float ones GPT-2 uses.
KNOWN_DTYPES = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E5M2": 1,
    "F8_E4M3": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
}
READABLE_DTYPES = DTYPE_SIZES  # F64, F32, F16, BF16

Progress = Callable[[int, int], None]  # (bytes done, bytes total)


@dataclass(frozen=True)
class TensorInfo:
    """One header entry: where a tensor's bytes lie in the data area."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int


@dataclass(frozen=True)
class Header:
    entries: list[TensorInfo]  # in header order
    metadata: dict[str, str]
    data_start: int  # 8 + header length


# --- reading ---------------------------------------------------------------------


def read_header(path: str | Path) -> Header:
    """Parse and validate the header of `path` without touching the tensor data."""
    path = Path(path)
    try:
        with open_regular(path) as f:  # a FIFO or /dev/zero is refused, not waited on or read forever
            file_size = _file_size(f)
            raw = _read_header_bytes(f, file_size)
    except OSError as exc:
        raise SafetensorsError(f"cannot read {path}: {exc.strerror or exc}") from None
    return parse_header(raw, file_size, str(path))


def read_safetensors(path: str | Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    """All tensors of `path` (zero-copy views into a read-only memory map) and its metadata."""
    header = read_header(path)
    tensors: dict[str, Tensor] = {}
    if not header.entries:
        return tensors, header.metadata
    try:
        with open_regular(path) as f:
            # The map outlives the file object; the memoryviews keep it alive.
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError) as exc:
        raise SafetensorsError(f"cannot memory-map {path}: {exc}") from None
    view = memoryview(mm)
    if len(view) != header.data_start + max(e.end for e in header.entries):
        raise SafetensorsError(f"{path}: the file changed size while it was being read")
    start = header.data_start
    for e in header.entries:
        tensors[e.name] = Tensor(e.shape, e.dtype, view[start + e.begin : start + e.end])
    return tensors, header.metadata


def parse_header(raw: bytes, file_size: int, where: str = "safetensors file") -> Header:
    """Validate header bytes `raw` of a file of `file_size` bytes; see the module docstring."""
    data_size = file_size - 8 - len(raw)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SafetensorsError(f"{where}: header is not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        obj = json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except json.JSONDecodeError as exc:
        raise SafetensorsError(f"{where}: header is not valid JSON ({exc.msg} at byte {exc.pos})") from None
    except _DuplicateKey as exc:
        raise SafetensorsError(f"{where}: header names {show_value(exc.args[0])} twice") from None
    except RecursionError:
        raise SafetensorsError(f"{where}: header nests its JSON too deeply to be a safetensors header") from None
    except ValueError as exc:  # e.g. an integer past Python's 4300-digit limit for int()
        raise SafetensorsError(f"{where}: header is not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise SafetensorsError(f"{where}: header is not a JSON object")
    metadata = _parse_metadata(obj.pop("__metadata__", None), where)
    entries = [_parse_entry(name, spec, data_size, where) for name, spec in obj.items()]
    _check_layout(entries, data_size, where)
    return Header(entries, metadata, 8 + len(raw))


def _file_size(f) -> int:
    f.seek(0, 2)
    size = f.tell()
    f.seek(0)
    return size


def _read_header_bytes(f, file_size: int) -> bytes:
    if file_size < 8:
        raise SafetensorsError(
            f"{f.name}: truncated: {file_size} bytes, but a safetensors file starts with an 8-byte header length"
        )
    (n,) = struct.unpack("<Q", f.read(8))
    if n > MAX_HEADER_BYTES:
        raise SafetensorsError(f"{f.name}: header length {n} exceeds the {MAX_HEADER_BYTES}-byte limit")
    if n > file_size - 8:
        raise SafetensorsError(
            f"{f.name}: header length {n} is larger than the {file_size - 8} bytes after it (truncated file?)"
        )
    if n < 2:
        raise SafetensorsError(f"{f.name}: header length {n} is too short for a JSON object")
    return f.read(n)


class _DuplicateKey(Exception):
    pass


def _no_duplicate_keys(pairs: list[tuple[str, object]]) -> dict:
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _parse_metadata(meta: object, where: str) -> dict[str, str]:
    if meta is None:
        return {}
    if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise SafetensorsError(f"{where}: __metadata__ must map strings to strings")
    return meta


def _is_count(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def _parse_entry(spec_name: str, spec: object, data_size: int, where: str) -> TensorInfo:
    if not isinstance(spec, dict) or set(spec) != {"dtype", "shape", "data_offsets"}:
        raise SafetensorsError(
            f"{where}: tensor {show_value(spec_name)} must have exactly the keys dtype, shape and data_offsets"
        )
    dtype, shape, offsets = spec["dtype"], spec["shape"], spec["data_offsets"]
    name = show_value(spec_name)
    if not isinstance(dtype, str) or dtype not in KNOWN_DTYPES:  # a list or object is not hashable: check first
        raise SafetensorsError(f"{where}: tensor {name} has unknown dtype {show_value(dtype)}")
    if dtype not in READABLE_DTYPES:
        raise SafetensorsError(
            f"{where}: tensor {name} has dtype {dtype}; GPT-2 weights must be one of {', '.join(READABLE_DTYPES)}"
        )
    if not isinstance(shape, list) or len(shape) > MAX_RANK or not all(_is_count(s) for s in shape):
        raise SafetensorsError(
            f"{where}: tensor {name} has shape {show_value(shape)}; "
            f"expected a list of at most {MAX_RANK} non-negative integers"
        )
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_count(o) for o in offsets)):
        raise SafetensorsError(f"{where}: tensor {name} has data_offsets {show_value(offsets)}; expected [begin, end]")
    begin, end = offsets
    if begin > end:
        raise SafetensorsError(f"{where}: tensor {name} has data_offsets {show_value(offsets)} with begin > end")
    if end > data_size:
        raise SafetensorsError(
            f"{where}: tensor {name} ends at byte {show_value(end)} of a {data_size}-byte data area (truncated file?)"
        )
    # Python integers do not overflow, but a forged shape can still claim more bytes
    # than any file holds; say so instead of computing a meaningless product.
    nbytes = KNOWN_DTYPES[dtype] if 0 not in shape else 0
    for s in shape:
        nbytes *= s
        if nbytes > data_size:
            raise SafetensorsError(
                f"{where}: tensor {name} with shape {show_value(shape)} of {dtype} would need more bytes "
                f"than the file's {data_size}-byte data area"
            )
    if nbytes != end - begin:
        raise SafetensorsError(
            f"{where}: tensor {name}: {dtype}{shape} needs {nbytes} bytes but data_offsets span {end - begin}"
        )
    return TensorInfo(spec_name, dtype, tuple(shape), begin, end)


def _check_layout(entries: list[TensorInfo], data_size: int, where: str) -> None:
    """Tensors must tile the data area exactly: from 0, no gaps, no overlaps, to the end."""
    position = 0
    for e in sorted(entries, key=lambda e: (e.begin, e.end)):
        if e.begin < position:
            raise SafetensorsError(f"{where}: tensor {e.name!r} overlaps the tensor before it (offset {e.begin})")
        if e.begin > position:
            raise SafetensorsError(f"{where}: {e.begin - position} unclaimed bytes before tensor {e.name!r}")
        position = e.end
    if position != data_size:
        raise SafetensorsError(
            f"{where}: {data_size - position} trailing bytes after the last tensor "
            f"(data ends at {position} of {data_size})"
        )


# --- writing ---------------------------------------------------------------------


def encode_header(tensors: Mapping[str, Tensor], metadata: Mapping[str, str] | None = None) -> bytes:
    """The 8-byte length plus the JSON header (padded with spaces to a multiple of 8,
    so the data area starts aligned), tensors laid out in the mapping's order."""
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    offset = 0
    for name, t in tensors.items():
        header[name] = {"dtype": t.dtype, "shape": list(t.shape), "data_offsets": [offset, offset + t.nbytes]}
        offset += t.nbytes
    raw = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    raw += b" " * (-(8 + len(raw)) % 8)
    return struct.pack("<Q", len(raw)) + raw


def write_safetensors(
    path: str | Path,
    tensors: Mapping[str, Tensor],
    metadata: Mapping[str, str] | None = None,
    progress: Progress | None = None,
) -> None:
    """Write `tensors` to `path` atomically (a temporary file, fsync, then rename)."""
    if any(name == "__metadata__" for name in tensors):
        raise SafetensorsError("'__metadata__' cannot be a tensor name")
    total = sum(t.nbytes for t in tensors.values())
    done = 0
    with atomic_writer(path) as f:
        f.write(encode_header(tensors, metadata))
        for t in tensors.values():
            f.write(memoryview(t.data).cast("B"))
            done += t.nbytes
            if progress is not None:
                progress(done, total)
