"""The .aisimg chunked image format: its header, and reading and checking it.

What it does: describes an image (`ImageHeader`: block size, filesystem size
and UUID, the chunk table with each chunk's block ranges and sha256, and the
in-use zero ranges) and reads `.aisimg` files (`ais.stream.pack` writes them).
Used blocks holding data travel in chunks of about 1 MiB, each compressed on
its own; used blocks that are all zeros are only listed, so a writer zeroes
exactly them and leaves free blocks alone (a target may hold garbage; "free"
and "zero and in use" differ). See docs/format.md for the byte layout.

What it reads: `.aisimg` files, or header JSON from the control channel.

What it fails on: any malformed or hostile `.aisimg` (`ImageFormatError`, a
`StreamError`): bad magic, unknown version, a header too long or nested too
deeply, regions beyond the filesystem, overlapping regions, chunk sizes over
the limits, chunk data outside the file, a chunk whose hash or decompressed
size does not match. A header that arrives over the wire, or a chunk that
fails its check, is a failure of the world (exit 1); a local file named by the
caller whose header is not sound raises `ImageFileError` (also `BadInput`,
exit 2: the input is wrong, nothing is written). Header checks run before
anything is written; a chunk is checked before any of its bytes are.

What it returns: `ImageHeader` (frozen; `to_json`/`from_json`), chunk bytes
as stored, and decoded chunks as `(block_offset, data)` pieces.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import zstandard

from ais.errors import BadInput, StreamError

MAGIC = b"AISIMG\r\n"  # \r\n catches text-mode mangling, as PNG's magic does
FORMAT_VERSION = 1
PREAMBLE = struct.Struct("<8sQ")  # magic, header length in bytes

MAX_CHUNK_RAW = 8 << 20  # hard limit a reader accepts; bounds memory per chunk
MAX_HEADER_BYTES = 64 << 20
MAX_FS_BYTES = 1 << 46  # 64 TiB
MAX_CHUNKS = 1 << 24


class ImageFormatError(StreamError):
    """A .aisimg header or chunk is malformed, hostile or corrupt (exit 1)."""


class ImageFileError(ImageFormatError, BadInput):
    """A local .aisimg file named by the caller is not a sound image (its header): bad input, exit 2.
    Still an ImageFormatError, so callers that skip malformed files go on doing so."""


Range = tuple[int, int]  # (first block, block count)


@dataclass(frozen=True)
class Chunk:
    """One independently compressed piece of the image."""

    offset: int  # from the start of the chunk data area (after the header)
    stored_length: int
    raw_length: int
    sha256: str  # of the stored (compressed) bytes: checked before decompressing
    ranges: tuple[Range, ...]  # where the decompressed bytes go, in order

    def to_obj(self) -> dict:
        return {
            "offset": self.offset,
            "stored_length": self.stored_length,
            "raw_length": self.raw_length,
            "sha256": self.sha256,
            "ranges": [list(r) for r in self.ranges],
        }


@dataclass(frozen=True)
class ImageHeader:
    """Everything a writer needs to place chunks, and to trust them."""

    version: int
    block_size: int
    fs_blocks: int
    fs_uuid: str
    fs_label: str
    image_id: str
    packages: tuple[str, ...]
    chunks: tuple[Chunk, ...]
    zero_ranges: tuple[Range, ...]
    totals: dict = field(default_factory=dict, compare=False)

    @property
    def fs_bytes(self) -> int:
        return self.fs_blocks * self.block_size

    @property
    def stored_bytes(self) -> int:
        return sum(c.stored_length for c in self.chunks)

    def to_obj(self) -> dict:
        return {
            "format": "aisimg",
            "version": self.version,
            "block_size": self.block_size,
            "fs_blocks": self.fs_blocks,
            "fs_uuid": self.fs_uuid,
            "fs_label": self.fs_label,
            "image_id": self.image_id,
            "packages": list(self.packages),
            "chunks": [c.to_obj() for c in self.chunks],
            "zero_ranges": [list(r) for r in self.zero_ranges],
            "totals": dict(self.totals),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_obj(), separators=(",", ":"), sort_keys=True)

    def sha256(self) -> str:
        """Identity of the header as serialised: what a control channel pins."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()

    @classmethod
    def from_json(cls, text: str | bytes) -> "ImageHeader":
        """Parse and validate a header; raise ImageFormatError if it is not sound."""
        try:
            obj = json.loads(text)
        except (ValueError, UnicodeDecodeError) as err:
            raise ImageFormatError(f"image header is not valid JSON: {err}") from err
        except RecursionError as err:  # [[[[...: the parser's stack, not a bug of ours
            raise ImageFormatError("image header is not a sound header: JSON nested too deeply") from err
        return header_from_obj(obj)


# ---------------------------------------------------------------- validation


def _need(cond: bool, message: str) -> None:
    if not cond:
        raise ImageFormatError(f"bad image header: {message}")


def _int(obj: dict, key: str, lo: int, hi: int) -> int:
    value = obj.get(key)
    _need(type(value) is int, f"{key} must be an integer")
    _need(lo <= value <= hi, f"{key}={value} outside [{lo}, {hi}]")
    return value


def _str(obj: dict, key: str, limit: int = 4096) -> str:
    value = obj.get(key)
    _need(isinstance(value, str) and len(value) <= limit, f"{key} must be a string")
    return value


def _ranges(raw: object, fs_blocks: int, what: str) -> tuple[Range, ...]:
    _need(isinstance(raw, list), f"{what} ranges must be a list")
    out = []
    for item in raw:
        _need(
            isinstance(item, list) and len(item) == 2 and all(type(x) is int for x in item),
            f"{what} range {item!r} is not [first, count]",
        )
        first, count = item
        _need(count > 0 and first >= 0, f"{what} range {item!r} is empty or negative")
        _need(first + count <= fs_blocks, f"{what} range {item!r} goes beyond the filesystem ({fs_blocks} blocks)")
        out.append((first, count))
    return tuple(out)


def _chunk(raw: object, index: int, fs_blocks: int, block_size: int) -> Chunk:
    _need(isinstance(raw, dict), f"chunk {index} is not an object")
    ranges = _ranges(raw.get("ranges"), fs_blocks, f"chunk {index}")
    raw_length = _int(raw, "raw_length", 1, MAX_CHUNK_RAW)
    _need(
        raw_length == sum(n for _, n in ranges) * block_size,
        f"chunk {index} raw_length {raw_length} does not match its ranges",
    )
    stored = _int(raw, "stored_length", 1, zstd_bound(raw_length))
    sha = _str(raw, "sha256", 64)
    _need(re.fullmatch(r"[0-9a-f]{64}", sha) is not None, f"chunk {index} sha256 is not 64 hex digits")
    offset = _int(raw, "offset", 0, MAX_FS_BYTES)
    return Chunk(offset, stored, raw_length, sha, ranges)


def zstd_bound(raw_length: int) -> int:
    """Largest zstd output for raw_length input (ZSTD_COMPRESSBOUND) plus frame slack."""
    small = ((128 << 10) - raw_length) >> 11 if raw_length < (128 << 10) else 0
    return raw_length + (raw_length >> 8) + small + 64


def _check_disjoint(header_ranges: list[tuple[Range, str]]) -> None:
    """Every block is filled at most once: overlapping regions are hostile."""
    header_ranges.sort()
    end = -1
    for (first, count), where in header_ranges:
        _need(first >= end, f"{where} range [{first}, {count}] overlaps another region")
        end = first + count


def _check_chunk_layout(chunks: tuple[Chunk, ...]) -> None:
    """Chunk data must not overlap in the file (and is laid out in order)."""
    expected = 0
    for i, c in enumerate(chunks):
        _need(c.offset == expected, f"chunk {i} offset {c.offset} is not {expected} (chunks are packed in order)")
        expected += c.stored_length


def header_from_obj(obj: object) -> ImageHeader:
    """Validate a parsed header object and build the ImageHeader."""
    _need(isinstance(obj, dict), "top level is not an object")
    _need(obj.get("format") == "aisimg", "format is not 'aisimg'")
    version = obj.get("version")
    _need(version == FORMAT_VERSION, f"unknown format version {version!r} (this reader knows {FORMAT_VERSION})")
    block_size = _int(obj, "block_size", 1024, 65536)
    _need(block_size & (block_size - 1) == 0, f"block_size {block_size} is not a power of two")
    fs_blocks = _int(obj, "fs_blocks", 1, MAX_FS_BYTES // block_size)
    raw_chunks = obj.get("chunks")
    _need(isinstance(raw_chunks, list) and len(raw_chunks) <= MAX_CHUNKS, "chunks must be a list of bounded size")
    chunks = tuple(_chunk(c, i, fs_blocks, block_size) for i, c in enumerate(raw_chunks))
    zero_ranges = _ranges(obj.get("zero_ranges"), fs_blocks, "zero")
    regions = [(r, f"chunk {i}") for i, c in enumerate(chunks) for r in c.ranges]
    regions += [(r, "zero") for r in zero_ranges]
    _check_disjoint(regions)
    _check_chunk_layout(chunks)
    packages = obj.get("packages")
    _need(isinstance(packages, list) and all(isinstance(p, str) for p in packages), "packages must be a list of strings")
    totals = obj.get("totals", {})
    _need(isinstance(totals, dict), "totals must be an object")
    return ImageHeader(
        version=version,
        block_size=block_size,
        fs_blocks=fs_blocks,
        fs_uuid=_str(obj, "fs_uuid", 64),
        fs_label=_str(obj, "fs_label", 64),
        image_id=_str(obj, "image_id", 256),
        packages=tuple(packages),
        chunks=chunks,
        zero_ranges=zero_ranges,
        totals=totals,
    )


# ------------------------------------------------------------------ reading


def read_header_and_data_offset(path: Path) -> tuple[ImageHeader, int]:
    """Read and validate the header; also return where chunk data starts.

    A file that is not a sound .aisimg (magic, header length, JSON, fields, truncation) raises
    `ImageFileError` (bad input, exit 2); a file that cannot be read raises `ImageFormatError`."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            preamble = f.read(PREAMBLE.size)
            if len(preamble) != PREAMBLE.size:
                raise ImageFileError(f"{path}: too short to be an .aisimg file")
            magic, length = PREAMBLE.unpack(preamble)
            if magic != MAGIC:
                raise ImageFileError(f"{path}: not an .aisimg file (bad magic)")
            if length > MAX_HEADER_BYTES:
                raise ImageFileError(f"{path}: header length {length} exceeds {MAX_HEADER_BYTES}")
            text = f.read(length)
            size = os.fstat(f.fileno()).st_size
    except OSError as err:
        raise ImageFormatError(f"{path}: cannot read image: {err}") from err
    if len(text) != length:
        raise ImageFileError(f"{path}: header truncated ({len(text)} of {length} bytes)")
    try:
        header = ImageHeader.from_json(text)
    except ImageFormatError as err:
        raise ImageFileError(f"{path}: {err}") from err
    data_offset = PREAMBLE.size + length
    if data_offset + header.stored_bytes > size:
        raise ImageFileError(f"{path}: truncated: chunk data ends beyond the file ({size} bytes)")
    return header, data_offset


def read_header(path: Path) -> ImageHeader:
    """The validated header of an .aisimg file."""
    return read_header_and_data_offset(path)[0]


def data_offset_of(path: Path) -> int:
    with open(path, "rb") as f:
        return PREAMBLE.size + PREAMBLE.unpack(f.read(PREAMBLE.size))[1]


def read_chunk(path: Path, header: ImageHeader, index: int, *, data_offset: int | None = None) -> bytes:
    """The stored (compressed) bytes of chunk `index`, unverified."""
    if not 0 <= index < len(header.chunks):
        raise ImageFormatError(f"chunk index {index} out of range (0..{len(header.chunks) - 1})")
    chunk = header.chunks[index]
    start = data_offset_of(path) if data_offset is None else data_offset
    with open(path, "rb") as f:
        data = os.pread(f.fileno(), chunk.stored_length, start + chunk.offset)
    if len(data) != chunk.stored_length:
        raise ImageFormatError(f"{path}: chunk {index} truncated")
    return data


def iter_chunks(path: Path, header: ImageHeader) -> Iterator[tuple[int, bytes]]:
    """(index, stored bytes) for every chunk in file order, read sequentially."""
    start = data_offset_of(path)
    with open(path, "rb", buffering=0) as f:
        f.seek(start)
        for i, chunk in enumerate(header.chunks):
            data = f.read(chunk.stored_length)
            if len(data) != chunk.stored_length:
                raise ImageFormatError(f"{path}: chunk {i} truncated")
            yield i, data


_local = threading.local()


def _decompressor() -> zstandard.ZstdDecompressor:
    # ZstdDecompressor objects must not be shared between threads.
    d = getattr(_local, "dctx", None)
    if d is None:
        d = _local.dctx = zstandard.ZstdDecompressor()
    return d


def chunk_hash_ok(header: ImageHeader, index: int, stored: bytes) -> bool:
    chunk = header.chunks[index]
    return len(stored) == chunk.stored_length and hashlib.sha256(stored).hexdigest() == chunk.sha256


def decode_chunk(header: ImageHeader, index: int, stored: bytes) -> list[tuple[int, memoryview]]:
    """Verify and decompress one chunk; return (byte offset on target, data) pieces.

    The hash is checked before decompression; decompression is capped at the
    header's raw length (bomb-proof) and must produce exactly that many bytes.
    """
    if not 0 <= index < len(header.chunks):
        raise ImageFormatError(f"chunk index {index} out of range")
    chunk = header.chunks[index]
    if not chunk_hash_ok(header, index, stored):
        raise ImageFormatError(f"chunk {index}: sha256 mismatch (corrupt or injected data)")
    try:
        declared = zstandard.frame_content_size(stored)
    except zstandard.ZstdError as err:
        raise ImageFormatError(f"chunk {index}: not a zstd frame: {err}") from err
    if declared != chunk.raw_length:
        raise ImageFormatError(f"chunk {index}: frame declares {declared} bytes, header says {chunk.raw_length}")
    try:
        raw = _decompressor().decompress(stored, max_output_size=chunk.raw_length)
    except zstandard.ZstdError as err:
        raise ImageFormatError(f"chunk {index}: decompression failed: {err}") from err
    if len(raw) != chunk.raw_length:
        raise ImageFormatError(f"chunk {index}: decompressed {len(raw)} bytes, expected {chunk.raw_length}")
    return split_into_ranges(header.block_size, chunk.ranges, memoryview(raw))


def split_into_ranges(block_size: int, ranges: tuple[Range, ...], raw: memoryview) -> list[tuple[int, memoryview]]:
    pieces, pos = [], 0
    for first, count in ranges:
        n = count * block_size
        pieces.append((first * block_size, raw[pos : pos + n]))
        pos += n
    return pieces
