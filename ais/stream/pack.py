"""Pack an ext4 filesystem image into the .aisimg chunked format (docs/format.md).

What it does: `pack` keeps only the blocks the filesystem uses. Used blocks that
hold data are cut into chunks of about 1 MiB of raw data, each compressed on its
own with zstd (two threads: zstd releases the GIL) and carrying its own sha256
and the block ranges it fills; used blocks that are all zeros are not stored but
listed in the zero-ranges table.

What it reads: the filesystem image (large sequential reads of the used
extents) and `dumpe2fs` output for the used-block map (the complement of the
per-group "Free blocks" lists; libext2fs already accounts for BLOCK_UNINIT
groups, which is why we ask it instead of reading bitmaps ourselves).

What it fails on: a tool failure (`ToolError`), an unreadable or non-ext4
source (`BuildError`).

What it returns: the `ImageHeader` of the packed file, which is written through
a temporary file and renamed into place.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import zstandard

from ais.errors import BuildError
from ais.run import run
from ais.contracts import Chunk, ImageHeader, Range
from ais.stream.format import FORMAT_VERSION, MAGIC, PREAMBLE

CHUNK_RAW_TARGET = 1 << 20  # about 1 MiB of used-block data per chunk
READ_SIZE = 8 << 20  # large sequential reads of the source
_local = threading.local()  # one zstd compressor per packing thread

@dataclass(frozen=True)
class FsInfo:
    block_size: int
    fs_blocks: int
    uuid: str
    label: str
    used: tuple[Range, ...]


def read_fs_info(fs_image: Path) -> FsInfo:
    """Block size, block count, UUID, label and used-block ranges via dumpe2fs."""
    out = run(["dumpe2fs", str(fs_image)], timeout=120).stdout
    fields = dict(re.findall(r"^([A-Za-z #]+):\s*(.*)$", out, re.M))
    try:
        block_size = int(fields["Block size"])
        fs_blocks = int(fields["Block count"])
    except (KeyError, ValueError) as err:
        raise BuildError(f"{fs_image}: dumpe2fs output lacks block size/count") from err
    label = fields.get("Filesystem volume name", "").strip()
    free = []
    for line in re.findall(r"^\s+Free blocks: (.*)$", out, re.M):
        for part in filter(None, (p.strip() for p in line.split(","))):
            a, _, b = part.partition("-")
            free.append((int(a), int(b or a)))
    return FsInfo(
        block_size=block_size,
        fs_blocks=fs_blocks,
        uuid=fields.get("Filesystem UUID", "").strip(),
        label="" if label == "<none>" else label,
        used=complement(free, fs_blocks),
    )


def complement(free: list[tuple[int, int]], fs_blocks: int) -> tuple[Range, ...]:
    """Used ranges (first, count) given inclusive free ranges (a, b)."""
    used, pos = [], 0
    for a, b in sorted(free):
        if a > pos:
            used.append((pos, a - pos))
        pos = max(pos, b + 1)
    if pos < fs_blocks:
        used.append((pos, fs_blocks - pos))
    return tuple(used)


class _RunBuilder:
    """Coalesces (block, count) appends into ranges."""

    def __init__(self) -> None:
        self.ranges: list[list[int]] = []

    def add(self, first: int, count: int) -> None:
        if self.ranges and self.ranges[-1][0] + self.ranges[-1][1] == first:
            self.ranges[-1][1] += count
        else:
            self.ranges.append([first, count])


def _scan_used(fs_image: Path, info: FsInfo, zero_runs: _RunBuilder) -> Iterator[tuple[tuple[Range, ...], bytes]]:
    """Yield (ranges, raw data) of about CHUNK_RAW_TARGET from the used, non-zero blocks.

    Reads the used extents sequentially in READ_SIZE pieces; all-zero blocks go
    to zero_runs instead of the chunk.
    """
    bs = info.block_size
    zero_block = bytes(bs)
    parts: list[bytes] = []
    runs = _RunBuilder()
    size = 0
    blocks_per_read = max(1, READ_SIZE // bs)
    with open(fs_image, "rb", buffering=0) as f:
        fd = f.fileno()
        for first, count in info.used:
            block = first
            while block < first + count:
                n = min(blocks_per_read, first + count - block)
                buf = os.pread(fd, n * bs, block * bs)
                if len(buf) != n * bs:
                    raise BuildError(f"{fs_image}: short read at block {block} (image smaller than filesystem?)")
                run_start = None  # start (block index in buf) of current non-zero run
                for i in range(n + 1):
                    is_data = i < n and buf[i * bs : (i + 1) * bs] != zero_block
                    if is_data:
                        if run_start is None:
                            run_start = i
                        if size + (i + 1 - run_start) * bs < CHUNK_RAW_TARGET:
                            continue
                        i += 1  # the chunk is full: cut after this block
                    if run_start is not None:
                        parts.append(buf[run_start * bs : i * bs])
                        runs.add(block + run_start, i - run_start)
                        size += (i - run_start) * bs
                        run_start = None
                        if size >= CHUNK_RAW_TARGET:
                            yield tuple(map(tuple, runs.ranges)), b"".join(parts)
                            parts, runs, size = [], _RunBuilder(), 0
                    if i < n and not is_data:
                        zero_runs.add(block + i, 1)
                block += n
    if size:
        yield tuple(map(tuple, runs.ranges)), b"".join(parts)


def _compress(raw: bytes, level: int) -> tuple[bytes, str]:
    cctx = getattr(_local, "cctx", None)
    if cctx is None or getattr(_local, "level", None) != level:
        cctx = _local.cctx = zstandard.ZstdCompressor(level=level, write_content_size=True)
        _local.level = level
    stored = cctx.compress(raw)
    return stored, hashlib.sha256(stored).hexdigest()


def pack(
    fs_image: Path,
    out_path: Path,
    *,
    image_id: str,
    packages: list[str],
    level: int = 3,
    threads: int = 2,
) -> ImageHeader:
    """Pack an ext4 image into out_path (written via a temp file and rename)."""
    fs_image, out_path = Path(fs_image), Path(out_path)
    info = read_fs_info(fs_image)
    if info.block_size * info.fs_blocks > os.path.getsize(fs_image):
        raise BuildError(f"{fs_image}: file is smaller than the filesystem it holds")
    data_tmp = out_path.with_name(out_path.name + ".data.tmp")
    final_tmp = out_path.with_name(out_path.name + ".tmp")
    zero_runs = _RunBuilder()
    chunks: list[Chunk] = []
    raw_total = 0
    try:
        with open(data_tmp, "wb") as data, concurrent.futures.ThreadPoolExecutor(threads) as pool:
            pending: list[tuple[tuple[Range, ...], int, concurrent.futures.Future]] = []
            offset = 0

            def drain(limit: int) -> None:
                nonlocal offset
                while len(pending) > limit:
                    ranges, raw_len, fut = pending.pop(0)
                    stored, sha = fut.result()
                    data.write(stored)
                    chunks.append(Chunk(offset, len(stored), raw_len, sha, ranges))
                    offset += len(stored)

            for ranges, raw in _scan_used(fs_image, info, zero_runs):
                raw_total += len(raw)
                pending.append((ranges, len(raw), pool.submit(_compress, raw, level)))
                drain(threads * 2)  # bounded in flight: memory stays small
            drain(0)
        header = ImageHeader(
            version=FORMAT_VERSION,
            block_size=info.block_size,
            fs_blocks=info.fs_blocks,
            fs_uuid=info.uuid,
            fs_label=info.label,
            image_id=image_id,
            packages=tuple(packages),
            chunks=tuple(chunks),
            zero_ranges=tuple(map(tuple, zero_runs.ranges)),
            totals={
                "used_blocks": sum(n for _, n in info.used),
                "data_blocks": raw_total // info.block_size,
                "zero_blocks": sum(n for _, n in zero_runs.ranges),
                "raw_bytes": raw_total,
                "stored_bytes": sum(c.stored_length for c in chunks),
                "chunks": len(chunks),
                "zstd_level": level,
            },
        )
        _write_final(final_tmp, header, data_tmp)
        os.replace(final_tmp, out_path)
    finally:
        for p in (data_tmp, final_tmp):
            p.unlink(missing_ok=True)
    return header


def _write_final(final_tmp: Path, header: ImageHeader, data_tmp: Path) -> None:
    text = header.to_json().encode()
    with open(final_tmp, "wb") as out, open(data_tmp, "rb") as src:
        out.write(PREAMBLE.pack(MAGIC, len(text)))
        out.write(text)
        out.flush()
        remaining = os.fstat(src.fileno()).st_size
        while remaining > 0:  # kernel-side copy: no trip through Python
            n = os.copy_file_range(src.fileno(), out.fileno(), min(remaining, 1 << 30))
            if n == 0:
                raise BuildError(f"{final_tmp}: copy of chunk data stopped short")
            remaining -= n
        os.fsync(out.fileno())
