"""Updates from descriptors: `ais rebuild` turns a changed SCD whose on-change is "update" into one
signed update for the SCD's hosts (group scd:NAME), recorded once; an SCD whose on-change is
"reinstall" changes without an update (its hosts get the new set at their next reinstall).
Real `ais rebuild` runs (budget 0: packages only, no image to build) on a subset of the demo."""

import json
import subprocess
from pathlib import Path

import pytest

from aislab.net import ais_command
from aislab.site import subset_descriptors
from ais.updates.signing import verify
from ais.updates.store import UpdateStore

pytestmark = [pytest.mark.rpm]
ROOT = Path(__file__).resolve().parents[2]


def ais(*args, check=True):
    proc = subprocess.run([*ais_command(), *args], capture_output=True, text=True, cwd=ROOT)
    assert not check or proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_a_changed_scd_becomes_one_update_for_its_hosts(tmp_path, repo_dir):
    d = subset_descriptors(ROOT / "descriptors", tmp_path / "d", ["mail", "monitor"], ["mail01", "mon01"])
    mail, monitor = d / "scd" / "mail.xml", d / "scd" / "monitor.xml"
    mail.write_text(mail.read_text().replace('<scd name="mail"', '<scd name="mail" on-change="update"'))
    history = tmp_path / "history.sqlite"
    site = ("--descriptors", str(d), "--repo", str(repo_dir), "--cache", str(tmp_path / "cache"),
            "--history", str(history), "--budget", "0")
    ais("rebuild", *site)
    assert not UpdateStore(history).updates()  # the first publication: nothing to update from

    # the admin adds logrotate... it is in the base already: add make, drop dovecot; and changes monitor too
    mail.write_text(mail.read_text().replace('<package name="dovecot"/>', '<package name="make"/>'))
    monitor.write_text(monitor.read_text().replace('<package name="httpd"/>', ""))
    explained = ais("plan", "--explain", "mail", *site[:6], "--budget", "0", "--out", str(tmp_path / "plan.json"))
    assert "to install or up/downgrade" in explained.stdout and "one rpm transaction" in explained.stdout
    assert "updated in place by their agents" in explained.stdout, explained.stdout
    out = ais("rebuild", *site)
    updates = UpdateStore(history).updates()
    assert len(updates) == 1, out.stderr
    update = updates[0]
    assert update.group == "scd:mail"
    ops = {(op.action, op.name) for op in update.ops}
    assert ("install", "make") in ops and ("erase", "dovecot") in ops
    assert all(op.name != "httpd" for op in update.ops)  # monitor's change waits for a reinstall
    verify(update, (history.parent / "update-key.pem.pub").read_text().strip())
    listed = ais("update", "list", "--history", str(history)).stdout
    assert "scd:mail" in listed and "install make" in listed

    ais("rebuild", *site)  # nothing changed since: nothing recorded twice
    assert len(UpdateStore(history).updates()) == 1
    hosts = json.loads(ais("hosts", "--json", "--descriptors", str(d), "--repo", str(repo_dir),
                           "--history", str(history)).stdout)
    pending = {h["host"]: h["pending"] for h in hosts}
    assert pending == {"mail01": 1, "mon01": 0}
