"""The remainder's RPMs by BitTorrent, the server's side: a torrent per RPM, who asked first, bytes sent.

What it does: `RpmTorrents(cache_dir)`:
- `torrent(path, sha256)`: the .torrent of the repository's RPM at path whose sha256 is sha256
  (`ais.stream.torrent.make_file_torrent`: single file, private, a salted info-hash), made on
  the first request and kept as `<cache>/torrents/<sha256>.torrent` (written atomically: a
  temporary file renamed into place), so that every client of the server's life, and of the
  next one, gets the same torrent and the same swarm. One lock makes a torrent at most once.
- `rank(filename, host)`: how many other hosts asked for this RPM's torrent before host did,
  counting only those that asked within `lease` seconds (the clients of one reinstall wave).
  The client of rank 0 takes the RPM from the web seed (the package URL) at once; one of rank
  k waits k times its web-seed delay without progress from peers first (ais.stream.rpmswarm),
  so that the server sends a shared RPM about once, not once per host.
- `add_sent(n)`: counts the RPM bytes the server sent (the package route: the web seed and
  plain downloads alike); `stats()` reports them with the torrents made and asked for
  (`ais serve` logs `package statistics: {json}` when it stops).

Reads: the RPM files (once per torrent), the cache's torrents/. Fails with `OSError` (the
file or the cache directory) and `ImageFormatError` (an empty RPM). Returns bytes, ints, dicts.
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
import time
from pathlib import Path

from ais.stream.torrent import make_file_torrent

SHA256 = re.compile(r"[0-9a-f]{64}")
DEFAULT_LEASE = 120.0  # seconds a host's request keeps its place in an RPM's order


class RpmTorrents:
    """See the module docstring."""

    def __init__(self, cache_dir: Path, *, lease: float = DEFAULT_LEASE, clock=time.monotonic):
        self.dir = Path(cache_dir) / "torrents"
        self.lease, self.clock = lease, clock
        self._make_lock = threading.Lock()
        self._lock = threading.Lock()
        self._asked: dict[str, dict[str, float]] = {}  # file name -> host -> last asked (insertion order = order)
        self._sent = 0
        self._made = 0
        self._served = 0

    def torrent(self, path: Path, sha256: str) -> bytes:
        if not SHA256.fullmatch(sha256):
            raise ValueError(f"not a sha256: {sha256[:80]!r}")
        cached = self.dir / f"{sha256}.torrent"
        with self._make_lock:
            try:
                data = cached.read_bytes()
            except FileNotFoundError:
                data = make_file_torrent(path)
                self._store(cached, data)
                self._made += 1
        with self._lock:
            self._served += 1
        return data

    def _store(self, final: Path, data: bytes) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".tmp-", suffix=".torrent")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o600)  # the salt is the swarm's secret: not for other users of the server
            os.replace(tmp, final)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def rank(self, filename: str, host: str) -> int:
        now = self.clock()
        with self._lock:
            asked = self._asked.setdefault(filename, {})
            for name in [n for n, t in asked.items() if now - t > self.lease]:
                del asked[name]
            asked[host] = now  # a host asking again keeps its place
            return list(asked).index(host)

    def add_sent(self, n: int) -> None:
        with self._lock:
            self._sent += n

    def stats(self) -> dict:
        with self._lock:
            return {"bytes_sent": self._sent, "torrents_made": self._made, "torrents_served": self._served}
