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

The header is the contract `ais.contracts.ImageHeader`: its schema (types,
bounds) and its invariants (regions inside the filesystem and disjoint, chunks
packed in order) hold for every header, however it was made or decoded.

What it returns: `ImageHeader` (frozen; `to_json`, `header_from_json`), chunk bytes
as stored, and decoded chunks as `(block_offset, data)` pieces.
"""

from __future__ import annotations

import hashlib
import os
import struct
import threading
from pathlib import Path
from typing import Iterator

import msgspec
import zstandard

from ais.contracts import ImageHeader, Range
from ais.errors import ImageFileError, ImageFormatError

MAGIC = b"AISIMG\r\n"  # \r\n catches text-mode mangling, as PNG's magic does
FORMAT_VERSION = 1
PREAMBLE = struct.Struct("<8sQ")  # magic, header length in bytes

MAX_HEADER_BYTES = 64 << 20


def header_from_obj(obj: object) -> ImageHeader:
    """A header already parsed into plain objects (e.g. inside a host plan), checked."""
    try:
        return msgspec.convert(obj, ImageHeader)
    except msgspec.ValidationError as err:
        raise ImageFormatError(f"image header is not a valid document: {err}") from err


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
