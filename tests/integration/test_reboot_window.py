"""The reboot window end to end: a real `ais serve --reboot-window 1` in a network namespace, real
`ais client reinstall` runs onto loop devices, each in a namespace of its own on the same bridge.

Nothing depends on timing luck: a fourth host (hold01, driven by the test over HTTP from its own
namespace) takes the one place first, so every client is refused at least once (the test waits for
each refusal in the server's log); then hold01's "failed" report frees the place and the three
reinstall one after the other. The server logs every admission and release under the lock that
guards the window, so the log's order is the order of the events: no two hosts may be admitted
without a release in between. A client whose patience runs out exits 1, and its disk stays blank.
"""

import json
import os
import re
import sqlite3
import sys
from pathlib import Path

import pytest

from ais.cost import CostModel, save_calibration
from ais.descriptors import load_site
from ais.run import run
from aislab.disks import LoopDisk, reinstall_argv, serve_in, target_facts
from aislab.net import NetLab, ais_command
from aislab.site import publish_base_cache, subset_descriptors, wait_for

ROOT = Path(__file__).resolve().parents[2]
HOSTS = ("mail01", "db01", "db02")
TOKENS = {"mail01": "9d4bf7abd55eb7e7da9043caf50c4203", "db01": "fb9577bf9257dd86cd19d77acdaf07b7",
          "db02": "e0d6a1f1c1839c1896667c1b80d26e24", "hold01": "4f1d0c3b9a7e4e2f8c6b5a4d3e2f1a0b"}
HOLDER_HCD = f"""<?xml version="1.0" encoding="UTF-8"?>
<hcd name="hold01" scd="db" reinstalls="1">
  <mac>52:54:00:00:0e:01</mac>
  <token>{TOKENS['hold01']}</token>
</hcd>
"""
EVENT_TIMEOUT = 240  # a safety net against a hung test, never a moment the test relies on
WINDOW = re.compile(r"^(?:\S+Z )?reboot window: (\S+) (admitted|refused|released by [^(]*|asked again)", re.M)
ASK = """
import json, sys, urllib.error, urllib.request
method, url, token, body = sys.argv[1:5]
req = urllib.request.Request(url, method=method, data=body.encode() or None,
                             headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
try:
    with urllib.request.urlopen(req, timeout=30) as r:
        print(json.dumps([r.status, dict(r.headers), r.read().decode()]))
except urllib.error.HTTPError as e:
    print(json.dumps([e.code, dict(e.headers), e.read().decode()]))
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory, repo_dir):
    base = tmp_path_factory.mktemp("window")
    descriptors = subset_descriptors(ROOT / "descriptors", base / "descriptors", ["mail", "db"], list(HOSTS))
    (descriptors / "hcd" / "hold01.xml").write_text(HOLDER_HCD)
    cost = base / "cost.json"
    save_calibration(CostModel(image_fixed_s=0.1, stream_bytes_per_s=300e6), cost)
    manifest = publish_base_cache(descriptors, repo_dir, base / "cache", cost=cost)
    return {"base": base, "descriptors": descriptors, "manifest": manifest, "site": load_site(descriptors, repo_dir)}


def ask(lab, i: int, method: str, url: str, token: str = "", body: dict | None = None) -> tuple[int, dict, dict]:
    """One HTTP exchange from host i of the lab: (status, headers, JSON body)."""
    out = run(lab.argv(i, [sys.executable, "-c", ASK, method, url, token, json.dumps(body) if body else ""]),
              timeout=60).stdout
    status, headers, text = json.loads(out)
    return status, headers, json.loads(text)


def take_place(lab, url: str) -> None:
    """hold01 asks for its plan (from host 4) and so takes the window's one place."""
    status, _, plan = ask(lab, 4, "GET", f"{url}/v1/hosts/hold01/plan", TOKENS["hold01"])
    assert status == 200 and plan["host"] == "hold01", plan


def report(lab, url: str, body: dict) -> None:
    status, _, answer = ask(lab, 4, "POST", f"{url}/v1/hosts/hold01/report", TOKENS["hold01"], body)
    assert status == 201, answer


def in_progress(lab, url: str) -> list[str]:
    status, _, health = ask(lab, 4, "GET", f"{url}/v1/health")
    assert status == 200 and health["window"]["size"] == 1, health
    return health["window"]["in_progress"]


def window_events(log_path: Path) -> list[tuple[str, str]]:
    return [(host, what.strip()) for host, what in WINDOW.findall(log_path.read_text())]


def serve(lab, site, repo_dir, tmp_path, log, *extra):
    return serve_in(lab, 0, site["descriptors"], repo_dir, site["base"] / "cache", tmp_path / "history.sqlite",
                    log, "--reboot-window", "1", "--window-retry", "1", *extra)


def assert_installed(site, history, host, disk):
    hcd = next(h for h in site["site"].hosts if h.name == host)
    facts = target_facts(disk.device, [f.path for f in hcd.files])
    assert facts["nevras"] == set(site["site"].configuration(hcd.scd).nevras)  # exactly the SCD's set
    assert facts["rpm_va"] == "" and facts["fsck_rc"] == 0 and not facts["staging_left"]
    for f in hcd.files:
        assert facts["files"][f.path][0] == f.content
    with sqlite3.connect(history) as db:
        status, stored = db.execute("SELECT status, report FROM reports WHERE host = ? ORDER BY id DESC LIMIT 1",
                                    (host,)).fetchone()
    assert status == "ok" and json.loads(stored)["record"] == facts["record"]


def test_a_window_of_one_reinstalls_three_hosts_one_at_a_time(site, repo_dir, tmp_path):
    log_path = tmp_path / "serve.log"
    disks = [LoopDisk(tmp_path / f"disk{i}.img", 512) for i in range(len(HOSTS))]
    try:
        with NetLab(5, tag=f"aiwn{os.getpid() % 10000}") as lab, open(log_path, "w") as log:
            url = serve(lab, site, repo_dir, tmp_path, log)
            take_place(lab, url)
            clients = [lab.spawn(i + 1, reinstall_argv(url, host, TOKENS[host], disks[i].device, tmp_path / f"st{i}"))
                       for i, host in enumerate(HOSTS)]
            refused = lambda: {h for h, what in window_events(log_path) if what == "refused"} >= set(HOSTS)
            assert wait_for(refused, timeout=EVENT_TIMEOUT), log_path.read_text()[-3000:]
            assert in_progress(lab, url) == ["hold01"]
            report(lab, url, {"status": "failed", "phase": "plan", "message": "the test lets go of its place"})
            outputs = [proc.communicate(timeout=EVENT_TIMEOUT) for proc in clients]
            assert in_progress(lab, url) == []
        for proc, (_, err), host in zip(clients, outputs, HOSTS):
            assert proc.returncode == 0, f"{host}:\n{err[-3000:]}"
            assert f"reinstalled {host}" in err
            assert ("the server's reboot window is full: waiting 1 s (reboot window full: 1 of 1 hosts "
                    "reinstalling (hold01); retry in 1 s)") in err
        for host, disk in zip(HOSTS, disks):
            assert_installed(site, tmp_path / "history.sqlite", host, disk)

        events = [(h, what) for h, what in window_events(log_path) if what != "refused"]
        assert events[:2] == [("hold01", "admitted"), ("hold01", "released by its failed report")]
        admitted = [h for h, what in events[2::2]]
        assert sorted(admitted) == sorted(HOSTS)  # each once, none asked again
        assert events[2:] == [pair for h in admitted for pair in ((h, "admitted"), (h, "released by its ok report"))]
    finally:
        for disk in disks:
            disk.close()


def test_a_client_out_of_patience_exits_1_and_writes_nothing(site, repo_dir, tmp_path):
    """hold01 keeps its place through its "rebooting" and "up" reports (they do not end an install);
    mail01, patient for 2 s, gives up with exit 1 and a message, its disk untouched; hold01's "ok"
    report then frees the place."""
    with NetLab(2 + 3, tag=f"aiwp{os.getpid() % 10000}") as lab, open(tmp_path / "serve.log", "w") as log, \
            LoopDisk(tmp_path / "disk.img", 64) as disk:
        url = serve(lab, site, repo_dir, tmp_path, log)
        take_place(lab, url)
        report(lab, url, {"status": "rebooting", "phase": "kexec"})
        report(lab, url, {"status": "up"})
        assert in_progress(lab, url) == ["hold01"]
        client = lab.spawn(1, reinstall_argv(url, "mail01", TOKENS["mail01"], disk.device, tmp_path / "st",
                                             "--window-patience", "2"))
        _, err = client.communicate(timeout=EVENT_TIMEOUT)
        assert client.returncode == 1, err[-3000:]
        assert "the server's reboot window is full: waiting 1 s" in err
        assert ("the server's reboot window stayed full for 2 s (--window-patience): the server refused the plan "
                "of mail01 (HTTP 503): reboot window full: 1 of 1 hosts reinstalling (hold01)") in err
        assert "Traceback" not in err
        with open(disk.device, "rb") as f:
            assert f.read() == bytes(64 << 20)  # nothing written
        assert in_progress(lab, url) == ["hold01"]
        report(lab, url, {"status": "ok"})
        assert in_progress(lab, url) == []


# (command, option, value, words of the message); every one exits 2 before anything is read or written
BAD_OPTIONS = [
    ("serve", "--reboot-window", "-1", "expected a whole number of hosts from 0 (no limit)"),
    ("serve", "--reboot-window", "two", "expected a whole number of hosts"),
    ("serve", "--reboot-window", "1.5", "expected a whole number of hosts"),
    ("serve", "--reboot-window", "\u00b2", "expected a whole number of hosts"),
    ("serve", "--window-retry", "0", "expected a whole number from 1"),
    ("serve", "--window-retry", "-3", "expected a whole number from 1"),
    ("serve", "--window-retry", "ten", "expected a whole number from 1"),
    ("serve", "--window-lease", "0", "expected a positive number of seconds"),
    ("serve", "--window-lease", "-60", "expected a positive number of seconds"),
    ("serve", "--window-lease", "inf", "expected a positive number of seconds"),
    ("serve", "--window-lease", "soon", "expected a positive number of seconds"),
    ("client", "--window-patience", "-1", "expected seconds from 0 to 10000000"),
    ("client", "--window-patience", "nan", "expected seconds from 0 to 10000000"),
    ("client", "--window-patience", "forever", "expected seconds from 0 to 10000000"),
]


@pytest.mark.parametrize("command, option, value, words", BAD_OPTIONS, ids=[f"{c[1]} {c[2]}" for c in BAD_OPTIONS])
def test_bad_window_options_exit_2(site, repo_dir, tmp_path, command, option, value, words):
    if command == "serve":
        argv = ["serve", "--plain-http", "--descriptors", str(site["descriptors"]), "--repo", str(repo_dir), "--cache",
                str(tmp_path / "cache"), "--history", str(tmp_path / "h.sqlite"), "--listen", "127.0.0.1:0",
                "--stream-listen", "127.0.0.1:0", "--seconds", "0"]
    else:
        argv = ["client", "reinstall", "--server", "http://127.0.0.1:9", "--host", "mail01", "--target",
                str(tmp_path / "disk"), "--state", str(tmp_path / "state")]
    proc = run(ais_command(*argv, f"{option}={value}"), check=False, timeout=60)
    assert proc.returncode == 2 and f"argument {option}: {words}" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert not any(tmp_path.iterdir())  # nothing made: no cache, history, state or disk
