"""The images a stream server serves: a directory of .aisimg files, found by id.

What it does: `ImageCatalog(directory)` looks images up by id (`<id>.aisimg`
first, else by reading headers) or by their 64-bit multicast tag
(`image_tag`), and hands out `ServedImage`s: the checked header, where chunk
data starts, the header bytes as stored, and an open file. Senders read
through that file, never by path, so a rebuild that removes or replaces an
image mid-stream does not cut transfers in flight; a stale entry is dropped
for new lookups. Shared by the unicast and multicast servers.

What it reads: the directory's .aisimg files. What it fails on: nothing: a
malformed or vanished file is skipped (logged). What it returns: `ServedImage`
or None.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ais.stream.format import PREAMBLE, ImageFormatError, ImageHeader, read_header_and_data_offset

log = logging.getLogger("ais.stream.catalog")

ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,256}")


# ------------------------------------------------------------------ helpers


def image_tag(image_id: str) -> int:
    """64-bit tag naming an image in multicast packets."""
    return int.from_bytes(hashlib.sha256(image_id.encode()).digest()[:8], "little")


@dataclass(frozen=True, eq=False)
class ServedImage:
    """An image as served: its header, and an open file that outlives a deletion.

    Senders read through `file` (pread/sendfile at offsets), never by path, so a
    rebuild that removes the image mid-stream does not cut in-flight transfers.
    """

    path: Path
    header: ImageHeader
    data_offset: int
    raw_header: bytes
    file: BinaryIO

    def is_current(self) -> bool:
        """Still the file at `path` (not removed, not replaced by a rebuilt one)?"""
        try:
            return os.stat(self.path).st_ino == os.fstat(self.file.fileno()).st_ino
        except OSError:
            return False


class ImageCatalog:
    """Images in a directory, found by id: `<id>.aisimg` first, else by header."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self._lock = threading.Lock()
        self._cache: dict[str, ServedImage] = {}
        self._tags: dict[int, str] = {}

    def lookup(self, image_id: str) -> ServedImage | None:
        """The image with this id, or None. Stale entries (removed or replaced) are dropped;
        whoever still holds one keeps reading its open file."""
        if not ID_PATTERN.fullmatch(image_id):
            return None
        with self._lock:
            cached = self._cache.get(image_id)
            if cached is not None and cached.is_current():
                return cached
            self._cache.pop(image_id, None)
        for path in self._candidates(image_id):
            entry = self._open(path)
            if entry is not None and entry.header.image_id == image_id:
                with self._lock:
                    self._cache[image_id] = entry
                return entry
        return None

    @staticmethod
    def _open(path: Path) -> ServedImage | None:
        try:
            handle = open(path, "rb")
        except OSError:
            return None  # removed between the directory scan and here
        try:
            header, offset = read_header_and_data_offset(path)
            raw = os.pread(handle.fileno(), offset, 0)[PREAMBLE.size:]
        except (ImageFormatError, OSError) as err:
            log.warning("skipping %s: %s", path, err)
            handle.close()
            return None
        return ServedImage(path, header, offset, raw, handle)

    def by_tag(self, tag: int) -> ServedImage | None:
        """Lookup by multicast tag; rescans the directory only on a miss."""
        with self._lock:
            image_id = self._tags.get(tag)
        if image_id is None:
            tags = {image_tag(i): i for i in self.ids()}
            with self._lock:
                self._tags = tags
            image_id = tags.get(tag)
        return None if image_id is None else self.lookup(image_id)

    def ids(self) -> list[str]:
        out = []
        for path in sorted(self.directory.glob("*.aisimg")):
            try:
                out.append(read_header_and_data_offset(path)[0].image_id)
            except (ImageFormatError, OSError):  # malformed, or removed since the scan
                continue
        return out

    def _candidates(self, image_id: str) -> list[Path]:
        direct = self.directory / f"{image_id}.aisimg"
        rest = [p for p in sorted(self.directory.glob("*.aisimg")) if p != direct]
        return ([direct] if direct.exists() else []) + rest
