"""The reboot window: at most N hosts reinstalling at once (Kadeploy's node window).

What it does: `Window(size, lease)` keeps which hosts hold a place, since when.
`admit(host, now)` gives a place to a host while fewer than `size` hold one
(size 0: no limit), keeps the place of a host that asks again (a retried plan
request, a reboot mid-install; its lease starts again), and refuses the rest;
`release(host)` frees a place (the host's "ok" or "failed" report); a place
whose lease ran out (`lease` seconds since the host's last admitted plan: it
died mid-install) is freed by the next `admit` or `expire`. `retry_after(host,
base)` is the wait a refused host is told: `base` plus a per-host share of up
to base/2 seconds, so a rack refused at one moment does not come back in
lock-step (the window frees one place at a time; the rest would be refused
again all together).

Pure and single-threaded: the caller holds a lock and passes the clock in
(`now`, seconds), so tests use a fake clock and never sleep.
Reads and fails on nothing. Returns `Admission` values and host lists.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Admission:
    admitted: bool
    again: bool  # the host already held a place
    holders: tuple[str, ...]  # who holds a place after this call, oldest first
    expired: tuple[str, ...]  # places freed by their lease running out during this call


class Window:
    """Who is reinstalling, as of the clock the caller passes."""

    def __init__(self, size: int, lease: float):
        if size < 0 or not lease > 0:
            raise ValueError(f"window size {size} must be >= 0 and lease {lease} > 0")
        self.size, self.lease = size, lease
        self._since: dict[str, float] = {}  # host -> time of its last admitted plan; insertion order = age

    def expire(self, now: float) -> tuple[str, ...]:
        """Free the places whose lease ran out; the hosts that lost theirs."""
        gone = tuple(h for h, since in self._since.items() if now - since >= self.lease)
        for host in gone:
            del self._since[host]
        return gone

    def admit(self, host: str, now: float) -> Admission:
        expired = self.expire(now)
        again = host in self._since
        admitted = again or not self.size or len(self._since) < self.size
        if admitted:
            self._since.pop(host, None)
            self._since[host] = now
        return Admission(admitted, again, self.holders(), expired)

    def release(self, host: str) -> bool:
        """Free the host's place; False when it held none."""
        return self._since.pop(host, None) is not None

    def holders(self) -> tuple[str, ...]:
        return tuple(self._since)

    def retry_after(self, host: str, base: int) -> int:
        share = int.from_bytes(hashlib.sha256(host.encode()).digest()[:4], "big") % (base // 2 + 1)
        return base + share
