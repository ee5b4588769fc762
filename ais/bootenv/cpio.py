"""A reproducible initramfs archive: cpio "newc" written from a directory tree.

What it does: `write_newc(tree, out, extra_nodes)` writes every file,
directory and symlink under `tree` in sorted path order, owned by root, with
modification time 0 and inode numbers counted from 1, so the same tree gives
the same bytes; `extra_nodes` adds character devices (/dev/console) that an
unprivileged tree cannot hold. Hard links are stored as separate files.

Reads: the tree. Fails with `BuildError` on a file type an initramfs cannot
carry (sockets, FIFOs). Returns the number of entries written.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

from ais.errors import BuildError

TRAILER = "TRAILER!!!"


def _header(ino: int, mode: int, size: int, name: bytes, rdev: tuple[int, int] = (0, 0), nlink: int = 1) -> bytes:
    fields = (ino, mode, 0, 0, nlink, 0, size, 0, 0, rdev[0], rdev[1], len(name) + 1, 0)
    return b"070701" + b"".join(b"%08X" % f for f in fields)


def _pad(n: int) -> bytes:
    return b"\0" * (-n % 4)


def _entry(out: BinaryIO, ino: int, mode: int, name: str, data: bytes = b"", rdev=(0, 0)) -> None:
    raw = name.encode()
    head = _header(ino, mode, len(data), raw, rdev, 2 if stat.S_ISDIR(mode) else 1) + raw + b"\0"
    out.write(head + _pad(len(head)) + data + _pad(len(data)))


def write_newc(tree: Path, out: BinaryIO, extra_nodes: tuple[tuple[str, int, int, int], ...] = ()) -> int:
    """Archive tree into out; extra_nodes: (path, mode, major, minor) character devices."""
    tree = Path(tree)
    paths = sorted(str(p.relative_to(tree)) for p in tree.rglob("*"))
    ino = 0
    for rel in paths:
        path = tree / rel
        st = path.lstat()
        ino += 1
        perms = stat.S_IMODE(st.st_mode)
        if stat.S_ISLNK(st.st_mode):
            _entry(out, ino, stat.S_IFLNK | 0o777, rel, os.readlink(path).encode())
        elif stat.S_ISDIR(st.st_mode):
            _entry(out, ino, stat.S_IFDIR | perms, rel)
        elif stat.S_ISREG(st.st_mode):
            _entry(out, ino, stat.S_IFREG | perms, rel, path.read_bytes())
        else:
            raise BuildError(f"{path}: an initramfs holds files, directories, symlinks and devices, not this")
    for rel, mode, major, minor in extra_nodes:
        ino += 1
        _entry(out, ino, stat.S_IFCHR | mode, rel, rdev=(major, minor))
    _entry(out, 0, 0, TRAILER)
    return ino
