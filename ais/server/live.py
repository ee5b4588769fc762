"""The reinstalls in progress, as their reports come in: what the console shows live.

What it does: `LiveBoard` keeps one entry per host, in memory only (the history
database keeps the finished reports; this keeps what is happening now):
- `planned(host, scd, image, at)`: the server answered the host's plan
  (`Routes.plan`): an install starts, state "installing", phase "plan" (a host
  that asks again while installing keeps its start);
- `progress(host, phase, done, total, at)`: a "progress" report (the client
  posts one at the start of each phase, and while the image is written or the
  packages fetched: `done` of `total` bytes or packages); a host not on the
  board, or whose last install is over, starts an entry;
- `finished(host, status, phase, message, at)`: an "ok" or "failed" report: state
  "installed" or "failed", with the failing phase and its message;
- `snapshot(now)`: the entries as `LiveInstall`s, installing first (oldest start
  first), then the finished ones (newest first). An entry installing with no
  word for `silent_after` seconds shows state "silent" (the host may be dead).
  `step` is the 1-based place of the phase in the client's order
  (`ais.contracts.CLIENT_PHASES`, `steps` long), None for a phase outside it.

Finished entries drop `keep_seconds` after their report. At most `max_entries`
are kept: a new host beyond that pushes out the oldest finished entry, else
the one silent longest. Times are the server's clock (seconds since 1970), as
the caller passes them. One lock guards the board; every call is short.

Reads: nothing. Fails on nothing. Returns `LiveInstall` lists.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace

from ais.contracts import CLIENT_PHASES

INSTALLING, SILENT, INSTALLED, FAILED = "installing", "silent", "installed", "failed"
FINISHED = {"ok": INSTALLED, "failed": FAILED}


@dataclass(frozen=True)
class LiveInstall:
    """One host's install as the board knows it (plain data; times: server clock)."""

    host: str
    scd: str | None
    image: str | None
    state: str  # installing | silent | installed | failed
    phase: str | None
    step: int | None  # 1-based place of phase in CLIENT_PHASES; None outside it
    steps: int
    done: int | None  # bytes (phase image) or packages (phase install) so far
    total: int | None
    started_at: float
    updated_at: float
    message: str | None = None


def step_of(phase: str | None) -> int | None:
    return CLIENT_PHASES.index(phase) + 1 if phase in CLIENT_PHASES else None


class LiveBoard:
    """See the module docstring."""

    def __init__(self, *, silent_after: float = 300.0, keep_seconds: float = 3600.0, max_entries: int = 10_000):
        self.silent_after, self.keep_seconds = silent_after, keep_seconds
        self.max_entries = max(1, max_entries)
        self._lock = threading.Lock()
        self._entries: dict[str, LiveInstall] = {}

    def planned(self, host: str, scd: str | None, image: str | None, at: float) -> None:
        with self._lock:
            old = self._entries.get(host)
            if old is not None and old.state == INSTALLING and at - old.updated_at <= self.silent_after:
                started = old.started_at  # asked again (or posted "plan" first): the same install
            else:
                started = at
            self._put(_entry(host, "plan", None, None, started, at, scd=scd, image=image))

    def progress(self, host: str, phase: str, done: int | None, total: int | None, at: float) -> None:
        with self._lock:
            old = self._entries.get(host)
            if old is None or old.state != INSTALLING:
                self._put(_entry(host, phase, done, total, at, at))
            else:
                self._entries[host] = replace(old, phase=phase, step=step_of(phase), done=done, total=total,
                                              updated_at=at)

    def finished(self, host: str, status: str, phase: str | None, message: str | None, at: float) -> None:
        state = FINISHED.get(status)
        if state is None:
            return  # rebooting, up: after the install, not part of it
        with self._lock:
            old = self._entries.get(host)
            if old is None or old.state != INSTALLING:
                old = _entry(host, phase, None, None, at, at)
            phase = phase or old.phase
            self._put(replace(old, state=state, phase=phase, step=step_of(phase), done=None, total=None,
                              updated_at=at, message=message))

    def snapshot(self, now: float) -> list[LiveInstall]:
        with self._lock:
            self._expire(now)
            entries = list(self._entries.values())
        running = sorted((e for e in entries if e.state == INSTALLING), key=lambda e: (e.started_at, e.host))
        over = sorted((e for e in entries if e.state != INSTALLING), key=lambda e: (-e.updated_at, e.host))
        return [replace(e, state=SILENT) if now - e.updated_at > self.silent_after else e for e in running] + over

    # ------------------------------------------------------------ under the lock

    def _put(self, entry: LiveInstall) -> None:
        if entry.host not in self._entries and len(self._entries) >= self.max_entries:
            self._expire(entry.updated_at)
            if len(self._entries) >= self.max_entries:
                del self._entries[self._first_to_go()]
        self._entries[entry.host] = entry

    def _first_to_go(self) -> str:
        """The oldest finished entry; when none is finished, the one silent longest."""
        finished = [e for e in self._entries.values() if e.state != INSTALLING]
        return min(finished or self._entries.values(), key=lambda e: (e.updated_at, e.host)).host

    def _expire(self, now: float) -> None:
        gone = [h for h, e in self._entries.items() if e.state != INSTALLING and now - e.updated_at > self.keep_seconds]
        for host in gone:
            del self._entries[host]


def _entry(host: str, phase: str | None, done: int | None, total: int | None, started: float, at: float, *,
           scd: str | None = None, image: str | None = None) -> LiveInstall:
    return LiveInstall(host=host, scd=scd, image=image, state=INSTALLING, phase=phase, step=step_of(phase),
                       steps=len(CLIENT_PHASES), done=done, total=total, started_at=started, updated_at=at)
