"""Progress posts to the server's live board while a reinstall runs: best effort, never in the way.

What it does: `Notifier(session, api)` is the session's `notify` (set by
`ais.client.steps.api_of`). `Session.phase` calls `notify(phase)` as each step
starts: a "progress" report with that phase is posted at once. The image and
install steps call `notify(phase, done, total)` as bytes are written and
packages fetched: posted at most once every `every` seconds (2), counted from
the last post. Only the client's own steps (`ais.contracts.CLIENT_PHASES`) are
posted: the reboot's phases come after the ok report. Nothing is posted in a
dry run, nor while the host is known only by its MAC (the report route takes
names: the plan names it).

Each post is one try with a short timeout (`Api.progress`, 2 s), never
retried. A failure is said once on the console (`say`); after one, posts pause
for `pause` seconds (30), so a server that does not answer costs the install
at most one timeout per pause. Nothing here raises: the install goes on as if
no post had been tried.

Reads: the session (host, plan, dry run). Fails on nothing. Returns nothing.
"""

from __future__ import annotations

import re
import time
from typing import Callable

from ais.client.session import say
from ais.contracts import CLIENT_PHASES

MAC = re.compile(r"[0-9a-fA-F]{2}(?:[:-][0-9a-fA-F]{2}){5}")


class Notifier:
    """See the module docstring. `clock` is monotonic seconds (tests pass their own)."""

    def __init__(self, session, api, *, every: float = 2.0, pause: float = 30.0, timeout: float = 2.0,
                 clock: Callable[[], float] = time.monotonic):
        self.session, self.api = session, api
        self.every, self.pause, self.timeout, self.clock = every, pause, timeout, clock
        self.last_post: float | None = None
        self.quiet_until: float | None = None
        self.failures = 0

    def __call__(self, phase: str, done: int | None = None, total: int | None = None) -> None:
        host = self._host()
        if self.session.dry_run or host is None or phase not in CLIENT_PHASES:
            return
        now = self.clock()
        if self.quiet_until is not None and now < self.quiet_until:
            return
        counting = done is not None or total is not None
        if counting and self.last_post is not None and now - self.last_post < self.every:
            return
        self.last_post = now
        try:
            self.api.progress(host, phase, done, total, timeout=self.timeout)
        except Exception as err:  # noqa: BLE001 - best effort: whatever went wrong, the install goes on
            self.failures += 1
            self.quiet_until = self.clock() + self.pause
            if self.failures == 1:
                say(f"could not post progress to the server ({err}); the install goes on "
                    f"(progress posts pause for {self.pause:g} s after a failure; this is said once)")

    def _host(self) -> str | None:
        """The host's name for the report route: the plan's, else the one given (not a MAC)."""
        host = (self.session.plan or {}).get("host") or self.session.host
        return None if not host or MAC.fullmatch(host) else host
