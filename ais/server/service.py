"""The `ais serve` process: control API + package/file serving + embedded block streamer.

What it does: `Server(config)` loads the first snapshot (`StateHolder`; a
broken site refuses to start), opens the history database, starts the
streamer's `StreamServer` on the cache's images/ directory (TCP, and
multicast when a group is configured) and binds the control API's socket
(`ais.server.http.HttpServer`, aiohttp's web server in an event loop with a
bounded worker pool; HTTPS with the site CA's certificate when the
config names one, ais.siteca; with `boot_listen`, a second, plain-HTTP listener that answers
/v1/boot/* only, for firmware that cannot check the CA; `api_url(where)` is the API's URL
its iPXE scripts name) and keeps the reboot window (`ais.server.window`: how
many hosts may reinstall at once), the chain board (`ais.server.chain`: who forwards an
image to whom) and the board of BitTorrent swarms (`ais.server.swarm`: who shares which
image, the web seed's keys; `stop()` logs `swarm statistics: {json}`), the live board
(`ais.server.live`: the reinstalls in progress, for the console) and the RPMs' torrents
(`ais.server.rpmtorrents`: made on first request, cached in the cache's torrents/; `stop()`
logs `package statistics: {json}`, the RPM bytes sent). `start()` runs both
servers in threads, `stop()` shuts both down.

Images stay streamable while a rebuild replaces the manifest: the stream
server opens an image file when a transfer starts, so a transfer in flight
keeps reading an image the rebuild's gc unlinks (the open file keeps the
inode); a *new* request for an image no longer published finds no file, and
the control API no longer hands that image out (tests/integration/
test_server_reload.py checks both).

Reads: `Config`. Fails with `UsageError` for an advertised address that
cannot work (binding 0.0.0.0 without --advertise) and a TLS certificate that is
missing, expired or not one, `StreamError`/`WorldError`
when a port cannot be bound or the history cannot be opened, and whatever
loading the site raises. Returns nothing; `addresses()` tells where it listens.
"""

from __future__ import annotations

import json
import logging
import socket
from dataclasses import dataclass, field
from pathlib import Path

from ais.errors import UsageError, WorldError
from ais.server.chain import ChainBoard
from ais.siteca import server_context
from ais.server.history import History
from ais.server.http import HttpServer, Limits
from ais.server.images import ImageChecker
from ais.server.live import LiveBoard
from ais.server.plans import Endpoints, host_plan, manifest_cost
from ais.server.state import StateHolder
from ais.server.rpmtorrents import RpmTorrents
from ais.server.swarm import SwarmBoard
from ais.server.window import Window
from ais.stream.server import StreamServer
from ais.updates.signing import load_or_make_key, public_hex, update_key_path
from ais.updates.store import UpdateStore

log = logging.getLogger("ais.server")


@dataclass(frozen=True)
class Config:
    descriptors: Path
    repo: Path
    cache: Path
    listen: tuple[str, int] = ("127.0.0.1", 8470)
    stream_listen: tuple[str, int] = ("127.0.0.1", 8471)
    multicast: tuple[str, int] | None = None
    multicast_interface: str = "127.0.0.1"
    multicast_rate: float = 100e6
    transport: str = "unicast"  # how images travel unless a host's HCD says otherwise (ais.model.TRANSPORTS)
    advertise: str | None = None  # address clients dial for the stream; default: the bound one
    history: Path = Path("build/history.sqlite")
    update_key: Path | None = None  # the update signing key; None: update-key.pem beside the history
    max_report_bytes: int = 1 << 20
    poll_seconds: float = 1.0
    limits: Limits = field(default_factory=Limits)
    boot_target: str | None = None  # the disk iPXE scripts name (ais.target=); None: no boot scripts
    boot_append: str = ""  # more kernel arguments for iPXE scripts (console=ttyS0 ...)
    reboot_window: int = 0  # hosts reinstalling at once; 0: no limit (ais.server.window)
    window_retry: int = 10  # seconds a refused host is told to wait (Retry-After), plus its per-host share
    window_lease: float = 1800.0  # seconds a place is held without an ok/failed report
    chain_gather: float = 2.0  # seconds a new chain gathers joins before answering them (ais.server.chain)
    admin_token: str | None = None  # opens the console to the network; None: loopback only (ais.server.console_routes)
    tls_cert: Path | None = None  # HTTPS with this certificate and tls_key (ais.siteca); None: plain HTTP
    tls_key: Path | None = None
    boot_listen: tuple[str, int] | None = None  # plain HTTP for the boot files and iPXE scripts only; None: none


class Server:
    """One `ais serve`: see the module docstring."""

    def __init__(self, config: Config):
        self.config = config
        if config.stream_listen[0] in ("0.0.0.0", "") and not config.advertise:
            raise UsageError("the stream listens on all addresses: give --advertise ADDRESS "
                             "(the address clients dial)")
        tls = server_context(config.tls_cert, config.tls_key) if config.tls_cert else None  # refused before any port
        self.max_report_bytes = config.max_report_bytes
        self.state = StateHolder(config.descriptors, config.repo, config.cache, poll_seconds=config.poll_seconds)
        self.checker = ImageChecker()
        self.window = Window(config.reboot_window, config.window_lease)
        self.chains = ChainBoard(gather=config.chain_gather)
        self.swarm = SwarmBoard()  # BitTorrent swarms: members, web-seed keys (ais.server.swarm)
        self.live = LiveBoard()  # the reinstalls in progress, from plans and reports (ais.server.live)
        self.rpm_torrents = RpmTorrents(config.cache)  # RPM torrents, their askers, RPM bytes sent
        self.history = History(config.history)
        self.updates = UpdateStore(config.history)  # the agents' global state (ais.updates.store)
        self.update_key = public_hex(load_or_make_key(config.update_key or update_key_path(config.history)))
        images = Path(config.cache) / "images"
        images.mkdir(parents=True, exist_ok=True)
        self.stream = StreamServer(images, host=config.stream_listen[0], port=config.stream_listen[1],
                                   multicast=config.multicast,
                                   multicast_interface=config.multicast_interface, rate=config.multicast_rate)
        try:
            sock = socket.create_server(config.listen, backlog=256)
        except OSError as err:
            self.stream.stop()
            raise WorldError(f"cannot listen on {config.listen[0]}:{config.listen[1]}: {err}") from err
        self.http = HttpServer(self, sock, config.limits, tls)
        self.scheme = "https" if tls else "http"
        self.boot_http = self._boot_listener(sock) if config.boot_listen else None

    def _boot_listener(self, api_sock) -> HttpServer:
        """Plain HTTP for what firmware fetches (iPXE scripts, kernel, initrd): stock iPXE cannot check
        the site CA. Everything else asked there gets 404."""
        try:
            sock = socket.create_server(self.config.boot_listen, backlog=256)
        except OSError as err:
            self.stream.stop()
            api_sock.close()
            host, port = self.config.boot_listen
            raise WorldError(f"cannot listen on {host}:{port} (--boot-listen): {err}") from err
        return HttpServer(self, sock, self.config.limits, None, boot_only=True)

    def api_url(self, where: str) -> str:
        """The API's URL at the host part of `where` (a Host header: host[:port])."""
        host = where if where.endswith("]") or ":" not in where else where.rsplit(":", 1)[0]
        return f"{self.scheme}://{host}:{self.http.address[1]}"

    def endpoints(self) -> Endpoints:
        host, port = self.stream.address
        advertised = self.config.advertise or host
        mcast = self.config.multicast
        return Endpoints(tcp=f"{advertised}:{port}", multicast=f"{mcast[0]}:{mcast[1]}" if mcast else None,
                         transport=self.config.transport)

    def plan_for(self, snapshot, host) -> dict:
        return host_plan(snapshot, host, self.checker, manifest_cost(snapshot.manifest), self.endpoints())

    def addresses(self) -> dict:
        h_host, h_port = self.http.address
        s_host, s_port = self.stream.address
        return {"http": f"{h_host}:{h_port}", "url": f"{self.scheme}://{h_host}:{h_port}",
                "stream_tcp": f"{s_host}:{s_port}",
                "multicast": self.endpoints().multicast,
                "boot_url": "http://{}:{}".format(*self.boot_http.address) if self.boot_http else None,
                "generation": self.state.current().generation}

    def start(self) -> "Server":
        self.stream.start()
        self.http.start()
        if self.boot_http:
            self.boot_http.start()
        log.info("serving %s (stream tcp %s, multicast %s), manifest generation %d, reboot window %s",
                 self.addresses()["url"], self.endpoints().tcp, self.endpoints().multicast or "off",
                 self.state.current().generation, self._window_text())
        return self

    def _window_text(self) -> str:
        c = self.config
        if not c.reboot_window:
            return "off (no limit)"
        return f"{c.reboot_window} hosts (retry {c.window_retry} s, lease {c.window_lease:g} s)"

    def stop(self) -> None:
        if self.boot_http:
            self.boot_http.stop()
        self.http.stop()
        self.stream.stop()
        if self.swarm.stats():
            log.info("swarm statistics: %s", json.dumps(self.swarm.stats(), sort_keys=True))
        log.info("package statistics: %s", json.dumps(self.rpm_torrents.stats(), sort_keys=True))

    def __enter__(self) -> "Server":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
