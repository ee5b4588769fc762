"""Installing: which pending updates go into the next rpm transaction, their packages, the transaction.

What it does: `Installer`, a part of `ais.agent.service.Agent`, runs the apply loop:
pending updates (known, for its groups, not applied, not failed in the last
`retry_seconds`, not failed for good: rpm ran and a scriptlet failed, which rpm cannot undo
and a retry would not change) are installed all at once when the host is idle, only the urgent ones
while it is busy (the others are reported "waiting" with the reason). A transaction's
target is the fold of the applied and the batch's updates in sequence order
(`ais.updates.records.target_state`); `transaction_plan` turns it into the NEVRAs to
install and the names to erase against the rpm database as it is now (a name held twice,
an upgrade a power cut stopped half-way, is installed again). Packages come from the local
repository, else the peer that told us, two random peers, then the server; each is kept
only if its size and sha256 are the signed ones. The transaction runs in a child
(`ais.agent.transaction`); its updates are marked "applying" meanwhile, so a host switched
off in the middle applies them again at its next start. A batch that fails is retried
update by update, so one bad update does not hold back the others.

Reads: the Agent's db, repo, idle, members, wire, cfg, stats. Fails: never raises for a
failed update (it is recorded "failed" with rpm's or the network's words). Returns nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from pathlib import Path

from ais.agent import transaction
from ais.agent.installdb import FAILED_FOR_GOOD
from ais.agent.peers import PeerUnreachable
from ais.errors import WorldError
from ais.rpmenv import installed_nevras
from ais.updates.records import NEVRA, Update, delta, target_state

log = logging.getLogger("ais.agent")


class Installer:
    """Mixed into `ais.agent.service.Agent`."""

    def _pending(self) -> list[Update]:
        settled = self.db.settled_seqs()
        now = time.monotonic()
        return [u for u in self.db.known(self.groups) if u.seq not in settled
                and now - self.failed_at.get(u.seq, -1e9) >= self.cfg.retry_seconds]

    async def _apply_loop(self) -> None:
        while True:
            self.wake.clear()
            pending = self._pending()
            urgent = [u for u in pending if u.urgent]
            batch = pending if self.idle.idle() else urgent
            if batch:
                await self._apply(batch)
                continue
            if pending:
                self._tell_waiting(pending)
            try:
                await asyncio.wait_for(self.wake.wait(), timeout=self.cfg.sample_seconds)
            except TimeoutError:
                pass

    def _tell_waiting(self, pending: list[Update]) -> None:
        new = [u.seq for u in pending if u.seq not in self.waiting_told]
        if new:
            self.waiting_told.update(new)
            self.db.mark(new, "waiting", f"busy: {self.idle.why}")
            log.info("updates %s wait for idle (%s)", seqs_text(new), self.idle.why)

    async def _apply(self, batch: list[Update]) -> None:
        ok = await self._transact(batch)
        if not ok and len(batch) > 1:  # one bad update must not hold back the others
            for update in batch:
                await self._transact([update])
        applied = self.db.applied_seqs()
        await self._gossip([u for u in batch if u.seq in applied])

    async def _transact(self, batch: list[Update]) -> bool:
        seqs = [u.seq for u in batch]
        start = time.monotonic()
        applied = self.db.applied_seqs()
        known = [u for u in self.db.known(self.groups) if u.seq in applied] + batch
        target = target_state(known)
        try:
            installed = await asyncio.to_thread(installed_nevras, self.cfg.root)
            put, erase = transaction_plan(target, installed)
            paths = [str(await self._obtain(op, batch)) for op in install_ops(known, put)]
        except (PeerUnreachable, WorldError) as err:
            return self._failed(seqs, f"nothing applied: cannot get what the update needs: {err}")
        self.db.begin_applying(seqs)
        answer = await asyncio.to_thread(transaction.apply, str(self.cfg.root), paths, erase)
        self.db.end_applying()
        if answer["problems"]:
            return self._failed(seqs, "nothing applied: " + "; ".join(answer["problems"])[:1500])
        if answer["script_errors"]:  # rpm cannot roll back: say so, and do not pretend a retry fixes it
            return self._failed(seqs, "rpm installed the packages but a scriptlet failed (not retried; a later "
                                      "update or a reinstall repairs it): " + "; ".join(answer["script_errors"])[:1500],
                                for_good=True)
        self.db.mark(seqs, "applied", f"{len(put)} installed, {len(erase)} erased")
        self.stats["transactions"] += 1
        self.stats["applied"] += len(seqs)
        log.info("applied updates %s in one transaction (%d installed or up/downgraded, %d erased) in %.2f s",
                 seqs_text(seqs), len(put), len(erase), time.monotonic() - start)
        return True

    def _failed(self, seqs: list[int], why: str, for_good: bool = False) -> bool:
        now = time.monotonic()
        for s in seqs:
            self.failed_at[s] = now
        self.db.mark(seqs, FAILED_FOR_GOOD if for_good else "failed", why)
        self.stats["failed"] += len(seqs)
        log.error("updates %s failed: %s", seqs_text(seqs), why)
        return False

    async def _obtain(self, op, batch: list[Update]) -> Path:
        """op's RPM: the local repository, else the peer that told us, other peers, then the server."""
        held = self.repo.get(op)
        if held:
            return held
        update = next((u for u in batch if op in u.ops), batch[0])
        told_by = self.db.heard_from(update.seq)
        peers = [told_by] if told_by and told_by != "server" else []
        peers += self.members.random_peers(update.group, 2, exclude=peers)
        for who, url in self.wire.package_urls(peers, self.members, op.file):
            try:
                data = await self.wire.package(url, op.size)
                path = await asyncio.to_thread(self.repo.put, op, data)
            except PeerUnreachable:
                continue
            except ValueError as err:
                self.stats["refused_packages"] += 1
                log.warning("refused %s from %s: %s", op.file, who, err)
                continue
            self.stats["bytes_from_server" if who == "server" else "bytes_from_peers"] += len(data)
            return path
        raise PeerUnreachable(f"no peer nor the server could give {op.file}")


def install_ops(updates: list[Update], nevras) -> list:
    """The install ops (latest first wins) whose NEVRA is in nevras (None: all)."""
    by_nevra = {}
    for u in sorted(updates, key=lambda u: u.seq):
        for op in u.files:
            by_nevra[op.nevra] = op
    return [op for n, op in sorted(by_nevra.items()) if nevras is None or n in nevras]


def transaction_plan(target: dict, installed: set[str]) -> tuple[list[str], list[str]]:
    """(NEVRAs to install or up/downgrade to, names to erase) to bring the rpm database to target."""
    put, erase = delta(target, installed)
    return sorted({*put, *_cut_short(target, installed)}), erase


def _cut_short(target: dict, installed: set[str]) -> list[str]:
    """Target NEVRAs of the names the rpm database holds more than once: an upgrade that a power
    cut stopped half-way (the new header added, the old one not yet erased). Installing the
    target again (rpm's upgrade, replacing an installed package) leaves it alone, once."""
    names = Counter(m["name"] for m in map(NEVRA.fullmatch, installed) if m)
    return [nevra for name, nevra in target.items() if nevra is not None and names[name] > 1]


def seqs_text(seqs) -> str:
    """'3,4,9': sequence numbers for a log line."""
    return ",".join(str(s) for s in sorted(seqs))
