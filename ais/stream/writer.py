"""Write an image onto a target disk or file: fetch, verify, decompress, pwrite.

What it does: `write_image(source, target)` puts the filesystem described by
a trusted `ImageHeader` onto `target` (a block device or a regular file). The
fetch (the calling thread, pulling from a `ChunkSource`) and the
verify + decompress + write (a few worker threads using `os.pwrite`; zstd,
hashlib and pwrite release the GIL) overlap through a bounded queue. Each
chunk's sha256 is checked before any of its bytes are written; a bad chunk
from the network is dropped and asked for again in the next round; a bad
chunk of a local file stops the write at once (reading it again would give
the same bytes), after the chunks already checked have been written. The in-use zero ranges are
zeroed exactly; free blocks are left as they are. Nothing is written outside
the filesystem's extent. A progress journal (by default `<target>.ais-progress`
for a regular file; for a block device only when the caller names one)
records completed chunks after they are durable (fdatasync first), so an
interrupted run resumes by asking only for the rest. The target is fsynced at
the end and the journal removed.

What it reads: the header (from the caller, i.e. the control channel, or from
a local .aisimg) and chunks from the source: `LocalSource` (an .aisimg file)
or a network source from `ais.stream.unicast` / `ais.stream.multicast`; any
object with `fetch(wanted) -> iterator of (index, stored bytes)` works.

What it fails on: a target that `ais.stream.target` refuses (`TargetRefused`,
before any write: in use, missing, too small, not a disk or file); a source
that keeps failing to deliver chunks after a bounded number of rounds
(`StreamError`); a write or sync error of the target (`TargetIOError`, naming
the path and the errno); `ImageFormatError` at the first chunk of a local image
that fails its check.

What it returns: `WriteResult` with counts and timings.
"""

from __future__ import annotations

import logging
import os
import queue
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Protocol, Sequence

from ais.errors import StreamError
from ais.faults import pause_point
from ais.stream import target as targets
from ais.stream.format import ImageFormatError, ImageHeader, decode_chunk, read_header_and_data_offset
from ais.stream.target import target_io

log = logging.getLogger("ais.stream.writer")

JOURNAL_MAGIC = "AISPROGRESS 1"
JOURNAL_EVERY = 32  # completed chunks between journal flushes (each costs an fdatasync)
ZERO_BUFFER = memoryview(bytes(4 << 20))
_STOP = object()


class ChunkSource(Protocol):
    """Where stored chunks come from. fetch may yield a subset; the writer asks again."""

    def fetch(self, wanted: Sequence[int]) -> Iterator[tuple[int, bytes]]: ...


class LocalSource:
    """Chunks read from a local .aisimg file; also offers its header.

    `damaged_if_bad` names the file: reading it again gives the same bytes, so a chunk that fails
    its check is a damaged file (stop), not a transfer to retry."""

    def __init__(self, path: Path):
        self.damaged_if_bad = str(path)
        self.path = Path(path)
        self.header, self.data_offset = read_header_and_data_offset(self.path)

    def fetch(self, wanted: Sequence[int]) -> Iterator[tuple[int, bytes]]:
        with open(self.path, "rb", buffering=0) as f:
            for index in sorted(wanted):  # file order: sequential reads
                chunk = self.header.chunks[index]
                yield index, os.pread(f.fileno(), chunk.stored_length, self.data_offset + chunk.offset)


@dataclass(frozen=True)
class WriteResult:
    chunks_total: int
    chunks_written: int
    chunks_resumed: int  # already done according to the journal
    bad_chunks: int  # hash or decode failures, fetched again
    rounds: int
    data_bytes: int  # decompressed bytes written
    zero_bytes: int
    seconds: float


# ------------------------------------------------------------------ target


def open_target(target: Path, fs_bytes: int, *, create_file: bool = True) -> int:
    """Open target for writing after the shared safety check (ais.stream.target): a block device
    exclusively (O_EXCL, held until the caller closes it), a regular file extended to fs_bytes;
    a missing target is created only when create_file."""
    return targets.open_target(target, fs_bytes, create_file=create_file)


def default_journal_path(target: Path) -> Path | None:
    target = Path(target)
    if target.exists() and stat.S_ISBLK(target.stat().st_mode):
        return None  # no sidecar next to /dev/sda; the caller must name a path
    return target.with_name(target.name + ".ais-progress")


def pwrite_all(fd: int, data: memoryview, offset: int, limit: int) -> None:
    """pwrite every byte, never past limit (the filesystem's extent)."""
    if offset < 0 or offset + len(data) > limit:
        raise StreamError(f"refusing a write at {offset}+{len(data)} beyond the filesystem ({limit} bytes)")
    with target_io(fd, f"writing at offset {offset}"):
        while len(data):
            n = os.pwrite(fd, data, offset)
            data, offset = data[n:], offset + n


def zero_ranges(fd: int, header: ImageHeader) -> int:
    written = 0
    bs = header.block_size
    for first, count in header.zero_ranges:
        offset, end = first * bs, (first + count) * bs
        while offset < end:
            n = min(len(ZERO_BUFFER), end - offset)
            pwrite_all(fd, ZERO_BUFFER[:n], offset, header.fs_bytes)
            offset += n
            written += n
    return written


# ------------------------------------------------------------------ journal


class Journal:
    """Append-only record of completed chunks, bound to one image header.

    Line 1: `AISPROGRESS 1 <image_id> <header sha256>`; then lines `z` (zero
    ranges done) or `c <i>,<j>,...` (chunks done). A journal for another
    header is ignored and overwritten.
    """

    def __init__(self, path: Path | None, header: ImageHeader):
        self.path = path
        self.first_line = f"{JOURNAL_MAGIC} {header.image_id} {header.sha256()}"
        self.done: set[int] = set()
        self.zeros_done = False
        self._file = None

    def load(self) -> None:
        if self.path is None or not self.path.exists():
            return
        lines = self.path.read_text(errors="replace").splitlines()
        if not lines or lines[0] != self.first_line:
            log.info("ignoring progress journal %s: it is for another image", self.path)
            return
        for line in lines[1:]:
            if line == "z":
                self.zeros_done = True
            elif line.startswith("c "):
                try:
                    self.done.update(int(x) for x in line[2:].split(",") if x)
                except ValueError:
                    break  # a torn last line: trust what came before it

    def open(self, resume: bool) -> None:
        if self.path is None:
            return
        keep = resume and (self.done or self.zeros_done)
        self._file = open(self.path, "a" if keep else "w")
        if not keep:
            self._file.write(self.first_line + "\n")
            self._sync()

    def record(self, chunks: Iterable[int] = (), zeros: bool = False) -> None:
        if self._file is None:
            return
        if zeros:
            self._file.write("z\n")
        items = ",".join(str(i) for i in chunks)
        if items:
            self._file.write(f"c {items}\n")
        self._sync()

    def _sync(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())

    def finish(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
            self.path.unlink(missing_ok=True)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


# ------------------------------------------------------------------ pipeline


class _Pipeline:
    """Worker threads that verify, decompress and write chunks from a queue."""

    def __init__(self, fd: int, header: ImageHeader, journal: Journal, threads: int, depth: int, journal_every: int,
                 damaged_if_bad: str | None = None, on_bytes: Callable[[int], None] | None = None):
        self.fd, self.header, self.journal = fd, header, journal
        self.on_bytes = on_bytes
        self.damaged_if_bad = damaged_if_bad  # a local file: a bad chunk stops everything
        self.journal_every = journal_every
        self.queue: queue.Queue = queue.Queue(maxsize=depth)
        self.lock = threading.Lock()
        self.done: set[int] = set(journal.done)
        self.unflushed: list[int] = []
        self.bad = 0
        self.data_bytes = 0
        self.error: BaseException | None = None
        self.workers = [threading.Thread(target=self._work, daemon=True, name=f"ais-write-{i}") for i in range(threads)]
        for w in self.workers:
            w.start()

    def put(self, index: int, stored: bytes) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put((index, stored))

    def _work(self) -> None:
        while True:
            item = self.queue.get()
            try:
                if item is _STOP:
                    return
                if self.error is None:
                    self._write_one(*item)
            except BaseException as err:  # noqa: BLE001 - handed to the fetching thread
                with self.lock:
                    self.error = self.error or err
            finally:
                self.queue.task_done()

    def _write_one(self, index: int, stored: bytes) -> None:
        with self.lock:
            if index in self.done or not 0 <= index < len(self.header.chunks):
                return  # a duplicate (multicast) or nonsense index: nothing to do
        try:
            pieces = decode_chunk(self.header, index, stored)
        except ImageFormatError as err:
            with self.lock:
                self.bad += 1
            if self.damaged_if_bad:
                raise ImageFormatError(f"{self.damaged_if_bad}: {err}: the image file is damaged; stopped at "
                                       "its first bad chunk (rebuild the image)") from err
            log.warning("dropping chunk %d: %s", index, err)
            return
        for offset, data in pieces:
            pwrite_all(self.fd, data, offset, self.header.fs_bytes)
        with self.lock:
            if index in self.done:
                return
            self.done.add(index)
            self.unflushed.append(index)
            self.data_bytes += self.header.chunks[index].raw_length
            flush = len(self.unflushed) >= self.journal_every
        if self.on_bytes is not None:
            self.on_bytes(self.header.chunks[index].raw_length)
        if flush:
            self.flush_journal()

    def flush_journal(self) -> None:
        """Make written chunks durable, then record them (never the other way round)."""
        with self.lock:
            batch, self.unflushed = self.unflushed, []
        if batch and self.journal.path is not None:
            with target_io(self.fd, "syncing"):
                os.fdatasync(self.fd)
            with self.lock, target_io(self.journal.path, "writing the progress journal"):
                self.journal.record(batch)

    def wait_idle(self) -> None:
        self.queue.join()
        if self.error is not None:
            raise self.error

    def stop(self) -> None:
        for _ in self.workers:
            self.queue.put(_STOP)
        for w in self.workers:
            w.join(timeout=30)


def write_image(
    source: ChunkSource | Path | str,
    target: Path | str,
    *,
    header: ImageHeader | None = None,
    journal_path: Path | None | str = "default",
    resume: bool = True,
    threads: int = 2,
    queue_depth: int = 8,
    max_rounds: int = 6,
    journal_every: int = JOURNAL_EVERY,
    create_file: bool = True,
    on_bytes: Callable[[int], None] | None = None,
) -> WriteResult:
    """Write the image from source onto target; see the module docstring.

    create_file: make target as a regular file if it does not exist (the commands
    pass False unless the user asked with --create-file; the client always False).
    on_bytes: told the decompressed bytes of each chunk once it is written (from the
    writer threads), and at the start those of the chunks a resume skips; their sum
    is `data_total(header)` at the end (progress bars, ais.progress).
    """
    started = time.monotonic()
    if isinstance(source, (str, os.PathLike)):
        source = LocalSource(Path(source))
    if header is None:
        header = getattr(source, "header", None)
        if header is None:
            raise StreamError("write_image needs the trusted image header for a network source")
    target = Path(target)
    fd = open_target(target, header.fs_bytes, create_file=create_file)
    jpath = default_journal_path(target) if journal_path == "default" else (Path(journal_path) if journal_path else None)
    journal = Journal(jpath, header)
    try:
        if resume:
            journal.load()
        with target_io(jpath or target, "writing the progress journal"):
            journal.open(resume)
        resumed = len(journal.done)
        pipeline = _Pipeline(fd, header, journal, threads, queue_depth, journal_every,
                             getattr(source, "damaged_if_bad", None), on_bytes)
        if on_bytes is not None and resumed:
            on_bytes(sum(header.chunks[i].raw_length for i in journal.done))
        try:
            zero_bytes = 0
            if not journal.zeros_done:
                zero_bytes = zero_ranges(fd, header)
                if jpath is not None:
                    with target_io(fd, "syncing"):
                        os.fdatasync(fd)
                    with target_io(jpath, "writing the progress journal"):
                        journal.record(zeros=True)
            rounds = _fetch_rounds(source, header, pipeline, max_rounds)
        finally:
            _record_what_is_done(pipeline)
            pipeline.stop()
        with target_io(fd, "syncing"):
            os.fsync(fd)
        journal.finish()
    finally:
        journal.close()
        os.close(fd)
    return WriteResult(
        chunks_total=len(header.chunks),
        chunks_written=len(pipeline.done) - resumed,
        chunks_resumed=resumed,
        bad_chunks=pipeline.bad,
        rounds=rounds,
        data_bytes=pipeline.data_bytes,
        zero_bytes=zero_bytes,
        seconds=time.monotonic() - started,
    )


def data_total(header: ImageHeader) -> int:
    """The decompressed bytes of all chunks: what `on_bytes` adds up to (zero ranges aside)."""
    return sum(c.raw_length for c in header.chunks)


def _record_what_is_done(pipeline: _Pipeline) -> None:
    """On success or failure, journal every chunk written so far (a resume skips them)."""
    try:
        pipeline.queue.join()
        pipeline.flush_journal()
    except (OSError, StreamError) as err:
        log.warning("could not record progress: %s", err)


def _missing(header: ImageHeader, pipeline: _Pipeline) -> list[int]:
    with pipeline.lock:
        return [i for i in range(len(header.chunks)) if i not in pipeline.done]


def _fetch_rounds(source: ChunkSource, header: ImageHeader, pipeline: _Pipeline, max_rounds: int) -> int:
    """Ask for what is missing until nothing is, or rounds without progress run out."""
    rounds = fruitless = 0
    while True:
        missing = _missing(header, pipeline)
        if not missing:
            return rounds
        if fruitless >= max_rounds:
            raise StreamError(
                f"{len(missing)} of {len(header.chunks)} chunks of image {header.image_id} still missing "
                f"after {rounds} rounds ({pipeline.bad} chunks failed their hash check)"
            )
        rounds += 1
        before = len(missing)
        for n, (index, stored) in enumerate(source.fetch(missing)):
            pipeline.put(index, stored)
            if rounds == 1 and n == 0:
                pause_point("image-first-chunk")  # tests kill the server here
        pipeline.wait_idle()
        fruitless = fruitless + 1 if len(_missing(header, pipeline)) == before else 0
