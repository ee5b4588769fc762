"""The content-addressed image store: `images/<id>.aisimg` (with `images/<id>.torrent`) and `tmp/`.

An image's id is the sha256 of its sorted package identities (nevra@digest)
plus the builder's format version, so the same package set is built once and
any change of content gives a new id. Files enter `images/` only by rename from
`tmp/` (same filesystem) after fsync, so an image in `images/` is always
complete; everything in `tmp/` is garbage after a crash and `clean_tmp` removes it.
Each image gets its BitTorrent metainfo beside it (`ais.stream.torrent.make_torrent`, a
random salt per torrent), made when it is installed, or by `ensure_torrent` for an image
stored before torrents existed; `remove` deletes both.

Reads: the cache directory (see docs/interfaces.md). Fails with `BuildError`
when the cache directory cannot be created or written. Returns paths, ids and
sizes; it never decides what to keep (rebuild.py does).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
import uuid
from collections.abc import Iterable
from pathlib import Path

from ais.errors import BuildError
from ais.files import fsync_dir
from ais.model import Package
from ais.stream.format import read_header

# Bump when the builder changes what an image holds for the same packages
# (filesystem type, mke2fs options, rpm flags, packer format).
BUILDER_FORMAT = 1
SUFFIX = ".aisimg"
TORRENT_SUFFIX = ".torrent"  # next to each image: its BitTorrent metainfo (ais.stream.torrent)


def image_id(packages: Iterable[Package]) -> str:
    """sha256 over the builder format and the sorted package identities.

    >>> image_id([]) == image_id(())
    True
    """
    digest = hashlib.sha256(f"ais-image-format-{BUILDER_FORMAT}\n".encode())
    for identity in sorted(p.identity for p in packages):
        digest.update(identity.encode() + b"\n")
    return digest.hexdigest()


def fsync_file(path: str | os.PathLike) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Store:
    """Paths and file moves of one cache directory."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).absolute()  # rpm --root needs an absolute path
        self.images = self.root / "images"
        self.tmp = self.root / "tmp"
        self.manifest_path = self.root / "manifest.json"
        self.lock_path = self.root / "lock"
        self._deleting: list[threading.Thread] = []

    def ensure(self) -> None:
        """Create the cache layout (idempotent)."""
        try:
            for d in (self.root, self.images, self.tmp):
                d.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise BuildError(f"cannot create cache directory {self.root}: {err}") from err

    def image_path(self, iid: str) -> Path:
        return self.images / f"{iid}{SUFFIX}"

    def relpath(self, iid: str) -> str:
        """Path of an image relative to the cache root, as the manifest records it."""
        return f"images/{iid}{SUFFIX}"

    def stored_ids(self) -> set[str]:
        """Ids of the complete image files present in images/."""
        if not self.images.is_dir():
            return set()
        return {p.name[: -len(SUFFIX)] for p in self.images.iterdir() if p.name.endswith(SUFFIX)}

    def work_dir(self, name: str) -> Path:
        """A fresh, empty directory under tmp/ (removed first if a crash left it)."""
        path = self.tmp / name
        if path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True)
        return path

    def discard(self, path: Path) -> None:
        """Delete a work directory in the background (a staging root of thousands of
        files takes longer to unlink than to build). It is renamed into tmp/.trash
        first, so a crash leaves it to `clean_tmp`; `drain` waits for the deletions."""
        trash = self.tmp / ".trash"
        trash.mkdir(exist_ok=True)
        target = trash / uuid.uuid4().hex
        os.rename(path, target)
        thread = threading.Thread(target=shutil.rmtree, args=(target,), kwargs={"ignore_errors": True},
                                  daemon=True)
        thread.start()
        self._deleting.append(thread)

    def drain(self) -> None:
        """Wait until every background deletion finished."""
        while self._deleting:
            self._deleting.pop().join()
        trash = self.tmp / ".trash"
        if trash.is_dir() and not any(trash.iterdir()):
            trash.rmdir()

    def clean_tmp(self) -> int:
        """Remove everything under tmp/ (call with the lock held). Returns entries removed."""
        if not self.tmp.is_dir():
            return 0
        count = 0
        for entry in self.tmp.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
            count += 1
        return count

    def torrent_path(self, iid: str) -> Path:
        return self.images / f"{iid}{TORRENT_SUFFIX}"

    def install(self, packed: Path, iid: str) -> Path:
        """Move a complete packed file from tmp/ to images/<id>.aisimg, durably, with its .torrent.

        Replaces an existing file of the same id (a corrupted copy being repaired). The torrent is
        made from the packed file first; an old torrent goes before the new image comes, so a crash
        leaves an image without a torrent (the next rebuild adds it), never one with another's.
        """
        target = self.image_path(iid)
        torrent = self._make_torrent(packed, iid)
        fsync_file(packed)
        self.torrent_path(iid).unlink(missing_ok=True)
        os.replace(packed, target)
        if torrent is not None:
            os.replace(torrent, self.torrent_path(iid))
        fsync_dir(self.images)
        return target

    def ensure_torrent(self, iid: str) -> bool:
        """Add images/<id>.torrent to a stored image that lacks one (a cache from before BitTorrent);
        True when one was made."""
        if self.torrent_path(iid).exists() or not self.image_path(iid).exists():
            return False
        torrent = self._make_torrent(self.image_path(iid), iid)
        if torrent is None:
            return False
        os.replace(torrent, self.torrent_path(iid))
        fsync_dir(self.images)
        return True

    def _make_torrent(self, image: Path, iid: str) -> Path | None:
        """The image's .torrent (ais.stream.torrent), written durably into tmp/; None for an image
        without chunks (nothing to share)."""
        from ais.stream.torrent import make_torrent

        if not read_header(image).chunks:
            return None
        tmp = self.tmp / f"{iid}{TORRENT_SUFFIX}.{uuid.uuid4().hex}"
        try:
            with open(tmp, "wb") as f:
                f.write(make_torrent(image))
                f.flush()
                os.fsync(f.fileno())
        except OSError as err:
            tmp.unlink(missing_ok=True)
            raise BuildError(f"cannot write the torrent of image {iid[:12]} in {self.tmp}: {err}") from err
        return tmp

    def remove(self, iids: Iterable[str]) -> int:
        """Delete images by id; returns bytes freed."""
        freed = 0
        for iid in iids:
            self.torrent_path(iid).unlink(missing_ok=True)
            path = self.image_path(iid)
            try:
                freed += path.stat().st_size
                path.unlink()
            except FileNotFoundError:
                continue
        fsync_dir(self.images)
        return freed

    def disk_bytes(self) -> int:
        """Bytes allocated by images/ (what counts against the budget)."""
        if not self.images.is_dir():
            return 0
        return sum(p.stat().st_size for p in self.images.iterdir() if p.name.endswith(SUFFIX))
