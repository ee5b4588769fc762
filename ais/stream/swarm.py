"""BitTorrent chunk transport: a client that fetches an image's chunks from its swarm, and seeds.

What it does: `SwarmSource(header, torrent_bytes, join, listen_ip=..., staging_dir=...)` is a
`ChunkSource` for `ais.stream.writer.write_image` built on libtorrent (rasterbar). The torrent
(`ais.stream.torrent`) has one piece per chunk, so a finished piece is a finished chunk. A
libtorrent session listens on listen_ip only (the provisioning interface), over TCP only (uTP
is off: eight times slower here), with no DHT, no local service discovery, no peer exchange,
no UPnP or NAT-PMP and no tracker: the server is where peers find each other. `join(request)`
(the caller's; `ais.client.api.Api.swarm` behind it) posts {"image", "listen", "done"} to
`ais serve` and gets {"peers", "seed", "all_done"}: the first join happens before the torrent
is added; the session then dials the named peers (`connect_peer`) and adds the named web seed
(BEP 19, `ais serve` answering each chunk file with Range). A thread joins again every
`rejoin_seconds` to learn newcomers and keep the membership's lease; when the server is gone
those joins fail (logged, counted) and the swarm goes on with the peers it knows.

Each piece libtorrent finishes has passed its SHA-1 check (a piece that fails it is thrown
away and fetched again; a peer that alone sent a bad piece is banned, and its address then
blocked by an IP filter, which the server naming it again does not lift; the torrent is then
added again, so that no block of its stays in an unfinished piece to discredit an honest peer); it is read back
from its staged file (libtorrent writes it out shortly after the piece passed: looked at every
FLUSH_LOOK s; after FLUSH_WAIT s, `read_piece`, whose answer is the whole padded piece copied three
times, is asked instead) and yielded as (index, stored bytes), and the writer checks its sha256 against
the trusted header before writing it. Peers connect in the clear or with the protocol
encryption's obfuscated handshake (`encryption`, default "obfuscated": the info-hash never
crosses the wire in the clear, the payload does, as the web seed's HTTP does).

Staging: the Python binding of libtorrent cannot plug in a custom storage (the C++
`disk_interface` that writes pieces where one likes; `session_params.disk_io_constructor` is
a name the binding ignores), so libtorrent keeps the compressed chunks as files in
`staging_dir` (`<torrent name>/<index>`, pad files are not written): as much space as the
image's stored bytes. Pieces already there (a restarted client) are checked by libtorrent
when the torrent is added, and count as fetched.

The session may carry more torrents (the remainder's RPMs, ais.stream.rpmswarm: `session`,
`listen`); while `hold_done` is set the joins say not done, so that no member leaves before
those are shared too. After the write, `linger()` keeps seeding (joining with done=True) until the server says every
member is done or `seed_seconds` have passed. `stats` counts bytes from peers, from the web
seed, uploaded to peers, the peers seen, hash failures and banned peers, the pieces read back by
read_piece and the longest wait for a staged file.

What it reads: the trusted header, the torrent (checked against the header: piece i must be
chunk i), the join answers, the network. What it fails on: `SwarmStalled` (a `TransportStalled`)
when no payload arrives for `stall_timeout` seconds while pieces are missing, naming them (the
caller falls back to unicast); `StreamError` when the session cannot listen on listen_ip or
the staging directory cannot be written; `ImageFormatError` for a torrent that does not match
the header; what `join` raises on the first join. Returns (index, stored bytes) from `fetch`.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Callable, Iterator, Sequence

import libtorrent as lt

from ais.errors import StreamError, TransportStalled
from ais.stream.format import ImageHeader, chunk_hash_ok
from ais.stream.torrent import torrent_info

log = logging.getLogger("ais.stream.swarm")

ALERTS = (lt.alert.category_t.error_notification | lt.alert.category_t.status_notification
          | lt.alert.category_t.storage_notification | lt.alert.category_t.piece_progress_notification
          | lt.alert.category_t.peer_notification)
ENCRYPTION = {  # name: (policy for both directions, allowed level)
    "off": (lt.enc_policy.pe_disabled, lt.enc_level.pe_plaintext),
    "obfuscated": (lt.enc_policy.pe_forced, lt.enc_level.pe_plaintext),
    "rc4": (lt.enc_policy.pe_forced, lt.enc_level.pe_rc4),
}
POLL = 0.5  # seconds between looks at the session when no alert comes
FLUSH_LOOK = 0.02  # seconds between looks at the staged file of a piece that passed, until it is whole
FLUSH_WAIT = 2.0  # seconds a passed piece's staged file may take to become whole; then read_piece


class SwarmStalled(TransportStalled):
    """No payload from the swarm for the stall timeout while pieces are missing."""


def session_settings(listen_ip: str, encryption: str) -> dict:
    """libtorrent settings: one TCP listen socket on listen_ip, no discovery but the server's."""
    policy, level = ENCRYPTION[encryption]
    return {
        "listen_interfaces": f"{listen_ip}:0",
        "outgoing_interfaces": listen_ip,
        "enable_dht": False, "enable_lsd": False, "enable_upnp": False, "enable_natpmp": False,
        "enable_outgoing_utp": False, "enable_incoming_utp": False,
        "enable_outgoing_tcp": True, "enable_incoming_tcp": True,
        "out_enc_policy": policy, "in_enc_policy": policy, "allowed_enc_level": level, "prefer_rc4": False,
        "alert_mask": ALERTS,
        "user_agent": "ais-swarm/1", "peer_fingerprint": "-AI0001-",
        "hashing_threads": 1, "aio_threads": 2,  # a booting host has little to spare
        "connections_limit": 64,
        "auto_manage_startup": 0, "active_downloads": -1, "active_seeds": -1, "active_limit": -1,
        "seeding_outgoing_connections": True, "close_redundant_connections": False,
        "announce_to_all_tiers": False, "announce_to_all_trackers": False,
        "allow_multiple_connections_per_ip": False,
        # Parole mode held a peer whose piece failed to whole pieces of its own, and a lone liar was then
        # never banned and never asked again: the swarm stalled (test_stream_swarm's corrupt seed, 3 in 5
        # runs). Without it, libtorrent bans the only sender of a failed piece at once.
        "use_parole_mode": False,
        "urlseed_wait_retry": 2,  # a web seed that failed (the server restarting) is tried again soon
        # An https:// web seed is `ais serve` with the site CA's certificate, which the system store libtorrent
        # checks against does not hold. What the seed sends is checked piece by piece against the torrent,
        # which came from the server over TLS checked by the site CA; the chunks are public image bytes.
        "validate_https_trackers": False,
    }


def ranges_text(indexes: Sequence[int], shown: int = 12) -> str:
    """[0, 1, 2, 5, 7, 8] -> '0-2, 5, 7-8' (at most `shown` runs, then '...')."""
    runs: list[tuple[int, int]] = []
    for i in sorted(indexes):
        if runs and i == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], i)
        else:
            runs.append((i, i))
    text = ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in runs[:shown])
    return text + (", ..." if len(runs) > shown else "")


def open_session(listen_ip: str, encryption: str = "obfuscated") -> tuple[lt.session, str]:
    """A libtorrent session with `session_settings`, and the "IP:PORT" it listens on (StreamError
    when it cannot listen on listen_ip within 30 s)."""
    session = lt.session(session_settings(listen_ip, encryption), flags=0)  # no plugins: no ut_pex
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        session.wait_for_alert(int(POLL * 1000))
        for alert in session.pop_alerts():
            if isinstance(alert, lt.listen_failed_alert):
                raise StreamError(f"BitTorrent: cannot listen on {listen_ip}: {alert.message()}")
            if isinstance(alert, lt.listen_succeeded_alert) and alert.socket_type == lt.socket_type_t.tcp:
                return session, f"{listen_ip}:{alert.port}"
    raise StreamError(f"BitTorrent: the session did not start listening on {listen_ip} within 30 s")


class SwarmSource:
    """A ChunkSource fed by a BitTorrent swarm; a context manager (see the module docstring)."""

    def __init__(self, header: ImageHeader, torrent_bytes: bytes, join: Callable[[dict], dict], *,
                 listen_ip: str, staging_dir: Path, stall_timeout: float = 30.0, seed_seconds: float = 60.0,
                 rejoin_seconds: float = 5.0, encryption: str = "obfuscated", web_seed: bool = True):
        if encryption not in ENCRYPTION:
            raise StreamError(f"encryption must be one of {', '.join(ENCRYPTION)}, not {encryption!r}")
        self.header, self.join_server = header, join
        self.info = torrent_info(torrent_bytes, header)
        self.staging_dir = Path(staging_dir)
        layout = self.info.layout()
        self._staged = [self.staging_dir / layout.file_path(f) for f in range(layout.num_files())  # chunk i's file
                        if not layout.file_flags(f) & lt.file_storage.flag_pad_file]
        self.stall_timeout, self.seed_seconds, self.rejoin_seconds = stall_timeout, seed_seconds, rejoin_seconds
        self.web_seed = web_seed  # the lab turns it off to make peers the only source
        self.stats = {"from_peers": 0, "from_web_seed": 0, "uploaded": 0, "peers_seen": 0, "hash_failures": 0,
                      "banned": 0, "pieces": 0, "join_failures": 0,
                      "read_back": 0, "flush_wait_max": 0.0}  # see fetch: staged files, read_piece
        self._peers_seen: set[str] = set()
        self._banned: set[str] = set()  # IP addresses
        self._restart = False
        self._wanted: set[int] | None = None
        self._last_answer: dict | None = None
        self._web_bytes: dict[str, tuple[int, int]] = {}  # web seed endpoint -> (banked, last seen)
        self._done = False
        self._seed_url: str | None = None
        self._handle = None
        self._stop = threading.Event()
        self._joiner: threading.Thread | None = None
        self.hold_done = False  # while True, joins say not done (the remainder's RPMs still to come: ais.stream.rpmswarm)
        self._session, self.listen = open_session(listen_ip, encryption)

    # ------------------------------------------------------------ lifecycle

    def __enter__(self) -> "SwarmSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def session(self) -> lt.session:
        return self._session

    def close(self) -> None:
        self._stop.set()
        if self._joiner is not None:
            self._joiner.join(timeout=60)
        if self._handle is not None:
            self._count()
            self._session.remove_torrent(self._handle)
            self._handle = None
        self._session.pause()
        del self._session  # the session's threads stop with it

    def _start(self) -> None:
        """First join (the caller's join errors go to the caller), then the torrent, peers and web seed."""
        answer = self._join()
        self.staging_dir.mkdir(parents=True, exist_ok=True)
        self._add_torrent()
        self._follow(answer)
        self._joiner = threading.Thread(target=self._rejoin_loop, daemon=True, name="ais-swarm-join")
        self._joiner.start()

    def _add_torrent(self) -> None:
        atp = lt.add_torrent_params()
        atp.ti = self.info
        atp.save_path = str(self.staging_dir)
        atp.flags = (lt.torrent_flags.disable_dht | lt.torrent_flags.disable_lsd | lt.torrent_flags.disable_pex)
        self._handle = self._session.add_torrent(atp)
        if self._wanted is not None:
            self._set_priorities(self._wanted)

    def _join(self) -> dict:
        return self.join_server({"image": self.header.image_id, "listen": self.listen,
                                 "done": self._done and not self.hold_done})

    def _follow(self, answer: dict) -> None:
        """Dial the peers the server named (libtorrent skips those already connected) and use its web seed."""
        self._last_answer = answer
        for peer in answer["peers"]:
            host, _, port = peer.rpartition(":")
            if port.isdigit() and host not in self._banned:
                self._handle.connect_peer((host, int(port)))
        if self.web_seed and answer["seed"] != self._seed_url:
            if self._seed_url:
                self._handle.remove_url_seed(self._seed_url)
            self._seed_url = answer["seed"]
            self._handle.add_url_seed(self._seed_url)

    def _ban(self, ip: str) -> None:
        """Never talk to ip again, either way: libtorrent's own ban lasts only until the next
        connect_peer to it (the server keeps naming it), an IP filter does not."""
        if ip in self._banned:
            return
        self._banned.add(ip)
        self.stats["banned"] += 1
        log.warning("BitTorrent: peer %s banned: it sent data that failed the hash check", ip)
        rules = lt.ip_filter()
        for address in self._banned:
            rules.add_rule(address, address, 1)  # 1: blocked
        self._session.set_ip_filter(rules)
        self._restart = True  # see _restart_torrent

    def _restart_torrent(self) -> None:
        """Remove the torrent and add it again (the staged files stay; libtorrent checks them and
        keeps the verified pieces). A banned peer's blocks may sit in unfinished pieces: the honest
        peer that completed such a piece would fail the check with it and lose trust until it were
        banned in turn; a fresh torrent forgets both the unfinished pieces and the blame."""
        self._restart = False
        self._session.remove_torrent(self._handle)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(
                isinstance(a, lt.torrent_removed_alert) for a in self._session.pop_alerts()):
            self._session.wait_for_alert(int(POLL * 1000))
        self._add_torrent()
        if self._last_answer is not None:
            self._seed_url = None
            self._follow(self._last_answer)

    def _rejoin_loop(self) -> None:
        while not self._stop.wait(self.rejoin_seconds):
            try:
                self._follow(self._join())
            except Exception as err:  # the server gone or refusing: go on with the peers we know
                self.stats["join_failures"] += 1
                log.warning("BitTorrent: joining the swarm again failed (%s); going on with the peers known", err)

    # ------------------------------------------------------------ the ChunkSource

    def fetch(self, wanted: Sequence[int]) -> Iterator[tuple[int, bytes]]:
        if self._handle is None:
            self._start()
        remaining = set(wanted)
        self._wanted = set(remaining)
        self._set_priorities(remaining)
        reading: set[int] = set()  # asked of read_piece
        unflushed: dict[int, float] = {}  # passed, its staged file not yet whole: since when
        last_payload, last_progress = -1, time.monotonic()
        while remaining:
            self._session.wait_for_alert(int((FLUSH_LOOK if unflushed else POLL) * 1000))
            finished, ready = self._take_alerts()
            if self._restart:
                self._restart_torrent()
                reading.clear()
                unflushed.clear()
            status = self._handle.status()
            if status.state not in (lt.torrent_status.checking_files, lt.torrent_status.checking_resume_data):
                have = status.pieces  # a new list of every piece at each look: taken once
                finished |= {i for i in remaining if have and have[i]}
            now = time.monotonic()
            for i in (finished & remaining) - reading - unflushed.keys():
                unflushed[i] = now
            for i, since in list(unflushed.items()):
                staged = self._read_staged(i)
                if staged is not None:
                    ready.append((i, staged))
                    del unflushed[i]
                    self.stats["flush_wait_max"] = max(self.stats["flush_wait_max"], round(now - since, 3))
                elif now - since > FLUSH_WAIT:
                    self._handle.read_piece(i)
                    self.stats["read_back"] += 1
                    reading.add(i)
                    del unflushed[i]
            for index, data in ready:
                reading.discard(index)
                if index in remaining:
                    remaining.discard(index)
                    self.stats["pieces"] += 1
                    yield index, data
            now = time.monotonic()
            if status.total_payload_download != last_payload or ready:
                last_payload, last_progress = status.total_payload_download, now
            elif now - last_progress > self.stall_timeout:
                self._count()
                raise SwarmStalled(
                    f"BitTorrent swarm of image {self.header.image_id[:12]}: nothing for {self.stall_timeout:g} s; "
                    f"{len(remaining)} of {len(self.header.chunks)} chunks missing ({ranges_text(remaining)}); "
                    f"{status.num_peers} peers connected{'' if self._seed_url else ', no web seed'}, "
                    f"{status.num_seeds} of them seeds")
        self._done = True  # every wanted chunk handed over
        self._count()

    def _read_staged(self, index: int) -> bytes | None:
        """Chunk index's stored bytes read from its staged file, or None while that file does not hold
        them yet (libtorrent may flush its write cache after the piece passed; read_piece then).
        Cheaper than read_piece, whose answer is the whole padded piece copied three times."""
        try:
            with open(self._staged[index], "rb") as f:
                data = f.read(self.header.chunks[index].stored_length)
        except OSError:
            return None
        return data if chunk_hash_ok(self.header, index, data) else None

    def _set_priorities(self, wanted: set[int]) -> None:
        """Download only the wanted pieces (a resumed write needs the rest no more)."""
        self._handle.prioritize_pieces([4 if i in wanted else 0 for i in range(len(self.header.chunks))])

    def _take_alerts(self) -> tuple[set[int], list[tuple[int, bytes]]]:
        """(pieces finished, (index, stored bytes) read back) from the alerts waiting; counts the rest."""
        finished, ready = set(), []
        for alert in self._session.pop_alerts():
            if isinstance(alert, lt.piece_finished_alert):
                finished.add(alert.piece_index)
            elif isinstance(alert, lt.read_piece_alert):
                if alert.error.value():
                    log.warning("BitTorrent: reading piece %d back failed: %s", alert.piece, alert.error.message())
                    finished.add(alert.piece)  # asked again below
                else:
                    ready.append((alert.piece, bytes(alert.buffer[: self.header.chunks[alert.piece].stored_length])))
            elif isinstance(alert, lt.hash_failed_alert):
                self.stats["hash_failures"] += 1
                log.warning("BitTorrent: piece %d failed its hash check: thrown away, fetched again", alert.piece_index)
            elif isinstance(alert, lt.peer_ban_alert):
                self._ban(alert.endpoint[0])
            elif isinstance(alert, (lt.file_error_alert, lt.torrent_error_alert)):
                raise StreamError(f"BitTorrent: staging in {self.staging_dir} failed: {alert.message()}")
        self._count_peers()
        return finished, ready

    # ------------------------------------------------------------ seeding on

    def linger(self, *, until_all_done: bool = True) -> None:
        """Seed on until the server says every member is done (unless not until_all_done), or
        seed_seconds have passed."""
        if self._handle is None:
            return
        deadline = time.monotonic() + self.seed_seconds
        next_join = 0.0
        while time.monotonic() < deadline:
            if time.monotonic() >= next_join:
                try:
                    if self._join()["all_done"] and until_all_done:
                        break
                except Exception as err:
                    self.stats["join_failures"] += 1
                    log.warning("BitTorrent: asking the server whether the swarm is done failed: %s", err)
                next_join = time.monotonic() + self.rejoin_seconds
            self._session.wait_for_alert(int(POLL * 1000))
            self._take_alerts()
        self._count()

    # ------------------------------------------------------------ statistics

    def _count_peers(self) -> None:
        for peer in self._handle.get_peer_info():
            where = _endpoint(peer.ip)
            if peer.connection_type == lt.peer_info.web_seed:
                banked, last = self._web_bytes.get(where, (0, 0))
                if peer.total_download < last:  # a new connection: its counter started again
                    banked += last
                self._web_bytes[where] = (banked, peer.total_download)
            else:
                self._peers_seen.add(where)

    def _count(self) -> None:
        if self._handle is None:
            return
        self._count_peers()
        status = self._handle.status()
        web = sum(banked + last for banked, last in self._web_bytes.values())
        self.stats.update(from_web_seed=web, from_peers=max(status.total_payload_download - web, 0),
                          uploaded=status.total_payload_upload, peers_seen=len(self._peers_seen))


def _endpoint(address) -> str:
    host, port = address
    return f"{host}:{port}"
