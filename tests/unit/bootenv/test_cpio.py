"""The initramfs archive: newc entries a real cpio reads back, the same bytes for the same tree."""

from __future__ import annotations

import io
import os
import stat

import pytest

from ais.bootenv.cpio import write_newc
from ais.errors import BuildError
from ais.run import run


def make_tree(root):
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "busybox").write_bytes(b"\x7fELF" + b"x" * 1001)
    os.chmod(root / "bin" / "busybox", 0o755)
    os.symlink("busybox", root / "bin" / "sh")
    (root / "etc" / "ais").mkdir(parents=True)
    (root / "etc" / "ais" / "modules").write_text("kernel/fs/ext4/ext4\n")
    os.chmod(root / "etc" / "ais" / "modules", 0o640)
    (root / "init").write_text("#!/bin/sh\n")
    os.chmod(root / "init", 0o755)
    (root / "dev").mkdir()
    return root


def entries(data: bytes) -> dict[str, tuple[int, bytes, tuple[int, int]]]:
    """name -> (mode, body, (rdev major, minor)), parsed from newc bytes independently of the writer."""
    out, pos = {}, 0
    while True:
        assert data[pos:pos + 6] == b"070701"
        fields = [int(data[pos + 6 + 8 * i: pos + 14 + 8 * i], 16) for i in range(13)]
        namesize, size = fields[11], fields[6]
        start = pos + 110
        name = data[start:start + namesize - 1].decode()
        body_at = start + namesize + (-(110 + namesize) % 4)
        body = data[body_at:body_at + size]
        pos = body_at + size + (-size % 4)
        if name == "TRAILER!!!":
            return out
        out[name] = (fields[1], body, (fields[9], fields[10]))


def test_entries_carry_modes_bodies_links_and_devices(tmp_path):
    tree = make_tree(tmp_path / "tree")
    out = io.BytesIO()
    write_newc(tree, out, extra_nodes=(("dev/console", 0o600, 5, 1),))
    got = entries(out.getvalue())
    assert list(got) == ["bin", "bin/busybox", "bin/sh", "dev", "etc", "etc/ais", "etc/ais/modules", "init",
                         "dev/console"]  # parents before children; devices last
    assert got["bin/busybox"][0] == stat.S_IFREG | 0o755 and len(got["bin/busybox"][1]) == 1005
    assert got["bin/sh"] == (stat.S_IFLNK | 0o777, b"busybox", (0, 0))
    assert got["etc/ais/modules"][0] == stat.S_IFREG | 0o640
    assert got["dev/console"] == (stat.S_IFCHR | 0o600, b"", (5, 1))
    assert len(out.getvalue()) % 4 == 0


def test_a_real_cpio_unpacks_it(tmp_path):
    tree = make_tree(tmp_path / "tree")
    archive = tmp_path / "initrd.cpio"
    with open(archive, "wb") as f:
        write_newc(tree, f)
    out = tmp_path / "out"
    out.mkdir()
    run(["busybox", "cpio", "-i", "-d", "-F", str(archive)], cwd=out)
    assert (out / "bin/busybox").read_bytes() == (tree / "bin/busybox").read_bytes()
    assert os.readlink(out / "bin/sh") == "busybox"
    assert stat.S_IMODE((out / "init").stat().st_mode) == 0o755


def test_the_same_tree_gives_the_same_bytes_whatever_its_times(tmp_path):
    tree = make_tree(tmp_path / "tree")
    first = io.BytesIO()
    write_newc(tree, first)
    os.utime(tree / "init", (1, 1))
    os.utime(tree / "bin" / "busybox", (2_000_000_000, 2_000_000_000))
    second = io.BytesIO()
    write_newc(tree, second)
    assert first.getvalue() == second.getvalue()


def test_a_fifo_is_refused(tmp_path):
    tree = make_tree(tmp_path / "tree")
    os.mkfifo(tree / "pipe")
    with pytest.raises(BuildError, match="pipe"):
        write_newc(tree, io.BytesIO())
