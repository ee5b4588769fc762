"""Fixtures: a real ext4 image (mke2fs -d) of a tree with files, and its .aisimg."""

from pathlib import Path

import pytest

from ais.stream.pack import pack
from ais.stream.lab import make_fs_image, make_tree


@pytest.fixture(scope="session")
def small_fs(tmp_path_factory) -> tuple[Path, Path]:
    """(source tree, ext4 image of it): several MiB of data, so several chunks."""
    base = tmp_path_factory.mktemp("fs")
    src = make_tree(base / "src", random_kib=3072, text_files=150)
    return src, make_fs_image(src, base / "fs.img", 24)


@pytest.fixture(scope="session")
def small_image(small_fs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("img") / "small.aisimg"
    pack(small_fs[1], out, image_id="small-1", packages=["a-1-1.noarch", "b-2-1.noarch"])
    return out
