"""Is a published image fit to serve? Checked once per file version, then remembered.

What it does: `ImageChecker.check(snapshot, image_id)` answers (header, None)
for an image whose file exists, whose header parses and matches the
manifest's `header_sha256`, whose size matches, and whose every chunk hashes
to its header entry (`ais.cache.verify.problem`: a full read, so the result
is remembered per (id, inode, size, mtime) and the check runs once per file
version, one thread at a time); otherwise (None, reason). A cache caught
mid-rebuild, a file removed by hand or a flipped byte all give a reason, and
the plan falls back to another image.

Reads: cache/images/<id>.aisimg through the snapshot's manifest record.
Fails on nothing: every problem is a reason string. Returns (ImageHeader, None)
or (None, reason).
"""

from __future__ import annotations

import logging
import os
import threading

from ais.cache.verify import problem
from ais.server.state import Snapshot
from ais.stream.format import ImageHeader, read_header

log = logging.getLogger("ais.server.images")


class ImageChecker:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._results: dict[tuple, tuple[ImageHeader | None, str | None]] = {}

    def check(self, snapshot: Snapshot, iid: str) -> tuple[ImageHeader | None, str | None]:
        record = snapshot.manifest.get("images", {}).get(iid)
        path = snapshot.image_path(iid)
        if record is None or path is None:
            return None, f"image {iid[:12]} is not in the published manifest"
        try:
            st = os.stat(path)
        except OSError as err:
            return None, f"image {iid[:12]} file {path.name} is unreadable: {err.strerror}"
        key = (iid, st.st_ino, st.st_size, st.st_mtime_ns, record.get("header_sha256"))
        with self._lock:
            if key not in self._results:
                self._results[key] = self._check(path, iid, record)
            return self._results[key]

    @staticmethod
    def _check(path, iid: str, record: dict) -> tuple[ImageHeader | None, str | None]:
        why = problem(path, iid, record)
        if why is not None:
            log.warning("image %s fails its check: %s", iid[:12], why)
            return None, f"image {iid[:12]} fails its check: {why}"
        try:
            return read_header(path), None
        except Exception as err:  # read twice; a file replaced in between
            return None, f"image {iid[:12]} header unreadable: {err}"
