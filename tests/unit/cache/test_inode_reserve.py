"""A built image has room for the remainder's files after the client grows it.

Growing an ext4 filesystem on a disk under 128 MiB adds no block group and so no
inode: the reserve must be made at mke2fs time.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from ais.cache.build import make_fs
from ais.run import run

pytestmark = pytest.mark.root  # mounts the image on a loop device


def test_grown_small_image_takes_thousands_of_new_files(tmp_path):
    root = tmp_path / "root"
    for i in range(200):
        (root / f"d{i % 10}").mkdir(parents=True, exist_ok=True)
        (root / f"d{i % 10}" / f"f{i}").write_text("x" * 100)
    image = tmp_path / "fs.img"
    make_fs(root, image, "inodes")
    os.truncate(image, 120 * 2**20)  # the client's disk: under one 128 MiB block group
    run(["resize2fs", "-f", str(image)])
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    run(["mount", "-o", "loop", str(image), str(mnt)])
    try:
        target = mnt / "remainder"
        target.mkdir()
        for i in range(5000):  # a remainder with many small files
            (target / f"r{i}").touch()
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
    run(["e2fsck", "-fn", str(image)])
