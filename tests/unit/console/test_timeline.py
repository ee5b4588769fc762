"""A host's history rows become installs: grouping, derived reboot and up phases, unknown gaps."""

from __future__ import annotations

import pytest

from ais.console.timeline import Phase, installs, newest

T0 = 1_796_000_000.0
BOOTENV = [("bootenv", 0, 9), ("plan", 9, 10), ("image", 10, 40), ("install", 40, 48), ("report", 48, 49)]


def spans(steps, at=T0):
    return [{"name": n, "start": at + a, "end": at + b} for n, a, b in steps]


def row(status, steps=(), *, phase=None, message=None, image="img-a", generation=3, received=None,
        timings=None, at=T0):
    """A row as read_reports returns it."""
    report = {"status": status, "phase": phase, "message": message, "image": image, "generation": generation,
              "timings": timings or {}, "phases": spans(steps, at)}
    return {"status": status, "phase": phase, "message": message, "image": image, "generation": generation,
            "received_at": received if received is not None else T0 + 1000, "report": report}


def full_install(at=T0, reboot="kexec"):
    return [row("ok", BOOTENV, at=at),
            row("rebooting", [("kexec-load", 49, 50)], phase=reboot, at=at),
            row("up", [("up", 55, 63)], at=at)]


# (what, statuses of the rows oldest first, statuses of the installs oldest first)
GROUPING = [
    ("one whole install", ["ok", "rebooting", "up"], ["up"]),
    ("installed, not rebooted yet", ["ok"], ["installed"]),
    ("rebooting, never up", ["ok", "rebooting"], ["rebooted"]),
    ("up without a rebooting report", ["ok", "up"], ["up"]),
    ("a failed install takes nothing after it", ["failed", "rebooting", "up"], ["failed", "up"]),
    ("each ok or failed starts an install", ["failed", "failed", "ok", "ok"], ["failed", "failed", "installed",
                                                                                "installed"]),
    ("a second up is a boot of its own", ["ok", "rebooting", "up", "up"], ["up", "up"]),
    ("a second rebooting is an entry of its own", ["ok", "rebooting", "rebooting", "up"], ["rebooted", "up"]),
    ("history begins mid-install", ["rebooting", "up", "ok"], ["up", "installed"]),
    ("history begins with an up", ["up", "failed"], ["up", "failed"]),
    ("an unknown status is skipped", ["ok", "unknown", "up"], ["up"]),
    ("nothing", [], []),
]


@pytest.mark.parametrize("statuses, expected", [c[1:] for c in GROUPING], ids=[c[0] for c in GROUPING])
def test_grouping(statuses, expected):
    assert [i.status for i in installs([row(s) for s in statuses])] == expected


def test_a_whole_install_has_every_phase_on_one_axis():
    (done,) = installs(full_install())
    assert done.status == "up" and done.image == "img-a" and done.generation == 3
    assert done.started_at == T0 and done.boot_to_boot == 63
    assert done.phases == [Phase("bootenv", 0, 9), Phase("plan", 9, 1), Phase("image", 10, 30),
                           Phase("install", 40, 8), Phase("report", 48, 1), Phase("kexec-load", 49, 1),
                           Phase("kexec", 50, 5), Phase("up", 55, 8)]


def test_the_reboot_is_named_by_the_rebooting_report_and_its_message_kept():
    rows = [row("ok", BOOTENV),
            row("rebooting", phase="firmware", message="kexec failed: no kexec_load; rebooting through the firmware"),
            row("up", [("up", 80, 90)])]
    (done,) = installs(rows)
    assert done.phases[-2:] == [Phase("firmware", 49, 31), Phase("up", 80, 10)]
    assert done.message.startswith("kexec failed") and done.boot_to_boot == 90


def test_up_without_a_rebooting_report_gives_a_reboot_phase():
    (done,) = installs([row("ok", BOOTENV), row("up", [("up", 60, 70)])])
    assert done.phases[-2:] == [Phase("reboot", 49, 11), Phase("up", 60, 10)]


def test_a_failed_install_keeps_its_spans_phase_and_message():
    (done,) = installs([row("failed", BOOTENV[:3], phase="image", message="stream: connection reset")])
    assert done.status == "failed" and done.failed_phase == "image" and done.message == "stream: connection reset"
    assert [p.name for p in done.phases] == ["bootenv", "plan", "image"] and done.boot_to_boot is None


def test_an_older_report_without_spans_gives_durations_only():
    timings = {"fsck": 1.0, "image": 12.25, "new-step": 2.0, "plan": 0.5}  # as stored: keys sorted
    (done,) = installs([row("ok", timings=timings, received=T0 + 5)])
    assert done.started_at == T0 + 5 and done.boot_to_boot is None
    assert done.phases == [Phase("plan", None, 0.5), Phase("image", None, 12.25), Phase("fsck", None, 1.0),
                           Phase("new-step", None, 2.0)]


# (what, the up span's start and end relative to T0, expected reboot phase, up phase, boot-to-boot)
CLOCK_JUMPS = [
    ("installed clock behind: reboot gap negative", (45, 53), Phase("kexec", 50, None), Phase("up", 45, 8), 53),
    ("installed clock far behind: before the origin", (-100, -92), Phase("kexec", 50, None),
     Phase("up", None, 8), None),
    ("no jump", (55, 63), Phase("kexec", 50, 5), Phase("up", 55, 8), 63),
]


@pytest.mark.parametrize("up, reboot, up_phase, boot_to_boot", [c[1:] for c in CLOCK_JUMPS],
                         ids=[c[0] for c in CLOCK_JUMPS])
def test_a_clock_jump_is_unknown_never_negative(up, reboot, up_phase, boot_to_boot):
    rows = full_install()[:2] + [row("up", [("up", *up)])]
    (done,) = installs(rows)
    assert done.phases[-2:] == [reboot, up_phase] and done.boot_to_boot == boot_to_boot
    assert all((p.start is None or p.start >= 0) and (p.seconds is None or p.seconds >= 0) for p in done.phases)


def test_many_installs_newest_first_and_limited():
    rows = []
    for n in range(5):
        rows += [{**r, "generation": n} for r in full_install(at=T0 + 1000 * n)]
    rows.append(row("failed", BOOTENV[:2], phase="plan", generation=5, at=T0 + 5000))
    found = newest(rows, 3)
    assert [(i.status, i.generation) for i in found] == [("failed", 5), ("up", 4), ("up", 3)]
    assert [i.started_at for i in found] == [T0 + 5000, T0 + 4000, T0 + 3000]
    assert all(i.boot_to_boot == 63 for i in found[1:])
    assert len(newest(rows, 100)) == 6


def test_an_up_report_alone_is_its_own_origin():
    (done,) = installs([row("up", [("up", 5, 12)], image="img-b", generation=9)])
    assert (done.status, done.image, done.generation, done.started_at) == ("up", "img-b", 9, T0 + 5)
    assert done.phases == [Phase("up", 0, 7)] and done.boot_to_boot == 7


# (what, the report's phases and timings as stored) -> nothing usable, no exception
UNUSABLE = [
    ("phases not a list", {"phases": "bootenv", "timings": {}}),
    ("a span without an end", {"phases": [{"name": "plan", "start": T0}], "timings": {}}),
    ("a span with a text start", {"phases": [{"name": "plan", "start": "now", "end": T0}], "timings": {}}),
    ("timings not an object", {"phases": [], "timings": [["plan", 1.0]]}),
    ("a duration that is not a number", {"phases": [], "timings": {"plan": "slow"}}),
]


@pytest.mark.parametrize("report", [c[1] for c in UNUSABLE], ids=[c[0] for c in UNUSABLE])
def test_an_unusable_report_gives_an_install_without_phases(report):
    rows = [{**row("ok"), "report": {"status": "ok", **report}}]
    (done,) = installs(rows)
    assert (done.status, done.phases, done.started_at) == ("installed", [], T0 + 1000)
