"""OpenAI's TensorFlow checkpoint, read without TensorFlow.

OpenAI released GPT-2 as a TensorFlow "tensor bundle" (format V2):

    checkpoint                        text: model_checkpoint_path: "model.ckpt"
    model.ckpt.index                  a table: tensor name -> where its bytes are
    model.ckpt.data-00000-of-00001    the tensors' raw bytes, back to back
    hparams.json                      {"n_vocab", "n_ctx", "n_embd", "n_head", "n_layer"}

The `.index` file is a LevelDB-format sorted table (TensorFlow's `table_builder`):

    [data block]... [metaindex block] [index block] [footer: 48 bytes]
    footer = metaindex handle, index handle (varint offset + varint size each),
             zero padding to 40 bytes, magic 0xdb4775248b80fb57 (little-endian)
    block  = entries, restart offsets (uint32 each), restart count (uint32),
             then a 5-byte trailer: compression type (0 = none) + masked crc32c
    entry  = varint shared, varint unshared, varint value length,
             key[shared:] (the rest shares a prefix with the previous key), value

The index block maps each data block's last key to that block's handle. In the
data blocks the empty key holds a `BundleHeaderProto` and every other key is a
tensor name whose value is a `BundleEntryProto` (dtype, shape, shard, offset,
size, crc32c): both are protobufs, decoded here by a few lines of wire format.
"""

from __future__ import annotations

import mmap
import os
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..regular_file import is_present, open_regular, read_regular
from ..tensor import DTYPE_SIZES, Tensor
from .errors import TFCheckpointError

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_BYTES = 48
BLOCK_TRAILER_BYTES = 5
# TensorFlow's DataType enum, for the float types we read.
TF_DTYPES = {1: "F32", 2: "F64", 14: "BF16", 19: "F16"}
# Checking every tensor's crc32c in pure Python runs at a few MB/s: by default we
# check when the whole bundle is at most this big, and always check sizes.
CRC_AUTO_LIMIT = 16 * 1024 * 1024
# Files read whole. GPT-2 XL's index is about 40 KB and a `checkpoint` file a few lines:
# the bounds only stop a symlink to /dev/zero (or a huge stray file) from filling memory.
MAX_INDEX_BYTES = 256 * 1024 * 1024
MAX_MARKER_BYTES = 1024 * 1024


# --- crc32c (Castagnoli), as LevelDB and TensorFlow store it ------------------------


def _crc_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE = _crc_table()


def crc32c(data: bytes | memoryview) -> int:
    """CRC-32C of `data`, table-driven (fine for index blocks; slow for gigabytes).

    >>> hex(crc32c(b"123456789"))
    '0xe3069283'
    """
    crc = 0xFFFFFFFF
    table = _CRC_TABLE
    for byte in bytes(data):
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes | memoryview) -> int:
    """The stored form: rotated and offset so a crc of data containing crcs stays strong."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


# --- protobuf wire format: just enough for the bundle's two messages -----------------


def read_varint(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    """Decode a base-128 varint at `pos`; return (value, next position)."""
    value = shift = 0
    while True:
        if pos >= len(buf):
            raise TFCheckpointError("truncated varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise TFCheckpointError("varint longer than 10 bytes")


def proto_fields(buf: bytes | memoryview) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) for each field; varints and fixed ints as int, the rest bytes."""
    pos = 0
    while pos < len(buf):
        key, pos = read_varint(buf, pos)
        field, wire = key >> 3, key & 7
        value: int | bytes
        if wire == 0:
            value, pos = read_varint(buf, pos)
        elif wire == 1:
            value, pos = int.from_bytes(buf[pos : pos + 8], "little"), pos + 8
        elif wire == 2:
            n, pos = read_varint(buf, pos)
            value, pos = bytes(buf[pos : pos + n]), pos + n
        elif wire == 5:
            value, pos = int.from_bytes(buf[pos : pos + 4], "little"), pos + 4
        else:
            raise TFCheckpointError(f"unsupported protobuf wire type {wire}")
        if pos > len(buf):
            raise TFCheckpointError("truncated protobuf message")
        yield field, value


def _signed64(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


@dataclass(frozen=True)
class BundleEntry:
    """Where one tensor lives: `BundleEntryProto` fields 1-7."""

    dtype: int = 0
    shape: tuple[int, ...] = ()
    shard_id: int = 0
    offset: int = 0
    size: int = 0
    crc32c: int | None = None
    sliced: bool = False


def parse_bundle_entry(buf: bytes) -> BundleEntry:
    fields: dict[str, object] = {}
    for field, value in proto_fields(buf):
        if field == 1:
            fields["dtype"] = _int(value)
        elif field == 2:
            fields["shape"] = _parse_shape(_bytes(value))
        elif field in (3, 4, 5):
            fields[("shard_id", "offset", "size")[field - 3]] = _signed64(_int(value))
        elif field == 6:
            fields["crc32c"] = _int(value)
        elif field == 7:
            fields["sliced"] = True
    return BundleEntry(**fields)  # type: ignore[arg-type]


def _int(value: int | bytes) -> int:
    if not isinstance(value, int):
        raise TFCheckpointError("malformed bundle entry: expected an integer field")
    return value


def _bytes(value: int | bytes) -> bytes:
    if not isinstance(value, bytes):
        raise TFCheckpointError("malformed bundle entry: expected a message field")
    return value


def _parse_shape(buf: bytes) -> tuple[int, ...]:
    """TensorShapeProto: repeated Dim dim = 2 (Dim: int64 size = 1); unknown_rank = 3."""
    dims = []
    for field, value in proto_fields(buf):
        if field == 2:
            size = 0
            for f, v in proto_fields(_bytes(value)):
                if f == 1:
                    size = _signed64(_int(v))
            dims.append(size)
        elif field == 3 and value:
            raise TFCheckpointError("tensor of unknown rank")
    return tuple(dims)


def parse_bundle_header(buf: bytes) -> tuple[int, int]:
    """BundleHeaderProto -> (num_shards, endianness: 0 little, 1 big)."""
    num_shards, endianness = 1, 0
    for field, value in proto_fields(buf):
        if field == 1:
            num_shards = _int(value)
        elif field == 2:
            endianness = _int(value)
    return num_shards, endianness


# --- the sorted table --------------------------------------------------------------


def read_table(data: bytes) -> dict[bytes, bytes]:
    """Every key/value of a LevelDB-format table held in `data`, in key order."""
    if len(data) < FOOTER_BYTES:
        raise TFCheckpointError(f"index file too short ({len(data)} bytes) to hold a table footer")
    footer = data[-FOOTER_BYTES:]
    (magic,) = struct.unpack("<Q", footer[-8:])
    if magic != TABLE_MAGIC:
        raise TFCheckpointError(f"bad table magic {magic:#x} (expected {TABLE_MAGIC:#x}): not a tensor bundle index")
    _metaindex, pos = _block_handle(footer, 0)
    index_handle, _ = _block_handle(footer, pos)
    out: dict[bytes, bytes] = {}
    for _last_key, handle in _block_entries(_read_block(data, index_handle)):
        block_handle, _ = _block_handle(handle, 0)
        for key, value in _block_entries(_read_block(data, block_handle)):
            out[key] = value
    return out


def _block_handle(buf: bytes, pos: int) -> tuple[tuple[int, int], int]:
    offset, pos = read_varint(buf, pos)
    size, pos = read_varint(buf, pos)
    return (offset, size), pos


def _read_block(data: bytes, handle: tuple[int, int]) -> bytes:
    offset, size = handle
    end = offset + size + BLOCK_TRAILER_BYTES
    if end > len(data) - FOOTER_BYTES:
        raise TFCheckpointError(f"block at {offset} (+{size}) runs past the end of the index file")
    contents = data[offset : offset + size]
    kind = data[offset + size]
    (stored_crc,) = struct.unpack("<I", data[offset + size + 1 : end])
    if masked_crc32c(data[offset : offset + size + 1]) != stored_crc:
        raise TFCheckpointError(f"block at {offset}: checksum mismatch (corrupt index file)")
    if kind != 0:
        name = {1: "snappy", 2: "zlib"}.get(kind, f"type {kind}")
        raise TFCheckpointError(f"block at {offset} is {name}-compressed; only uncompressed tables are supported")
    return contents


def _block_entries(block: bytes) -> Iterator[tuple[bytes, bytes]]:
    if len(block) < 4:
        raise TFCheckpointError("table block too short")
    (num_restarts,) = struct.unpack("<I", block[-4:])
    limit = len(block) - 4 - 4 * num_restarts
    if limit < 0:
        raise TFCheckpointError("table block has more restart points than bytes")
    pos, key = 0, b""
    while pos < limit:
        shared, pos = read_varint(block, pos)
        unshared, pos = read_varint(block, pos)
        value_len, pos = read_varint(block, pos)
        if shared > len(key) or pos + unshared + value_len > limit:
            raise TFCheckpointError("corrupt table block entry")
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared
        yield key, block[pos : pos + value_len]
        pos += value_len


# --- the bundle --------------------------------------------------------------------


def find_checkpoint_prefix(directory: Path) -> Path:
    """`model.ckpt` from the `checkpoint` file, else the one `*.index` in `directory`.

    The `checkpoint` file may only point inside `directory`: a directory someone hands
    you must not make us read files elsewhere. (A checkpoint written by TensorFlow 1's
    Saver names its absolute path; moved elsewhere, the same name in `directory` is used.)
    To load a prefix outside, pass the prefix itself (`.../model.ckpt`)."""
    marker = directory / "checkpoint"
    if is_present(marker):
        try:
            text = read_regular(marker, MAX_MARKER_BYTES).decode("utf-8", "replace")
        except OSError as exc:
            raise TFCheckpointError(f"cannot read {marker}: {exc.strerror or exc}") from None
        m = re.search(r'^model_checkpoint_path:\s*"([^"]+)"', text, re.M)
        if m:
            return _confined_prefix(directory, m.group(1), marker)
    indexes = sorted(directory.glob("*.index"))
    if len(indexes) != 1:
        raise TFCheckpointError(f"{directory}: expected one *.index file or a 'checkpoint' file, found {len(indexes)}")
    return indexes[0].with_suffix("")


def _confined_prefix(directory: Path, named: str, marker: Path) -> Path:
    path = Path(named)
    candidate = path if path.is_absolute() else directory / path
    if Path(os.path.realpath(candidate)).is_relative_to(os.path.realpath(directory)):
        return candidate
    local = directory / path.name
    if path.name not in ("", ".", "..") and is_present(f"{local}.index"):
        return local
    raise TFCheckpointError(
        f"{marker} points at {named!r}, outside {directory}; a checkpoint directory is only read "
        "inside itself: pass that prefix (the path before .index) explicitly to load it"
    )


def read_bundle(prefix: str | Path, verify_crc: bool | None = None) -> dict[str, tuple[BundleEntry, memoryview]]:
    """Every numeric tensor of the bundle at `prefix` (e.g. `dir/model.ckpt`) as
    (entry, bytes view into the memory-mapped shard). String tensors are skipped.
    Every error names the file it is about."""
    prefix = Path(prefix)
    index_path = Path(f"{prefix}.index")
    try:
        raw = read_regular(index_path, MAX_INDEX_BYTES)  # a FIFO or /dev/zero is refused, not waited on
    except OSError as exc:
        raise TFCheckpointError(f"cannot read {index_path}: {exc.strerror or exc}") from None
    try:
        table = read_table(raw)
        if b"" not in table:
            raise TFCheckpointError("no bundle header (empty key)")
        num_shards, endianness = parse_bundle_header(table.pop(b""))
        if endianness != 0:
            raise TFCheckpointError("big-endian bundles are not supported")
        entries = {}
        for key, value in table.items():
            name = key.decode("utf-8", "replace")
            try:
                entries[name] = parse_bundle_entry(value)
            except TFCheckpointError as exc:
                raise TFCheckpointError(f"entry {name!r}: {exc}") from None
    except TFCheckpointError as exc:
        raise TFCheckpointError(f"{index_path}: {exc}") from None
    numeric = {name: e for name, e in entries.items() if e.dtype in TF_DTYPES}
    shards = _map_shards(prefix, num_shards, {e.shard_id for e in numeric.values()})
    if verify_crc is None:
        verify_crc = sum(e.size for e in numeric.values()) <= CRC_AUTO_LIMIT
    out = {}
    for name, e in numeric.items():
        path, shard = shards[e.shard_id]
        try:
            out[name] = (e, _tensor_bytes(name, e, shard, verify_crc))
        except TFCheckpointError as exc:
            raise TFCheckpointError(f"{path}: {exc}") from None
    return out


def _shard_path(prefix: Path, shard: int, num_shards: int) -> Path:
    return Path(f"{prefix}.data-{shard:05d}-of-{num_shards:05d}")


def _map_shards(prefix: Path, num_shards: int, wanted: set[int]) -> dict[int, tuple[Path, memoryview]]:
    shards = {}
    index_path = f"{prefix}.index"
    for shard in sorted(wanted):
        if not 0 <= shard < num_shards:
            raise TFCheckpointError(f"{index_path}: shard {shard} out of range (bundle has {num_shards})")
        path = _shard_path(prefix, shard, num_shards)
        try:
            with open_regular(path) as f:  # a FIFO or a link to /dev/zero is refused
                size = f.seek(0, 2)
                shards[shard] = (
                    path,
                    memoryview(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)) if size else memoryview(b""),
                )
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise TFCheckpointError(f"cannot read data shard {path}: {reason}") from None
    return shards


def _tensor_bytes(name: str, e: BundleEntry, shard: memoryview, verify_crc: bool) -> memoryview:
    if e.sliced:
        raise TFCheckpointError(f"tensor {name!r} is stored in slices (partitioned); not supported")
    if any(d < 0 for d in e.shape):
        raise TFCheckpointError(f"tensor {name!r} has shape {list(e.shape)}")
    expected = DTYPE_SIZES[TF_DTYPES[e.dtype]]
    for d in e.shape:
        expected *= d
    if e.size != expected:
        raise TFCheckpointError(
            f"tensor {name!r}: {TF_DTYPES[e.dtype]}{list(e.shape)} needs {expected} bytes, index says {e.size}"
        )
    if e.offset < 0 or e.offset + e.size > len(shard):
        raise TFCheckpointError(
            f"tensor {name!r} lies at bytes {e.offset}..{e.offset + e.size} of a {len(shard)}-byte data shard "
            "(truncated file?)"
        )
    data = shard[e.offset : e.offset + e.size]
    if verify_crc and e.crc32c is not None and masked_crc32c(data) != e.crc32c:
        raise TFCheckpointError(f"tensor {name!r}: checksum mismatch (corrupt data shard)")
    return data


def read_tf_checkpoint(prefix: str | Path, verify_crc: bool | None = None) -> dict[str, Tensor]:
    """All numeric tensors of a bundle, under their TensorFlow names, as `Tensor`s."""
    return {
        name: Tensor(e.shape, TF_DTYPES[e.dtype], data) for name, (e, data) in read_bundle(prefix, verify_crc).items()
    }
