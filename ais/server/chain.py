"""The chain board: which client forwards an image to which, for the pipelined chain transport.

What it does: `ChainBoard` keeps, per image, one chain: a random key and the
ordered members (host name, listen address "IP:PORT", alive). A join puts the
host at the tail (its upstream: the nearest live member before it, or None for
the first member, which fetches from the server's TCP stream). A host that
reports its upstream lost gets that member marked dead and the nearest live
member before it as its new upstream (the gap closes; None: the server). A
member reported lost stays out: if it is alive after all, it is answered the
server, never a live member (it would take its follower's place). A
host that says it is done ("leave") is no longer alive. Answers to the joins
of a new chain are held until `gather` seconds after its first join, so the
hosts of a rack that boots together form one chain before the head starts,
or until every host expected has joined and no plan has named the image by
chain for `quiet` seconds (hosts of a rack ask one after another), whichever
comes first: a host is
expected once the server has given it a plan that sends this image by chain
(`expect`), for `gather` + `expect_for` seconds (a host that got its plan and
died does not hold the others longer than the gather window). `ready_at`
says when the answers may go; it is asked again while they wait (the HTTP
side waits, the board never sleeps). A member
not heard of for `lease` seconds is dropped; a chain with no live member left
is forgotten, and the next join starts a new chain with a new key. Every
join, loss, gap closing, leave and expiry is logged, one line each.

Reads: nothing but its arguments; the clock is `time.monotonic` unless a test
gives `now`. Fails on nothing: the route checks requests before they get here
(a `lost` that is not the asker's current upstream is logged and ignored).
Returns: `join` and `ready_at` the monotonic time the answer may be given; `answer` the dict
`{"upstream": "IP:PORT" | None, "key": HEX, "position": N, "downstream": bool}`
(downstream: a live member after this one will connect to it).
Thread-safe: one lock around every call.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from dataclasses import dataclass, field

log = logging.getLogger("ais.server.chain")


@dataclass
class Member:
    host: str
    listen: str
    seen: float
    alive: bool = True


@dataclass
class Chain:
    key: str
    started: float  # the first join: answers wait until started + gather
    members: list[Member] = field(default_factory=list)

    def live(self) -> bool:
        return any(m.alive for m in self.members)

    def index_of(self, host: str) -> int | None:
        """The host's latest place in the chain (a host that joined again has an older, dead one)."""
        for i in range(len(self.members) - 1, -1, -1):
            if self.members[i].host == host:
                return i
        return None

    def upstream_of(self, i: int) -> Member | None:
        return next((m for m in reversed(self.members[:i]) if m.alive), None)

    def has_downstream(self, i: int) -> bool:
        return any(m.alive for m in self.members[i + 1:])


class ChainBoard:
    """The chains of every image being sent by chain; see the module docstring."""

    def __init__(self, gather: float = 2.0, lease: float = 1800.0, expect_for: float = 600.0, quiet: float = 3.0):
        self.gather, self.lease, self.expect_for = gather, lease, expect_for
        self.quiet = quiet  # an early start also waits this long after the image's last plan (others may follow)
        self._last_plan: dict[str, float] = {}
        self._chains: dict[str, Chain] = {}
        self._expected: dict[str, dict[str, float]] = {}  # image -> host -> when its plan named the chain
        self._lock = threading.Lock()

    def expect(self, image: str, host: str, *, now: float | None = None) -> None:
        """host was given a plan that sends image by chain: its join is waited for."""
        now = time.monotonic() if now is None else now
        with self._lock:
            self._expected.setdefault(image, {})[host] = now
            self._last_plan[image] = now

    def ready_at(self, image: str, *, now: float | None = None) -> float:
        """When the answers to the joins of image's chain may go: at the end of the gather window, or
        now if every host expected has joined."""
        now = time.monotonic() if now is None else now
        with self._lock:
            chain = self._chains.get(image)
            if chain is None:
                return now
            if self._all_expected_joined(image, chain, now):
                return min(max(now, self._last_plan.get(image, 0.0) + self.quiet), chain.started + self.gather)
            return chain.started + self.gather

    def _all_expected_joined(self, image: str, chain: Chain, now: float) -> bool:
        expected = self._expected.get(image, {})
        for host, since in list(expected.items()):
            if now - since > self.gather + self.expect_for:
                del expected[host]
        joined = {m.host for m in chain.members}
        return bool(expected) and set(expected) <= joined

    def join(self, image: str, host: str, listen: str, lost: str | None = None, *, now: float | None = None) -> float:
        """Record a join (lost None) or a lost upstream; returns when the answer may be given."""
        now = time.monotonic() if now is None else now
        with self._lock:
            self._expire(now)
            chain = self._chains.get(image)
            if chain is None:
                chain = self._chains[image] = Chain(secrets.token_hex(32), now)
                log.info("chain %s: new chain (gathering joins for %g s)", image[:12], self.gather)
            i = chain.index_of(host)
            if lost is None or i is None:
                self._append(image, chain, host, listen, now)
            else:
                self._lose(image, chain, i, listen, lost, now)
            if now < chain.started + self.gather and self._all_expected_joined(image, chain, now):
                log.info("chain %s: every host expected has joined (%d): the chain starts", image[:12],
                         len(self._expected[image]))
                return min(max(now, self._last_plan.get(image, 0.0) + self.quiet), chain.started + self.gather)
            return max(now, chain.started + self.gather)

    def answer(self, image: str, host: str) -> dict:
        """Where host gets the image from now: its live upstream (None: the server), the key, its place.
        The host's join is answered: it is no longer expected."""
        with self._lock:
            self._expected.get(image, {}).pop(host, None)
            chain = self._chains.get(image)
            i = chain.index_of(host) if chain else None
            if chain is None or i is None:  # forgotten meanwhile (every lease ran out): from the server
                return {"upstream": None, "key": None, "position": 0, "downstream": False}
            if not chain.members[i].alive:  # out of the chain: from the server, followed by nobody
                return {"upstream": None, "key": chain.key, "position": i, "downstream": False}
            up = chain.upstream_of(i)
            return {"upstream": up.listen if up else None, "key": chain.key, "position": i,
                    "downstream": chain.has_downstream(i)}

    def leave(self, image: str, host: str, *, now: float | None = None) -> None:
        """host is done with image: it forwards nothing more."""
        now = time.monotonic() if now is None else now
        with self._lock:
            chain = self._chains.get(image)
            i = chain.index_of(host) if chain else None
            if chain is not None and i is not None and chain.members[i].alive:
                chain.members[i].alive = False
                log.info("chain %s: %s leaves (done) from position %d", image[:12], host, i)
            self._expire(now)

    def members(self, image: str) -> list[tuple[str, str, bool]]:
        """(host, listen, alive) of each member of image's chain, in order; [] if there is none."""
        with self._lock:
            chain = self._chains.get(image)
            return [(m.host, m.listen, m.alive) for m in chain.members] if chain else []

    def _append(self, image: str, chain: Chain, host: str, listen: str, now: float) -> None:
        old = chain.index_of(host)
        if old is not None and chain.members[old].alive:
            chain.members[old].alive = False
            log.info("chain %s: %s joins again: its place %d is closed", image[:12], host, old)
        up = chain.upstream_of(len(chain.members))
        chain.members.append(Member(host, listen, now))
        log.info("chain %s: %s (%s) joins at position %d after %s", image[:12], host, listen,
                 len(chain.members) - 1, f"{up.host} ({up.listen})" if up else "the server")

    def _lose(self, image: str, chain: Chain, i: int, listen: str, lost: str, now: float) -> None:
        me = chain.members[i]
        me.seen, me.listen = now, listen
        if not me.alive:  # it was reported lost itself: it stays out, and takes nobody's place
            log.info("chain %s: %s, out of the chain, reports %s lost: it gets the rest from the server",
                     image[:12], me.host, lost)
            return
        up = chain.upstream_of(i)
        if up is None or up.listen != lost:
            log.info("chain %s: %s reports %s lost, which is not its upstream (%s): ignored", image[:12],
                     me.host, lost, up.listen if up else "the server")
            return
        up.alive = False
        log.info("chain %s: %s reports its upstream %s (%s) lost", image[:12], me.host, up.host, up.listen)
        new = chain.upstream_of(i)
        log.info("chain %s: gap closed: %s now follows %s", image[:12], me.host,
                 f"{new.host} ({new.listen})" if new else "the server")

    def _expire(self, now: float) -> None:
        for image, chain in list(self._chains.items()):
            for m in chain.members:
                if m.alive and now - m.seen > self.lease:
                    m.alive = False
                    log.info("chain %s: %s not heard of for %g s: dropped", image[:12], m.host, self.lease)
            if not chain.live() and now >= chain.started + self.gather:
                del self._chains[image]
                log.info("chain %s: every member is done or gone: chain forgotten", image[:12])
