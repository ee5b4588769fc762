"""The shared target check (ais.stream.target) with real loop devices, as the client's check step uses it."""

import os

import pytest

from aislab.disks import LoopDisk, Mounted
from ais.client.target import check_target
from ais.run import run
from ais.stream.target import TargetRefused, open_target

pytestmark = pytest.mark.root  # loop devices, partitions, mounts

MiB = 1 << 20


@pytest.fixture()
def disk(tmp_path):
    with LoopDisk(tmp_path / "disk.img", 64) as d:
        yield d


def test_good_target(disk):
    assert check_target(disk.device, 32 * MiB) == 64 * MiB


def test_too_small(disk):
    with pytest.raises(TargetRefused, match="holds 67108864 bytes but the filesystem needs"):
        check_target(disk.device, 65 * MiB)


def test_mounted_target_refused_naming_the_mount_point(disk):
    run(["mkfs.ext4", "-q", disk.device])
    with Mounted(disk.device) as where:
        with pytest.raises(TargetRefused, match=f"in use \\(mounted on {where}\\)"):
            check_target(disk.device, MiB)


def test_backing_file_of_a_loop_device_refused(disk):
    with pytest.raises(TargetRefused, match=f"backing file of loop device {disk.device}"):
        check_target(disk.file, MiB)


def test_loop_sharing_a_mounted_backing_file_refused(disk):
    run(["mkfs.ext4", "-q", disk.device])
    other = run(["losetup", "--find", "--show", str(disk.file)]).stdout.strip()
    try:
        assert check_target(other, MiB) == 64 * MiB  # an idle alias is no danger
        with Mounted(disk.device):
            with pytest.raises(TargetRefused, match=f"shares its backing file with {disk.device}"):
                check_target(other, MiB)
    finally:
        run(["losetup", "-d", other])


def test_loop_over_a_disjoint_range_of_the_same_file_is_not_an_alias(disk):
    """losetup --offset past the mounted device's --sizelimit: the ranges do not overlap."""
    run(["losetup", "-d", disk.device])
    first = run(["losetup", "--find", "--show", "--sizelimit", str(32 * MiB), str(disk.file)]).stdout.strip()
    second = run(["losetup", "--find", "--show", "--offset", str(32 * MiB), str(disk.file)]).stdout.strip()
    try:
        run(["mkfs.ext4", "-q", first])
        with Mounted(first):
            assert check_target(second, MiB) == 32 * MiB
    finally:
        run(["losetup", "-d", first])
        run(["losetup", "-d", second])


def test_the_open_target_holds_the_device_exclusively(disk, tmp_path):
    run(["mkfs.ext4", "-q", disk.device])
    fd = open_target(disk.device, MiB)
    try:
        with pytest.raises(TargetRefused, match="held open exclusively by another program"):
            check_target(disk.device, MiB)
    finally:
        os.close(fd)
    assert check_target(disk.device, MiB) == 64 * MiB


@pytest.mark.parametrize("target,words", [
    (None, "never guesses"),
    ("", "never guesses"),
    ("/dev/nonexistent-ais", "/dev/nonexistent-ais does not exist: name an existing disk \\(lsblk lists them\\); nothing was created"),
    ("/dev/null", "neither a block device nor a regular file"),
    ("/etc/hostname/x", "cannot be written: Not a directory"),
])
def test_bad_names(target, words):
    with pytest.raises(TargetRefused, match=words):
        check_target(target, MiB)


@pytest.mark.parametrize("name,create_file,words", [
    ("new.img", False, "does not exist: give --create-file to make a new image file; nothing was created"),
    ("no-such-dir/new.img", True, "directory .*no-such-dir does not exist"),
])
def test_a_file_is_created_only_when_asked(tmp_path, name, create_file, words):
    with pytest.raises(TargetRefused, match=words):
        open_target(tmp_path / name, MiB, create_file=create_file)
    assert not (tmp_path / name).exists()


def test_create_file_under_dev_is_refused():
    with pytest.raises(TargetRefused, match="/dev/ais-typo does not exist"):
        open_target("/dev/ais-typo", MiB, create_file=True)
    assert not os.path.exists("/dev/ais-typo")


def _mbr_with_one_partition(path, size_mib: int) -> None:
    """A disk image with an MBR whose one Linux partition starts at 1 MiB (written by hand: no sfdisk here)."""
    import struct

    start, sectors = 2048, (size_mib - 1) * 2048
    entry = struct.pack("<B3sB3sII", 0, b"\0\0\0", 0x83, b"\0\0\0", start, sectors)
    with open(path, "wb") as f:
        f.truncate(size_mib * MiB)
        f.seek(446)
        f.write(entry + bytes(48) + b"\x55\xaa")


def test_a_disk_with_a_mounted_partition_is_refused_naming_it(tmp_path):
    _mbr_with_one_partition(tmp_path / "parted.img", 64)
    whole = run(["losetup", "--find", "--show", "--partscan", str(tmp_path / "parted.img")]).stdout.strip()
    try:
        if not os.path.exists(f"{whole}p1"):  # this kernel's partscan may not read the table: add it by BLKPG
            run(["partx", "--add", whole])
        part = f"{whole}p1"
        run(["mkfs.ext4", "-q", "-F", part])
        with Mounted(part) as where:
            with pytest.raises(TargetRefused, match=f"its partition {part}: mounted on {where}"):
                check_target(whole, MiB)
    finally:
        run(["losetup", "-d", whole])


def test_a_regular_file_smaller_than_the_filesystem_is_refused_by_the_client(tmp_path):
    (tmp_path / "small.img").write_bytes(bytes(MiB))
    with pytest.raises(TargetRefused, match="holds 1048576 bytes but the filesystem needs"):
        check_target(tmp_path / "small.img", 2 * MiB)
