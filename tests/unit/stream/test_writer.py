"""writer.py on real targets: garbage-filled files and loop devices."""

import filecmp
import random
from pathlib import Path

import pytest

from ais.errors import StreamError
from ais.run import run
from ais.stream.format import data_offset_of, read_header
from aislab.net import ais_command
from ais.stream.target import TargetRefused
from ais.stream.writer import LocalSource, write_image


def _garbage_file(path: Path, size: int) -> Path:
    rng = random.Random(7)
    with open(path, "wb") as f:
        for _ in range(size // (1 << 20)):
            f.write(rng.randbytes(1 << 20))
    return path


def _same_tree(a: Path, b: Path) -> None:
    cmp = filecmp.dircmp(a, b, ignore=["lost+found"])
    assert not cmp.left_only and not cmp.right_only and not cmp.funny_files, cmp.report()
    _, mismatch, errors = filecmp.cmpfiles(a, b, cmp.common_files, shallow=False)
    assert not mismatch and not errors
    for sub in cmp.common_dirs:
        _same_tree(a / sub, b / sub)


def test_garbage_target_becomes_a_clean_identical_filesystem(tmp_path, small_fs, small_image):
    src, _ = small_fs
    header = read_header(small_image)
    target = _garbage_file(tmp_path / "disk", header.fs_bytes)
    result = write_image(small_image, target)
    assert result.chunks_written == len(header.chunks) and result.bad_chunks == 0
    assert result.zero_bytes == sum(n for _, n in header.zero_ranges) * header.block_size
    run(["e2fsck", "-fn", str(target)])
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    run(["mount", "-o", "loop,ro,noload", str(target), str(mnt)])
    try:
        _same_tree(src, mnt)
    finally:
        run(["umount", str(mnt)])
    assert not (tmp_path / "disk.ais-progress").exists()


def test_regular_file_target_is_extended(tmp_path, small_image):
    header = read_header(small_image)
    target = tmp_path / "new.img"
    write_image(small_image, target)
    assert target.stat().st_size == header.fs_bytes
    run(["e2fsck", "-fn", str(target)])


class _Crashing:
    """A source that delivers n chunks and then fails, like a pulled cable."""

    def __init__(self, inner, n):
        self.inner, self.n, self.asked = inner, n, []

    def fetch(self, wanted):
        self.asked.append(sorted(wanted))
        for k, item in enumerate(self.inner.fetch(wanted)):
            if k == self.n:
                raise StreamError("cable pulled")
            yield item


def test_resume_asks_only_for_the_rest(tmp_path, small_image):
    header = read_header(small_image)
    target = _garbage_file(tmp_path / "disk", header.fs_bytes)
    first = _Crashing(LocalSource(small_image), 3)
    with pytest.raises(StreamError, match="cable pulled"):
        write_image(first, target, header=header, journal_every=1)
    journal = tmp_path / "disk.ais-progress"
    assert journal.exists()
    second = _Crashing(LocalSource(small_image), 10_000)
    result = write_image(second, target, header=header)
    assert result.chunks_resumed == 3
    assert second.asked == [list(range(3, len(header.chunks)))]
    assert not journal.exists()
    run(["e2fsck", "-fn", str(target)])


def test_journal_for_another_image_is_ignored(tmp_path, small_image):
    target = tmp_path / "disk"
    (tmp_path / "disk.ais-progress").write_text("AISPROGRESS 1 other deadbeef\nz\nc 0,1,2\n")
    result = write_image(small_image, target)
    assert result.chunks_resumed == 0


class _Corrupting:
    """Flips a byte in the first delivery of every chunk."""

    def __init__(self, inner):
        self.inner, self.seen = inner, set()

    def fetch(self, wanted):
        for index, data in self.inner.fetch(wanted):
            if index not in self.seen:
                self.seen.add(index)
                data = bytes([data[0] ^ 1]) + data[1:]
            yield index, data


def test_corrupt_chunks_are_fetched_again(tmp_path, small_image):
    header = read_header(small_image)
    result = write_image(_Corrupting(LocalSource(small_image)), tmp_path / "t", header=header)
    assert result.bad_chunks == len(header.chunks) and result.rounds == 2
    run(["e2fsck", "-fn", str(tmp_path / "t")])


def test_source_that_never_delivers_gives_a_clear_error(tmp_path, small_image):
    header = read_header(small_image)

    class Empty:
        def fetch(self, wanted):
            return iter(())

    with pytest.raises(StreamError, match="still missing after"):
        write_image(Empty(), tmp_path / "t", header=header, max_rounds=2)


@pytest.fixture
def small_loop_device(tmp_path):
    backing = tmp_path / "small.disk"
    backing.write_bytes(b"\xaa" * (8 << 20))
    dev = run(["losetup", "--find", "--show", str(backing)]).stdout.strip()
    try:
        yield Path(dev), backing
    finally:
        run(["losetup", "-d", dev], check=False)


def test_block_device_smaller_than_filesystem_is_refused_untouched(small_loop_device, small_image):
    dev, backing = small_loop_device
    with pytest.raises(TargetRefused, match="use a larger disk"):
        write_image(small_image, dev)
    assert backing.read_bytes() == b"\xaa" * (8 << 20)


@pytest.mark.root
def test_block_device_target(tmp_path, small_image):
    header = read_header(small_image)
    backing = _garbage_file(tmp_path / "big.disk", header.fs_bytes + (1 << 20))
    dev = run(["losetup", "--find", "--show", str(backing)]).stdout.strip()
    try:
        journal = tmp_path / "j"
        write_image(small_image, dev, journal_path=journal)
        assert not journal.exists()
    finally:
        run(["losetup", "-d", dev])
    tail = backing.read_bytes()[header.fs_bytes :]
    assert tail == random.Random(7).randbytes(backing.stat().st_size)[header.fs_bytes :]  # nothing beyond
    cut = tmp_path / "fs.img"
    with open(backing, "rb") as f, open(cut, "wb") as out:
        out.write(f.read(header.fs_bytes))
    run(["e2fsck", "-fn", str(cut)])


class _CountingLocal(LocalSource):
    """A LocalSource that counts how often each chunk is read."""

    def __init__(self, path):
        super().__init__(path)
        self.reads = {}

    def fetch(self, wanted):
        for index, data in super().fetch(wanted):
            self.reads[index] = self.reads.get(index, 0) + 1
            yield index, data


def _damaged_copy(tmp_path, small_image, index):
    header = read_header(small_image)
    data = bytearray(small_image.read_bytes())
    data[data_offset_of(small_image) + header.chunks[index].offset + 10] ^= 0xFF
    bad = tmp_path / "damaged.aisimg"
    bad.write_bytes(bytes(data))
    return bad


def test_a_damaged_local_image_stops_at_its_first_bad_chunk_read_once(tmp_path, small_image):
    source = _CountingLocal(_damaged_copy(tmp_path, small_image, 1))
    with pytest.raises(StreamError, match="chunk 1: sha256 mismatch.*image file is damaged"):
        write_image(source, tmp_path / "t")
    assert source.reads[1] == 1  # not re-read round after round: the file will not change its mind


def test_ais_image_write_of_a_damaged_image_says_so(tmp_path, small_image):
    bad = _damaged_copy(tmp_path, small_image, 1)
    proc = run(ais_command("image", "write", "--create-file", str(bad), str(tmp_path / "t")), check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "damaged.aisimg: chunk 1: sha256 mismatch" in proc.stderr and "stopped at its first bad chunk" in proc.stderr
