"""`ais history HOST`, the real process, against a history filled as the server fills it.

The reports are built as the client builds them (`report_body`, `make_record`), with the
wall-clock spans the contract carries, checked against `InstallReport`, and stored through
`History.add`. Bad input exits 2, a missing or foreign file exits 1, never a traceback.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest

from ais.client.record import make_record, report_body
from ais.client.session import Session
from ais.contracts import InstallReport, conform
from ais.server.history import History
from aislab.net import ais_command

T0 = 1_796_000_000.0  # 2026-11-30 00:53:20 UTC
IMAGE = "3f2a9c41d07e" + "5" * 52
# (phase, seconds) as one reinstall of mail01 runs them; spans follow each other
STEPS = [("bootenv", 9.8), ("plan", 0.4), ("check", 0.2), ("image", 21.5), ("grow", 1.1), ("mount", 0.1),
         ("install", 9.6), ("files", 0.2), ("verify", 3.9), ("record", 0.1), ("unmount", 0.3), ("fsck", 0.8),
         ("report", 0.2)]


def spans(steps, at: float) -> list[dict]:
    out = []
    for name, seconds in steps:
        out.append({"name": name, "start": round(at, 3), "end": round(at + seconds, 3)})
        at += seconds
    return out


def session(tmp_path: Path, generation: int) -> Session:
    plan = {"host": "mail01", "scd": "mail-1", "generation": generation,
            "image": {"id": IMAGE, "key": "k" * 16, "stored_bytes": 380_000_000},
            "fallback": None, "configuration": ["postfix-3.7.6-1.x86_64"],
            "packages": [{"nevra": "postfix-3.7.6-1.x86_64"}], "files": [{"path": "/etc/postfix/main.cf"}],
            "predicted_seconds": {"total": 36.0}}
    timings = {name: seconds for name, seconds in STEPS if name != "bootenv"}
    return Session(state_dir=str(tmp_path / "state"), server="http://10.1.0.1:8470", host="mail01", plan=plan,
                   timings=timings, started_at=T0)


def report(body: dict, phases: list[dict], **fields) -> dict:
    return conform({**body, "phases": phases, **fields}, InstallReport)


def install(tmp_path: Path, generation: int, at: float, reboot: str) -> list[dict]:
    """ok, rebooting, up: one reinstall of mail01 from the boot environment's kernel to the installed system."""
    s = session(tmp_path, generation)
    ok_spans = spans(STEPS, at)
    left = ok_spans[-1]["end"]
    kexec = reboot == "kexec"
    load = [{"name": "kexec-load", "start": left, "end": round(left + 0.3, 3)}] if kexec else []
    arrive = round(left + (4.1 if kexec else 38.0), 3)
    base = report_body(s, "ok")
    return [
        report(report_body(s, "ok", record=make_record(s)), ok_spans),
        report(base, load, status="rebooting", phase=reboot, record=None, timings={}, message=None if kexec else
               "kexec failed: kexec_load: Operation not permitted; rebooting through the firmware"),
        report(base, [{"name": "up", "start": arrive, "end": round(arrive + 8.8, 3)}], status="up", record=None,
               timings={}),
    ]


@pytest.fixture(scope="module")
def history_file(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("history")
    path = tmp / "history.sqlite"
    history = History(path)
    failed = report(report_body(session(tmp, 6), "failed", phase="image", message="stream: connection reset"),
                    spans(STEPS[:4], T0))
    reports = [failed, *install(tmp, 7, T0 + 3600, "firmware"), *install(tmp, 8, T0 + 7200, "kexec")]
    for body in reports:
        history.add("mail01", body)
    history.add("db01", {"status": "ok", "image": IMAGE, "generation": 2, "timings": {"plan": 0.5, "image": 12.0}})
    return path


def ais_history(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(ais_command("history", *args), capture_output=True, text=True, timeout=60,
                          env={**os.environ, "TZ": "UTC"})


NEWEST = """\
2026-11-30 02:53:20 +0000  up  image 3f2a9c41d07e  generation 8  boot-to-boot 61.1 s
  phase        start  seconds  share
  bootenv        0.0      9.8  16.0%  |######                                  |
  plan           9.8      0.4   0.7%  |      #                                 |
  check         10.2      0.2   0.3%  |       #                                |
  image         10.4     21.5  35.2%  |       ##############                   |
  grow          31.9      1.1   1.8%  |                     #                  |
  mount         33.0      0.1   0.2%  |                      #                 |
  install       33.1      9.6  15.7%  |                      ######            |
  files         42.7      0.2   0.3%  |                            #           |
  verify        42.9      3.9   6.4%  |                            ###         |
  record        46.8      0.1   0.2%  |                               #        |
  unmount       46.9      0.3   0.5%  |                               #        |
  fsck          47.2      0.8   1.3%  |                               #        |
  report        48.0      0.2   0.3%  |                               #        |
  kexec-load    48.2      0.3   0.5%  |                                #       |
  kexec         48.5      3.8   6.2%  |                                ##      |
  up            52.3      8.8  14.4%  |                                  ######|"""


def test_text_chart_newest_first(history_file):
    proc = ais_history("mail01", "--history", str(history_file))
    assert proc.returncode == 0, proc.stderr
    installs = proc.stdout.rstrip("\n").split("\n\n")
    assert len(installs) == 3
    assert installs[0] == NEWEST
    firmware, failed = installs[1].splitlines(), installs[2].splitlines()
    assert firmware[0] == "2026-11-30 01:53:20 +0000  up  image 3f2a9c41d07e  generation 7  boot-to-boot 95.0 s"
    assert firmware[1] == "  kexec failed: kexec_load: Operation not permitted; rebooting through the firmware"
    assert [line.split()[0] for line in firmware[-2:]] == ["firmware", "up"]
    assert failed[0] == "2026-11-30 00:53:20 +0000  failed  in image  image 3f2a9c41d07e  generation 6"
    assert failed[1] == "  stream: connection reset"
    assert failed[-1].split()[:3] == ["image", "10.4", "21.5"]


def test_json_and_limit(history_file):
    proc = ais_history("mail01", "--history", str(history_file), "--json", "--limit", "2")
    assert proc.returncode == 0, proc.stderr
    installs = json.loads(proc.stdout)
    assert [(i["status"], i["generation"]) for i in installs] == [("up", 8), ("up", 7)]
    assert installs[0]["image"] == IMAGE and installs[0]["boot_to_boot"] == 61.1
    assert installs[0]["started_at"] == T0 + 7200
    assert installs[1]["phases"][-2] == {"name": "firmware", "start": 48.2, "seconds": 38.0}
    assert [p["name"] for p in installs[0]["phases"]] == [n for n, _ in STEPS] + ["kexec-load", "kexec", "up"]


def test_an_older_report_shows_durations_only(history_file):
    proc = ais_history("db01", "--history", str(history_file))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "installed  image 3f2a9c41d07e  generation 2" in lines[0] and "boot-to-boot" not in lines[0]
    assert lines[2] == "  plan             ?      0.5   4.0%  |##                                      |"
    assert lines[3] == "  image            ?     12.0  96.0%  |######################################  |"


@pytest.mark.parametrize("args, out", [([], "no reports for web99 in {file}\n"), (["--json"], "[]\n")])
def test_a_host_without_reports(history_file, args, out):
    proc = ais_history("web99", "--history", str(history_file), *args)
    assert (proc.returncode, proc.stdout) == (0, out.format(file=history_file)), proc.stderr


def not_a_history(tmp: Path) -> Path:
    with sqlite3.connect(tmp / "other.sqlite") as db:
        db.execute("CREATE TABLE t (x)")
    return tmp / "other.sqlite"


# (what, extra args, code, words in stderr); {text}, {dir}, {missing}, {other} are paths
BAD = [
    ("limit 0", ["--limit", "0"], 2, "expected a whole number from 1"),
    ("limit x", ["--limit", "x"], 2, "expected a whole number from 1"),
    ("limit negative", ["--limit=-3"], 2, "expected a whole number from 1"),
    ("host not a name", ["--host-is", "mail 01"], 2, "expected a host name"),
    ("missing file", ["--history", "{missing}"], 1, "does not exist"),
    ("a directory", ["--history", "{dir}"], 1, "is a directory"),
    ("not a SQLite database", ["--history", "{text}"], 1, "file is not a database"),
    ("a SQLite database but no history", ["--history", "{other}"], 1, "no such table: reports"),
]


@pytest.mark.parametrize("args, code, words", [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_input(args, code, words, history_file, tmp_path):
    (tmp_path / "text").write_text("not a database\n" * 100)
    paths = {"text": tmp_path / "text", "dir": tmp_path, "missing": tmp_path / "missing.sqlite",
             "other": not_a_history(tmp_path)}
    host = args[1] if args[0] == "--host-is" else "mail01"
    args = [] if args[0] == "--host-is" else [a.format(**paths) for a in args]
    if "--history" not in args:
        args += ["--history", str(history_file)]
    proc = ais_history(host, *args)
    assert proc.returncode == code, proc.stderr
    assert words in proc.stderr and "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    assert proc.stdout == "" and not (tmp_path / "missing.sqlite").exists()


def test_help_explains_the_chart():
    proc = subprocess.run(ais_command("history", "--help"), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "boot-to-boot" in proc.stdout and "$ ais history mail01" in proc.stdout and "kexec or firmware" in proc.stdout
