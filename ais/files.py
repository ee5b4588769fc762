"""Small file helpers every phase needs: content digests.

Reads: a file path. Fails with OSError when the file cannot be read. Returns
the hex sha256 of the file's bytes, read in 1 MiB blocks (RPMs, images).
"""

from __future__ import annotations

import hashlib
import os


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
