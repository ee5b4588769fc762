"""Small file helpers every phase needs: content digests, durable writes, files set aside by time.

Reads/writes: the paths given. Fails with OSError when the disk refuses (the
temporary file is removed; the old file, if any, is left as it was). Returns
the hex sha256 of a file, or nothing.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fsync_dir(path: str | os.PathLike) -> None:
    """fsync a directory so a rename inside it survives a power cut."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: str | os.PathLike, data: bytes, mode: int = 0o644,
                 uid: int | None = None, gid: int | None = None) -> None:
    """Replace path with data: a temporary file beside it, fsync, rename, fsync the directory.

    Readers see the old file or the new one, never half of either. Owner and
    group are set before the mode (chown clears set-id bits).
    """
    final = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", dir=final.parent)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if uid is not None or gid is not None:
            os.fchown(fd, -1 if uid is None else uid, -1 if gid is None else gid)
        os.fchmod(fd, mode)
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(tmp, final)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(final.parent)


def set_aside(paths: list[Path], stem: str) -> list[Path]:
    """Rename each existing path to `<stem>.<UTC time>[-n].<its extension>` in its directory, the same
    name for all and never over an existing file (a rotated key kept for reference); the new names."""
    from datetime import datetime, timezone

    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")

    def aside(path: Path, n: int) -> Path:
        return path.with_name(f"{stem}.{stamp}{f'-{n}' if n else ''}{path.suffix}")

    n = 0
    while any(aside(p, n).exists() for p in paths):
        n += 1
    kept = []
    for path in paths:
        if path.exists():
            os.rename(path, aside(path, n))
            kept.append(aside(path, n))
    if kept:
        fsync_dir(kept[0].parent)
    return kept
