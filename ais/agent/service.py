"""The agent: learns its groups' updates, installs them when idle (or at once when urgent), tells peers.

What it does: `Agent(config).run()` serves peers over HTTP (`ais.agent.routes`) and runs
Clumpt's protocols (installing itself is `ais.agent.install`):
- initialization: the group layout and the updates of its groups from the server (or,
  for a known host, the last layout when the server is down; a new host waits for it
  and says so), then a sync with a few peers of each group to learn what it missed;
- load-aware installation: pending updates are installed, all in one rpm transaction,
  once the host has been idle for the configured time; then a few random peers of the
  update's group are notified;
- immediate installation: an urgent update is fetched and installed at once, busy or
  not, and forwarded down the distribution tree the submitter chose (an away child is
  skipped for its children);
- group update: a peer that does not answer is marked away and the server is told; it
  is back when heard from; a periodic sync with a random peer of each group repairs
  any lost notice.
Every update is checked before it is kept: the site key's signature (so its sequence
number, group and packages are the server's), and a group this host is in. Every RPM is
checked against the update's size and sha256 before rpm sees it; a peer that sends
other bytes is skipped for the next source (peers first, the server last).
The target of a transaction is the fold of the known updates in sequence order
(`ais.updates.records.target_state`): two updates touching one package end in the same
state on every host, whatever order they arrived in.

Reads: its configuration (`AgentConfig`), the server, peers, the root's rpm database.
Fails with `WorldError` (its state cannot be written, its port cannot be bound).
Returns when stopped (SIGTERM/SIGINT, or `stop()`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from ais.agent.idle import IdleDetector, Load, Thresholds
from ais.agent.install import Installer, install_ops, seqs_text
from ais.agent.installdb import InstallDb, LocalRepo
from ais.agent.peers import Members, PeerUnreachable, Wire, tree_children
from ais.agent.routes import PeerApi
from ais.errors import WorldError
from ais.updates.records import Update, as_dict

log = logging.getLogger("ais.agent")


@dataclass(frozen=True)
class AgentConfig:
    host: str
    server: str
    token: str
    root: Path
    state: Path
    listen: tuple[str, int]
    update_key: str | None = None  # pinned public key; None: the server's, on first contact
    site_ca: Path | None = None  # the site CA an https:// server's certificate is checked by
    cgroup: str = ""
    thresholds: Thresholds = field(default_factory=Thresholds)
    fanout: int = 3
    init_peers: int = 3
    sync_seconds: float = 10.0
    refresh_seconds: float = 30.0
    sample_seconds: float = 1.0
    retry_seconds: float = 30.0


class Agent(PeerApi, Installer):
    """One host's agent: its state, its life, its protocols with peers; its HTTP side is
    `PeerApi` (ais.agent.routes), its installing `Installer` (ais.agent.install)."""

    def __init__(self, config: AgentConfig):
        self.cfg = config
        self.db = InstallDb(config.state)
        self.repo = LocalRepo(config.state / "packages")
        self.idle = IdleDetector(Load(config.cgroup), config.thresholds)
        self.wire = Wire(config.server, config.host, config.token, site_ca=config.site_ca)
        self.members = Members({}, config.host)
        self.groups: list[str] = []
        self.key = config.update_key
        self.stats = Counter()
        self.failed_at: dict[int, float] = {}
        self.waiting_told: set[int] = set()
        self.gone: set[str] = set()
        self.wake = asyncio.Event()
        self.stopping = asyncio.Event()
        self.background: set[asyncio.Task] = set()
        self.address = f"{config.listen[0]}:{config.listen[1]}"

    # ================================================================== life
    async def run(self) -> None:
        await self.wire.open()
        runner = web.AppRunner(self._app(), access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, *self.cfg.listen, reuse_address=True).start()
        except OSError as err:
            await runner.cleanup()
            await self.wire.close()
            raise WorldError(f"cannot listen on {self.address}: {err.strerror or err}") from err
        log.info("agent %s listening on %s, root %s", self.cfg.host, self.address, self.cfg.root)
        tasks = []
        try:
            await self.initialize()
            tasks = [asyncio.create_task(c) for c in (self._apply_loop(), self._sync_loop(), self._status_loop(),
                                                      self._idle_loop(), self._refresh_loop())]
            await self.stopping.wait()
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._say_offline()
            await runner.cleanup()
            await self.wire.close()
            self.db.close()
            log.info("agent stopped: %s", json.dumps(dict(self.stats), sort_keys=True))

    def stop(self) -> None:
        self.stopping.set()

    def _in_background(self, coroutine) -> None:
        """Run coroutine as a task the agent holds until it ends (asyncio keeps only weak references)."""
        task = asyncio.create_task(coroutine)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    # ================================================================== initialization
    async def initialize(self) -> None:
        start = time.monotonic()
        interrupted = self.db.interrupted()
        if interrupted:
            log.warning("the last transaction was interrupted (updates %s): the host stopped while applying; "
                        "they are applied again from what the rpm database holds now", seqs_text(interrupted))
        await self._fetch_layout(wait=True)
        server_done = time.monotonic()
        peers = {p for g in self.groups for p in self.members.random_peers(g, self.cfg.init_peers)}
        await asyncio.gather(*(self._sync_with(p, self.groups) for p in sorted(peers)))
        end = time.monotonic()
        self.stats["init_ms"] = round((end - start) * 1000)
        self.stats["init_sync_ms"] = round((end - server_done) * 1000)
        pending = self._pending()
        log.info("agent ready in %.2f s (server %.2f s, %d peers %.2f s): groups %s, %d updates known, %d pending",
                 end - start, server_done - start, len(peers), end - server_done, ",".join(self.groups),
                 len(self.db.known_seqs(self.groups)), len(pending))
        self.wake.set()

    async def _fetch_layout(self, wait: bool) -> bool:
        """The group layout and updates from the server; a known host goes on without it."""
        told = False
        while not self.stopping.is_set():
            try:
                layout = await self.wire.init()
                break
            except PeerUnreachable as err:
                cached = self.db.layout()
                if not wait or cached:
                    if cached and not self.groups:
                        self._use_layout(cached[0])
                        self.members.stale = True
                        log.warning("the server is unreachable (%s): going on with the group layout of %s",
                                    err, time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(cached[1])))
                    return False
                if not told:
                    log.warning("waiting for the server (%s): a new host needs its group layout first", err)
                    told = True
                await asyncio.sleep(2.0)
        else:
            return False
        if self.key is None:
            self.key = layout.get("update_key")
            log.warning("no --update-key given: trusting the server's update key %s (pin it)", self.key)
        layout["update_key"] = self.key
        self.db.save_layout(layout)
        self._use_layout(layout)
        self._accept(layout.get("updates", []), "server")
        await self._tell_server(online=True)
        return True

    def _use_layout(self, layout: dict) -> None:
        self.groups = sorted(layout.get("groups", ["all"]))
        away = self.members.away
        self.members = Members(layout, self.cfg.host)
        self.members.away = away
        self.key = self.key or layout.get("update_key")

    # ================================================================== telling peers
    async def _gossip(self, updates: list[Update]) -> None:
        """Load-aware propagation: tell a few random online peers of each update's group."""
        for group in sorted({u.group for u in updates}):
            docs = [as_dict(u) for u in updates if u.group == group]
            peers = self.members.random_peers(group, self.cfg.fanout)
            await asyncio.gather(*(self._notify(p, docs, None) for p in peers))

    async def _forward_urgent(self, updates: list[Update], tree: list[str]) -> None:
        """Immediate installation: fetch first (children fetch from us), then tell our tree children."""
        try:
            for op in install_ops(updates, None):
                await self._obtain(op, updates)
        except PeerUnreachable as err:
            log.warning("urgent updates %s: %s", seqs_text(u.seq for u in updates), err)
        docs = [as_dict(u) for u in updates]
        children = tree_children(tree, self.cfg.host)
        while children:
            results = await asyncio.gather(*(self._notify(c, docs, tree) for c in children))
            children = [g for c, ok in zip(children, results) if not ok for g in tree_children(tree, c)]

    async def _notify(self, peer: str, docs: list[dict], tree) -> bool:
        address = self.members.address(peer)
        if not address:
            return False
        try:
            await self.wire.notify(address, {"updates": docs, "from": self.cfg.host, "tree": tree})
            self.stats["notices_sent"] += 1
            return True
        except PeerUnreachable as err:
            self._peer_gone(peer, err)
            return False

    def _peer_gone(self, peer: str, err) -> None:
        if peer not in self.members.away:
            log.info("peer %s is away (%s): not waited for", peer, err)
        self.members.gone(peer)
        self.gone.add(peer)

    async def _sync_with(self, peer: str, groups: list[str]) -> None:
        address = self.members.address(peer)
        if not address:
            return
        try:
            answer = await self.wire.sync(address, groups, sorted(self.db.known_seqs(groups)))
        except PeerUnreachable as err:
            self._peer_gone(peer, err)
            return
        self.members.back(peer)
        self._accept(answer.get("updates", []), peer)

    # ================================================================== background
    async def _sync_loop(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.sync_seconds)
            for group in self.groups:
                for peer in self.members.random_peers(group, 1):
                    await self._sync_with(peer, [group])

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.refresh_seconds)
            await self._fetch_layout(wait=False)

    async def _idle_loop(self) -> None:
        while True:
            await asyncio.to_thread(self.idle.sample)
            if self.idle.idle():
                self.wake.set()
            await asyncio.sleep(self.cfg.sample_seconds)

    async def _status_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            if self.db.unreported() or self.gone:
                await self._tell_server(online=True)

    async def _tell_server(self, online: bool) -> bool:
        results, gone = self.db.unreported(), sorted(self.gone)
        try:
            await self.wire.status({"address": self.address, "online": online, "results": results, "gone": gone,
                                    "stats": dict(self.stats)})
        except PeerUnreachable as err:
            log.debug("status not delivered (%s): kept for later", err)
            return False
        self.db.reported(results)
        self.gone.difference_update(gone)
        return True

    async def _say_offline(self) -> None:
        try:
            await asyncio.wait_for(self._tell_server(online=False), timeout=2.0)
        except (TimeoutError, WorldError):
            pass


