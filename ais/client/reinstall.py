"""`ais client reinstall`: every step in one Python process (what ais-boot does in sh).

What it does: `reinstall(session, ...)` runs identify -> plan -> check -> image
-> grow -> mount -> install -> files -> verify -> bootloader -> record -> unmount
-> fsck -> report (ais.client.steps), and on the first failure goes through
`steps.fail` (unmount, report "failed", console message) and raises.

Reads: the session and server. Fails with the `ClientError` (or the tool's or
streamer's error) of the failing step, after reporting it. Returns the session
with its timings and results.
"""

from __future__ import annotations

from ais.client import steps
from ais.client.session import Session


def reinstall(session: Session, *, interface: str | None = None, retries: int = 5,
              retry_delay: float = 0.5, patience: float = 3600.0, site_key: str | None = None) -> Session:
    api = steps.api_of(session, retries, retry_delay, patience, site_key)
    sequence = [
        ("identify", lambda: steps.identify(session, interface)),
        ("plan", lambda: steps.plan(session, api)),
        ("check", lambda: steps.check(session)),
        ("image", lambda: steps.image(session)),
        ("grow", lambda: steps.grow(session)),
        ("mount", lambda: steps.mount(session)),
        ("install", lambda: steps.install(session, api)),
        ("files", lambda: steps.files(session, api)),
        ("verify", lambda: steps.verify(session)),
        ("bootloader", lambda: steps.bootloader(session)),
        ("record", lambda: steps.record(session)),
        ("unmount", lambda: steps.unmount(session)),
        ("fsck", lambda: steps.fsck(session)),
        ("report", lambda: steps.report(session, api)),
    ]
    for name, step in sequence:
        try:
            step()
        except BaseException as err:
            steps.fail(session, api, name, err)
            raise
    return session
