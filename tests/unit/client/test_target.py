"""Target safety with real loop devices: mounted, partition-free, loop backing, too small, missing."""

import pytest

from ais.client.lab import LoopDisk, Mounted
from ais.client.target import check_target
from ais.errors import ClientError
from ais.run import run

MiB = 1 << 20


@pytest.fixture()
def disk(tmp_path):
    with LoopDisk(tmp_path / "disk.img", 64) as d:
        yield d


def test_good_target(disk):
    assert check_target(disk.device, 32 * MiB) == 64 * MiB


def test_too_small(disk):
    with pytest.raises(ClientError, match="holds 67108864 bytes but the filesystem needs"):
        check_target(disk.device, 65 * MiB)


def test_mounted_target_refused(disk):
    run(["mkfs.ext4", "-q", disk.device])
    with Mounted(disk.device) as where:
        with pytest.raises(ClientError, match=f"is mounted on {where}"):
            check_target(disk.device, MiB)


def test_backing_file_of_a_loop_device_refused(disk):
    with pytest.raises(ClientError, match="backing file of a loop device"):
        check_target(disk.file, MiB)


def test_loop_sharing_a_mounted_backing_file_refused(disk):
    run(["mkfs.ext4", "-q", disk.device])
    other = run(["losetup", "--find", "--show", str(disk.file)]).stdout.strip()
    try:
        with Mounted(disk.device):
            with pytest.raises(ClientError, match="shares its backing file"):
                check_target(other, MiB)
    finally:
        run(["losetup", "-d", other])


@pytest.mark.parametrize("target,words", [(None, "never guesses"), ("", "never guesses"),
                                          ("/dev/nonexistent-ais", "cannot be used"), ("/dev/null", "neither")])
def test_bad_names(target, words):
    with pytest.raises(ClientError, match=words):
        check_target(target, MiB)
