"""Whole files by BitTorrent from the peers of an image session: the remainder's RPMs.

What it does: `FileSwarm(files, directory, join, image_id, ...)` fetches each `SharedFile` (a
name, its size and sha256 from the plan, its single-file .torrent from the server, its web
seed: the server's own package URL, BEP 19) into directory/<name> through a libtorrent
session: the image swarm's session when the caller has one (`session`, `listen`: the
BitTorrent transport, one listen port for the image and the RPMs), else its own on
`listen_ip` (the chain transport). Peers are the image swarm's members: `join(request)` posts
{"image", "listen", "done"} to the server's swarm board (`ais.client.api.Api.swarm`) before the
torrents are added and again every `rejoin_seconds` while files are missing, and every member
named is dialled on every file's torrent (libtorrent answers incoming peers by info-hash).

The web seed: a file whose `rank` is 0 (the first host of this wave to ask the server for its
torrent, ais.server.rpmtorrents) gets its web seed at once; one of rank k only after k x
`web_seed_delay` seconds without payload from peers, so that a shared RPM crosses the
server's link about once. A file is done when libtorrent has it whole (every piece passed its
SHA-1) AND its size and sha256 equal the plan's; a file that fails that check is deleted and
left to the server. No payload for any missing file for `stall_timeout` seconds: the missing
files are given up (their partial files deleted), `fetch` returns, and the caller says so; the
install step then downloads them from the server as it does without peers.

`linger()` (own session only: the BitTorrent transport's `SwarmSource.linger` seeds a shared
one) seeds on, joining with done=True, until the server says every member is done or
`seed_seconds` have passed. `stats`: bytes from peers and from the web seed, uploaded, files
fetched and left, bytes left.

Reads: the torrents (checked: one private file of the plan's name and size), the join
answers, the network, the fetched files (sha256). Fails with `StreamError` when its own
session cannot listen; what `join` raises on the first join. Returns the names fetched.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence
from urllib.parse import urlsplit

import libtorrent as lt

from ais.errors import AisError
from ais.files import file_sha256
from ais.stream.swarm import ALERTS as SWARM_ALERTS, POLL, open_session
from ais.stream.torrent import file_torrent_info

log = logging.getLogger("ais.stream.rpmswarm")
BLOCK = 16 << 10  # libtorrent's request size: what one block_finished_alert stands for (at most)
ALERTS = SWARM_ALERTS | lt.alert.category_t.block_progress_notification


@dataclass(frozen=True)
class SharedFile:
    name: str
    size: int
    sha256: str
    torrent: bytes
    web_seed: str  # URL of the file itself (BEP 19, single file)
    rank: int = 0  # 0: the web seed at once; k: after k x web_seed_delay without payload from peers


@dataclass
class _Fetching:
    file: SharedFile
    handle: object
    seeded: bool = False  # its web seed added
    flushing: bool = False  # whole: waiting for libtorrent to have written it all to the file
    last_payload: int = 0
    last_progress: float = 0.0


def holds(path: Path, size: int, sha256: str) -> bool:
    """Whether path is a file of exactly size bytes whose sha256 is sha256."""
    try:
        return path.is_file() and path.stat().st_size == size and file_sha256(path) == sha256
    except OSError:
        return False


class FileSwarm:
    """See the module docstring."""

    def __init__(self, files: Sequence[SharedFile], directory: Path, join: Callable[[dict], dict], image_id: str, *,
                 session: lt.session | None = None, listen: str | None = None, listen_ip: str | None = None,
                 stall_timeout: float = 30.0, web_seed_delay: float = 5.0, seed_seconds: float = 60.0,
                 rejoin_seconds: float = 5.0, encryption: str = "obfuscated"):
        self.files, self.directory, self.join_server, self.image_id = list(files), Path(directory), join, image_id
        self.stall_timeout, self.web_seed_delay = stall_timeout, web_seed_delay
        self.seed_seconds, self.rejoin_seconds = seed_seconds, rejoin_seconds
        self.owned = session is None
        if self.owned:
            session, listen = open_session(listen_ip, encryption)
        session.apply_settings({"alert_mask": ALERTS, "alert_queue_size": 100000})
        self.session, self.listen = session, listen
        self._server = web_seed_endpoint(self.files[0].web_seed) if self.files else None
        self.stats = {"from_peers": 0, "from_web_seed": 0, "uploaded": 0, "files_fetched": 0, "files_left": 0,
                      "bytes_left": 0, "hash_failures": 0}
        self._handles: list = []
        self._uploaded: dict[str, int] = {}  # info-hash -> bytes uploaded (kept for torrents dropped)
        self._done = False
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def __enter__(self) -> "FileSwarm":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        if self.owned and self.session is not None:
            self.session.pause()
            self.session = None  # its threads stop with it

    # ------------------------------------------------------------ fetching

    def fetch(self) -> list[str]:
        """Fetch every file (see the module docstring); the names fetched and checked."""
        self.directory.mkdir(parents=True, exist_ok=True)
        answer = self._join()
        pending = [f for f in (self._add(f) for f in self.files) if f is not None]
        self._dial(answer["peers"])
        joiner = threading.Thread(target=self._rejoin_loop, daemon=True, name="ais-rpmswarm-join")
        joiner.start()
        fetched: list[str] = []
        try:
            last_any = time.monotonic()
            while pending:
                self.session.wait_for_alert(int(POLL * 1000))
                flushed = self._take_alerts()
                self.count()
                now = time.monotonic()
                for item in list(pending):
                    if item.flushing:  # libtorrent has it whole; its last blocks may still be on the way to the file
                        if _key(item.handle) in flushed:
                            pending.remove(item)
                            self._finish(item, fetched)
                        continue
                    status = item.handle.status()
                    if status.total_payload_download != item.last_payload:
                        item.last_payload, item.last_progress, last_any = status.total_payload_download, now, now
                    if status.is_seeding:
                        item.flushing = True
                        item.handle.flush_cache()  # answered by a cache_flushed_alert
                    elif not item.seeded and now - item.last_progress >= item.file.rank * self.web_seed_delay:
                        item.handle.add_url_seed(item.file.web_seed)
                        item.seeded = True
                if pending and now - last_any > self.stall_timeout:
                    self._give_up(pending)
                    break
        finally:
            self._stop.set()
            joiner.join(timeout=60)
        self._done = True
        self._take_alerts()
        self.count()
        return fetched

    def _add(self, file: SharedFile) -> _Fetching | None:
        try:
            info = file_torrent_info(file.torrent, file.name, file.size)
        except AisError as err:
            log.warning("BitTorrent: %s; it is left to the server", err)
            self._left(file)
            return None
        atp = lt.add_torrent_params()
        atp.ti = info
        atp.save_path = str(self.directory)
        atp.flags = (lt.torrent_flags.disable_dht | lt.torrent_flags.disable_lsd | lt.torrent_flags.disable_pex)
        handle = self.session.add_torrent(atp)
        with self._lock:
            self._handles.append(handle)
        item = _Fetching(file, handle, last_progress=time.monotonic())
        if file.rank == 0:
            handle.add_url_seed(file.web_seed)
            item.seeded = True
        return item

    def _finish(self, item: _Fetching, fetched: list[str]) -> None:
        """libtorrent has the file whole: keep it only if the plan's size and sha256 say so."""
        path = self.directory / item.file.name
        if holds(path, item.file.size, item.file.sha256):
            fetched.append(item.file.name)
            self.stats["files_fetched"] += 1
            return
        log.warning("BitTorrent: %s does not match the plan's size and sha256: deleted, left to the server",
                    item.file.name)
        self._drop(item)

    def _give_up(self, pending: list[_Fetching]) -> None:
        names = ", ".join(i.file.name for i in pending[:5]) + (", ..." if len(pending) > 5 else "")
        log.warning("BitTorrent: nothing arrived for %g s; %d RPMs left to the server (%s)",
                    self.stall_timeout, len(pending), names)
        for item in pending:
            self._drop(item)

    def _drop(self, item: _Fetching) -> None:
        self.count()
        with self._lock:
            self._handles.remove(item.handle)
        self.session.remove_torrent(item.handle, lt.session.delete_files)
        (self.directory / item.file.name).unlink(missing_ok=True)
        self._left(item.file)

    def _left(self, file: SharedFile) -> None:
        self.stats["files_left"] += 1
        self.stats["bytes_left"] += file.size

    def _take_alerts(self) -> set[str]:
        """Counts blocks and failures; returns the info-hashes whose cache was flushed to their files."""
        flushed = set()
        for alert in self.session.pop_alerts():
            if isinstance(alert, lt.cache_flushed_alert):
                flushed.add(_key(alert.handle))
            elif isinstance(alert, lt.block_finished_alert):
                self._count_block(alert)
            elif isinstance(alert, lt.hash_failed_alert):
                self.stats["hash_failures"] += 1
                log.warning("BitTorrent: a piece of %s failed its hash check: thrown away, fetched again",
                            alert.torrent_name)
            elif isinstance(alert, lt.peer_ban_alert):
                log.warning("BitTorrent: peer %s banned: it sent data that failed the hash check", alert.endpoint[0])
        return flushed

    # ------------------------------------------------------------ peers

    def _join(self) -> dict:
        return self.join_server({"image": self.image_id, "listen": self.listen, "done": self._done})

    def _dial(self, peers: Sequence[str]) -> None:
        with self._lock:
            handles = list(self._handles)
        for peer in peers:
            host, _, port = peer.rpartition(":")
            if port.isdigit():
                for handle in handles:
                    handle.connect_peer((host, int(port)))

    def _rejoin_loop(self) -> None:
        while not self._stop.wait(self.rejoin_seconds):
            try:
                self._dial(self._join()["peers"])
            except Exception as err:  # the server gone or refusing: go on with the peers we know
                log.warning("BitTorrent: joining the swarm again failed (%s); going on with the peers known", err)

    # ------------------------------------------------------------ seeding on

    def linger(self) -> None:
        """Seed on (own session) until the server says every member is done or seed_seconds have passed."""
        if not self.owned:
            return
        deadline = time.monotonic() + self.seed_seconds
        next_join = 0.0
        while time.monotonic() < deadline:
            if time.monotonic() >= next_join:
                try:
                    answer = self._join()
                    if answer["all_done"]:
                        break
                    self._dial(answer["peers"])
                except Exception as err:
                    log.warning("BitTorrent: asking the server whether the swarm is done failed: %s", err)
                next_join = time.monotonic() + self.rejoin_seconds
            self.session.wait_for_alert(int(POLL * 1000))
            self._take_alerts()
            self.count()

    # ------------------------------------------------------------ statistics

    def _count_block(self, alert) -> None:
        """A 16 KiB block (or a file's last, shorter one) arrived: from the web seed or from a peer."""
        info = alert.handle.torrent_file()
        if info is None:
            return
        start = alert.block_index * BLOCK
        size = max(min(BLOCK, info.piece_size(alert.piece_index) - start), 0)
        where = "from_web_seed" if tuple(alert.endpoint) == self._server else "from_peers"
        self.stats[where] += size

    def count(self) -> None:
        """Bring stats["uploaded"] up to date (the caller does after a shared session seeded on)."""
        with self._lock:
            handles = list(self._handles)
        for handle in handles:
            self._uploaded[_key(handle)] = handle.status().total_payload_upload
        self.stats["uploaded"] = sum(self._uploaded.values())


def _key(handle) -> str:
    return str(handle.info_hash())


def web_seed_endpoint(url: str) -> tuple[str, int] | None:
    """(IPv4 address, port) the web seed's URL names: the endpoint its blocks come from."""
    parts = urlsplit(url)
    try:
        return socket.gethostbyname(parts.hostname or ""), parts.port or 80
    except (OSError, ValueError):
        return None
