"""ais.server.boot: after a firmware reboot the host's next network boot goes to its disk, once."""

from types import SimpleNamespace

import pytest

from ais.server.boot import local_boot_report, local_boot_script


def report(id_, status, phase=None):
    return {"id": id_, "status": status, "phase": phase}


CHOICES = [  # (case, the host's reports oldest first, reports up to this id are answered, local boot for)
    ("no reports", [], 0, None),
    ("ok", [report(1, "ok")], 0, None),
    ("failed", [report(1, "failed", "check")], 0, None),
    ("rebooting by kexec", [report(1, "ok"), report(2, "rebooting", "kexec")], 0, None),
    ("rebooting by the firmware", [report(1, "ok"), report(2, "rebooting", "firmware")], 0, 2),
    ("firmware, then up", [report(1, "ok"), report(2, "rebooting", "firmware"), report(3, "up")], 0, None),
    ("firmware, answered already", [report(1, "ok"), report(2, "rebooting", "firmware")], 2, None),
    ("firmware, from before the server started", [report(1, "ok"), report(2, "rebooting", "firmware")], 9, None),
    ("a new firmware reboot after an answered one",
     [report(2, "rebooting", "firmware"), report(3, "up"), report(4, "ok"), report(5, "rebooting", "firmware")], 2, 5),
    ("firmware, then a new reinstall failed", [report(2, "rebooting", "firmware"), report(3, "failed", "image")],
     0, None),
    ("a firmware reboot's failure report", [report(1, "failed", "firmware")], 0, None),
]


@pytest.mark.parametrize("case, reports, answered, local", CHOICES, ids=[c[0] for c in CHOICES])
def test_which_script_a_booting_host_gets(case, reports, answered, local):
    newest_first = list(reversed(reports))
    got = local_boot_report(newest_first, answered)
    assert (got["id"] if got else None) == local


def test_the_local_boot_script_boots_the_first_bios_disk_and_names_the_report():
    text = local_boot_script(SimpleNamespace(name="db01"), {"id": 12, "message": "x\nkernel http://evil/"})
    lines = text.splitlines()
    assert lines[0] == "#!ipxe" and lines[-1] == "sanboot --no-describe --drive 0x80"
    assert lines[1].startswith("# AIS: db01 ") and "report #12" in lines[1] and len(lines) == 3
    assert "evil" not in text  # the report's message never reaches the script
