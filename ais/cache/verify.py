"""Check a stored image against its hashes before anyone trusts it.

A stored image is good when its header parses and validates
(ais.stream.format.read_header), its id matches the file name, its header sha256
matches the manifest's record (when one is given), and every chunk's stored
bytes hash to the sha256 in the chunk table. A flipped byte anywhere in the file
fails one of these. Verification reads the whole file (sequentially).

Reads: images/<id>.aisimg and optionally its manifest record. Fails: never
raises for a bad image; returns the reason as a string (None when good), so
callers (rebuild, status) decide what to do. Also builds the manifest record
of a freshly packed image (`header_record`).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from ais.cache.store import Store
from ais.errors import StreamError

log = logging.getLogger("ais.cache.verify")


def header_record(store: Store, iid: str, header) -> dict:
    """The manifest fields that pin an image: file, sizes, chunk count, header sha."""
    return {
        "file": store.relpath(iid),
        "stored_bytes": store.image_path(iid).stat().st_size,
        "chunks": len(header.chunks),
        "header_sha256": header.sha256(),
        "raw_bytes": int(header.totals.get("raw_bytes", 0)),
    }


def problem(path: Path, iid: str, record: dict | None = None) -> str | None:
    """Why the image at path cannot be served, or None when every hash matches."""
    from ais.stream.format import iter_chunks, read_header

    try:
        header = read_header(path)
        if header.image_id != iid:
            return f"header names image {header.image_id[:12]}, file is {iid[:12]}"
        if record is not None:
            if record.get("header_sha256") not in (None, header.sha256()):
                return "header sha256 differs from the manifest"
            if record.get("stored_bytes") not in (None, path.stat().st_size):
                return f"size {path.stat().st_size} differs from the manifest's {record['stored_bytes']}"
        for index, stored in iter_chunks(path, header):
            if hashlib.sha256(stored).hexdigest() != header.chunks[index].sha256:
                return f"chunk {index} sha256 mismatch"
    except (StreamError, OSError) as err:
        return str(err)
    return None


def check_store(store: Store, manifest: dict, iids: set[str] | None = None) -> dict[str, str]:
    """{image id: problem} for stored images (default: every image the manifest lists)."""
    records = manifest.get("images", {})
    bad = {}
    for iid in sorted(records if iids is None else iids):
        path = store.image_path(iid)
        if not path.exists():
            bad[iid] = "file missing"
            continue
        why = problem(path, iid, records.get(iid))
        if why:
            log.warning("image %s is corrupt: %s", iid[:12], why)
            bad[iid] = why
    return bad
