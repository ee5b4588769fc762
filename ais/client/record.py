"""The install record inside the target, and the report to the server.

What it does: `make_record(session)` gathers what this reinstall did: host,
SCD, manifest generation, image id (or null), the transport that delivered
the image and why multicast fell back to unicast (or null), the planner's
fallback, the remainder
installed, host files written, timings per phase, the planner's predicted
seconds against the measured ones (`install_seconds`: imaging through fsck,
the span the planner's cost model predicts). `write_record(root, record)`
stores it atomically as `<root>/var/lib/ais/install.json` (mode 0644).
`report_body(session, status, ...)` is what `POST /v1/hosts/<h>/report`
carries: the record (so the history and the target agree) plus the status,
the failing phase and its message.

Reads: the session. Fails with `ClientError`/OSError only when the target
cannot be written. Returns dicts, checked against their schemas
(ais.contracts.InstallRecord, InstallReport).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from ais.files import write_atomic

RECORD_PATH = "/var/lib/ais/install.json"
# Phases the planner's prediction covers: from the first image byte to a checked filesystem.
PREDICTED_SPAN = ("image", "grow", "mount", "install", "files", "verify", "record", "unmount", "fsck")


def measured_seconds(timings: dict) -> float:
    return round(sum(v for k, v in timings.items() if k in PREDICTED_SPAN), 4)


def make_record(session, *, remainder: list[str] | None = None, allowed_va: list[str] | None = None) -> dict:
    from ais.contracts import InstallRecord, conform

    plan = session.plan or {}
    image = plan.get("image") or None
    return conform({
        "format": 1,
        "host": plan.get("host", session.host),
        "scd": plan.get("scd"),
        "generation": plan.get("generation"),
        "server": session.server,
        "image": {"id": image["id"], "key": image.get("key"), "stored_bytes": image.get("stored_bytes"),
                  **delivery(session)} if image else None,
        "fallback": plan.get("fallback"),
        "configuration": plan.get("configuration"),
        "remainder": remainder if remainder is not None else [p["nevra"] for p in plan.get("packages", [])],
        "files": [f["path"] for f in plan.get("files", [])],
        "rpm_va_allowed": allowed_va or [],
        "timings": dict(session.timings),
        "predicted_seconds": (plan.get("predicted_seconds") or {}).get("total"),
        "measured_seconds": measured_seconds(session.timings),
        "started_at": session.started_at,
        "written_at": time.time(),
    }, InstallRecord)


def delivery(session) -> dict:
    """How the image came: the transport that delivered it, and why multicast fell back (or None)."""
    streamed = session.results.get("image") or {}
    return {"transport": streamed.get("transport", session.transport),
            "transport_fallback": streamed.get("transport_fallback")}


def write_record(root: str, record: dict) -> None:
    final = Path(root, RECORD_PATH.lstrip("/"))
    final.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(final, (json.dumps(record, indent=1, sort_keys=True) + "\n").encode(), 0o644, 0, 0)


def report_body(session, status: str, *, record: dict | None = None, phase: str | None = None,
                message: str | None = None, since: int = 0) -> dict:
    """The report; its phases are the session's spans from index `since` on (a later report of the
    same reinstall carries only its own)."""
    from ais.contracts import InstallReport, conform

    plan = session.plan or {}
    return conform({
        "status": status,
        "phase": phase,
        "message": message,
        "image": (plan.get("image") or {}).get("id"),
        "transport_fallback": delivery(session)["transport_fallback"],
        "generation": plan.get("generation"),
        "timings": dict(session.timings),
        "phases": [{"name": n, "start": s, "end": e} for n, s, e in session.spans[since:]],
        "measured_seconds": measured_seconds(session.timings),
        "predicted_seconds": (plan.get("predicted_seconds") or {}).get("total"),
        "record": record,
    }, InstallReport)
