"""A host's installs from its history rows: what `ais history HOST` draws.

What it does: `installs(rows)` groups a host's report rows (oldest first, as
`ais.server.history.read_reports` returns them) into installs. An install
starts at an "ok" or "failed" report and takes the "rebooting" and "up"
reports that follow it: at most one of each, "rebooting" only after an ok
without one, "up" only after an ok without one. A "rebooting" or "up" report
that fits no install (the installed system booted again, or the history
begins mid-install) is an entry of its own, so nothing a host posted is hidden.

Each install gets a status (failed, installed, rebooted, up), its image and
generation, when it started (the first span's start, else when its first
report was received), its boot-to-boot seconds (first span's start to the end
of the "up" span) and its phases in order, each with its start offset from the
install's first span and its duration. Two phases are derived: the reboot,
from the last span before it ends to the "up" span's start, named by the
"rebooting" report's phase ("kexec" or "firmware"; "reboot" when the host
posted no rebooting report), and "up" itself. Spans come from two clocks (the
boot environment's and the installed system's), both the same machine's wall
clock; a negative gap or offset (the clock jumped) is unknown (None), never a
negative bar. A report without spans (older clients) gives its `timings`
durations with unknown starts.

`newest(rows, limit)` gives the newest `limit` of them, newest first.

Reads: plain dicts (the rows: status, phase, image, generation, message,
received_at, report). Fails on nothing: a row of another status, or a span
without name, start and end, is skipped. Returns `Install` dataclasses
(`as_dict` for JSON).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ais.contracts import CLIENT_PHASES

STARTS = ("ok", "failed")
# The client's steps in the order they run (ais.contracts.CLIENT_PHASES, after the boot environment):
# older reports carry only durations by name, stored with sorted keys, so their order is restored from this.
STEP_ORDER = ("bootenv", *CLIENT_PHASES)


@dataclass(frozen=True)
class Phase:
    """One bar of the chart: start offset and duration in seconds (None: unknown)."""

    name: str
    start: float | None
    seconds: float | None


@dataclass
class Install:
    """One reinstall: its reports grouped, its phases in order."""

    status: str
    started_at: float
    image: str | None = None
    generation: int | None = None
    boot_to_boot: float | None = None
    failed_phase: str | None = None
    message: str | None = None
    phases: list[Phase] = field(default_factory=list)


@dataclass
class _Group:
    """The rows of one install while grouping; start is None for an entry without ok/failed."""

    start: dict | None = None
    rebooting: dict | None = None
    up: dict | None = None

    def takes(self, row: dict) -> bool:
        """Whether row (rebooting or up) belongs here rather than starting an entry of its own."""
        if self.up is not None or (self.start is not None and self.start["status"] != "ok"):
            return False
        return row["status"] == "up" or (row["status"] == "rebooting" and self.rebooting is None)

    def rows(self) -> list[dict]:
        return [r for r in (self.start, self.rebooting, self.up) if r is not None]


def installs(rows: list[dict]) -> list[Install]:
    """The installs of rows (one host's, oldest first), oldest first."""
    return [install_of(g) for g in group(rows)]


def newest(rows: list[dict], limit: int) -> list[Install]:
    """The newest `limit` installs of rows (oldest first), newest first."""
    return installs(rows)[::-1][:limit]


def group(rows: list[dict]) -> list[_Group]:
    groups: list[_Group] = []
    for row in rows:
        status = row["status"]
        if status in STARTS:
            groups.append(_Group(start=row))
        elif status in ("rebooting", "up"):
            if not (groups and groups[-1].takes(row)):
                groups.append(_Group())
            setattr(groups[-1], status, row)
    return groups


def install_of(g: _Group) -> Install:
    first, last = g.rows()[0], g.rows()[-1]
    origin = _first_start(g)
    up = _spans(g.up)[-1:]
    return Install(
        status=_status(g), started_at=origin if origin is not None else first["received_at"],
        image=first.get("image") or last.get("image"),
        generation=first.get("generation") if first.get("generation") is not None else last.get("generation"),
        boot_to_boot=_known(up[0]["end"] - origin) if up and origin is not None else None,
        failed_phase=first.get("phase") if first["status"] == "failed" else None,
        message=first.get("message") or (g.rebooting or {}).get("message") or None,
        phases=_phases(g, origin),
    )


def _status(g: _Group) -> str:
    if g.start is not None and g.start["status"] == "failed":
        return "failed"
    return "up" if g.up else "rebooted" if g.rebooting else "installed"


def _spans(row: dict | None) -> list[dict]:
    """The row's wall-clock spans, in the order posted; [] for older reports."""
    spans = ((row or {}).get("report") or {}).get("phases")
    return [s for s in spans if _is_span(s)] if isinstance(spans, list) else []


def _is_span(span) -> bool:
    return (isinstance(span, dict) and isinstance(span.get("name"), str)
            and all(isinstance(span.get(k), (int, float)) for k in ("start", "end")))


def _first_start(g: _Group) -> float | None:
    starts = [_spans(row)[0]["start"] for row in g.rows() if _spans(row)]
    return starts[0] if starts else None


def _known(seconds: float) -> float | None:
    """seconds rounded, or None when negative (a clock jumped between two readings)."""
    return round(seconds, 3) if seconds >= 0 else None


def _phases(g: _Group, origin: float | None) -> list[Phase]:
    """The boot environment's spans (else the older durations), the reboot gap, the up span."""
    before_up = _spans(g.start) + _spans(g.rebooting)
    phases = [_span_phase(s, origin) for s in before_up] if before_up else _timings(g.start)
    up = _spans(g.up)[-1:]
    if up and before_up:
        phases.append(_reboot(g, before_up[-1]["end"], up[0]["start"], origin))
    return phases + [_span_phase(s, origin) for s in up]


def _span_phase(span: dict, origin: float | None) -> Phase:
    start = None if origin is None else _known(span["start"] - origin)
    return Phase(span["name"], start, _known(span["end"] - span["start"]))


def _reboot(g: _Group, left: float, arrived: float, origin: float | None) -> Phase:
    """The gap between the boot environment's last span and the installed kernel's start."""
    name = (g.rebooting or {}).get("phase") or "reboot"
    start = None if origin is None else _known(left - origin)
    return Phase(name, start, _known(arrived - left))


def _timings(row: dict | None) -> list[Phase]:
    """An older report's durations by name, starts unknown."""
    timings = ((row or {}).get("report") or {}).get("timings")
    if not isinstance(timings, dict):
        return []
    names = sorted(timings, key=lambda n: (STEP_ORDER.index(n) if n in STEP_ORDER else len(STEP_ORDER), n))
    return [Phase(n, None, round(timings[n], 3)) for n in names if isinstance(timings[n], (int, float))]


def as_dict(install: Install) -> dict:
    """The install as JSON-ready data."""
    return asdict(install)
