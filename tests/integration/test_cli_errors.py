"""Bad input exits 2, failures of the world exit 1, each with a message and no traceback.

Run as the real `ais` process. Regressions: `ais rebuild --budget abc` and `ais
cache status --budget abc` printed a traceback and exited 1 (argparse let the
UsageError of the size parser escape); `ais plan --out /proc/x.json` printed a
traceback; a plan nested 100,000 deep from a hostile server was a RecursionError
reported as "a bug in AIS".
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from aislab.canned import CannedServer
from aislab.net import ais_command

ROOT = Path(__file__).resolve().parents[2]


NESTED = b"[" * 100_000 + b"]" * 100_000

SERVE = ("--descriptors", "descriptors", "--repo", "{repo}", "--cache", "{tmp}/cache")
UPDATE_SITE = ("--descriptors", "descriptors", "--repo", "{repo}", "--history", "{tmp}/history.sqlite")
AGENT = ("--server", "http://127.0.0.1:9", "--host", "web01", "--listen", "127.0.0.1:9", "--state", "{tmp}/agent",
         "--token-file", "{tmp}/a-file", "--seconds", "1")
# (argv, exit code, words the message must contain); {repo} and {cache} filled in
CASES = [
    (["rebuild", "--budget", "abc", "--dry-run"], 2, "bad size 'abc'"),
    (["cache", "status", "--budget", "abc"], 2, "bad size 'abc'"),
    (["plan", "--budget", "abc"], 2, "bad size 'abc'"),
    (["plan", "--budget=-5G"], 2, "bad size"),
    (["plan", "--budget", "48M", "--out", "/proc/x.json"], 1, "cannot write the plan to /proc/x.json"),
    (["plan", "--budget", "48M", "--out", "{tmp}/missing-dir-is-made/plan.json"], 0, "plan written to"),
    (["plan", "--budget", "48M", "--out", "{tmp}/a-file/plan.json"], 1, "cannot write the plan to"),
    # ais report: the world's faults name the file; an empty cache is a report of generation 0
    (["report", "--descriptors", "descriptors", "--repo", "{repo}", "--cache", "{tmp}/cache", "--history",
      "{tmp}/none.sqlite", "--out", "{tmp}/a-file/report.html"], 1, "cannot write the report"),
    (["report", "--descriptors", "descriptors", "--repo", "{repo}", "--cache", "{tmp}/cache", "--history",
      "{tmp}/a-file", "--out", "{tmp}/r.html"], 1, "cannot read the history database"),
    (["report", "--descriptors", "descriptors", "--repo", "{repo}", "--cache", "{tmp}/cache", "--history",
      "{tmp}/none.sqlite", "--out", "{tmp}/r.html"], 0, "(generation 0)"),
    (["serve", "--plain-http", "--descriptors", "descriptors", "--repo", "{repo}", "--cache", "{tmp}/cache", "--transport",
      "multicast", "--seconds", "0"], 2, "--transport multicast needs --multicast GROUP:PORT"),
    (["serve", "--plain-http", "--descriptors", "descriptors", "--repo", "{repo}", "--cache", "{tmp}/cache", "--transport",
      "pigeon", "--seconds", "0"], 2, "argument --transport: invalid choice: 'pigeon'"),
    # the console's admin token (ais serve --admin-token-file): missing, readable by the group, too short
    (["serve", "--plain-http", *SERVE, "--admin-token-file", "{tmp}/no-token", "--seconds", "0"], 2,
     "no-token: No such file or directory"),
    (["serve", "--plain-http", *SERVE, "--admin-token-file", "{tmp}/group-token", "--seconds", "0"], 2,
     "readable by others (mode 640); chmod 600 it"),
    (["serve", "--plain-http", *SERVE, "--admin-token-file", "{tmp}/short-token", "--seconds", "0"], 2,
     "expected one line of 16 to 256 printable characters"),
    (["client", "plan", "--server", "http://127.0.0.1:9", "--host", "web01", "--target", "{tmp}/disk",
      "--state", "{tmp}/state", "--transport", "pigeon"], 2, "argument --transport: invalid choice: 'pigeon'"),
    (["client", "plan", "--server", "{hostile}", "--host", "web01", "--target", "{tmp}/disk", "--state",
      "{tmp}/state"], 1, "is not a valid document"),
    # in-place updates (ais update, ais agent)
    (["update", "submit", "--group", "nosuch", "--install", "make", *UPDATE_SITE], 2, "--group nosuch: no host is in it"),
    (["update", "submit", "--group", "all", *UPDATE_SITE], 2, "at least one --install or --erase"),
    (["update", "submit", "--group", "all", "--install", "no-such-package", *UPDATE_SITE], 2, "no such package"),
    (["update", "submit", "--group", "all", "--erase", "make", "--key", "{tmp}/a-file", *UPDATE_SITE], 2,
     "not a PEM private key"),
    (["update", "status", "7", *UPDATE_SITE], 2, "no update 7"),
    (["agent", "run", *AGENT, "--root", "{tmp}"], 2, "no rpm database at var/lib/rpm"),
    (["agent", "run", *AGENT, "--root", "{tmp}/root", "--host", "Not_A_Host"], 2, "is not a host name"),
    (["agent", "run", *AGENT, "--root", "{tmp}/root", "--listen", "nonsense"], 2, "expected ADDRESS:PORT"),
    (["agent", "run", *AGENT, "--root", "{tmp}/root", "--update-key", "junk"], 2, "neither 64 hex digits nor a readable file"),
    (["agent", "run", *AGENT, "--root", "{tmp}/root", "--token-file", "{tmp}/no-token"], 2, "no token"),
    (["agent", "run", *AGENT, "--root", "{tmp}/root", "--idle-cpu", "-1"], 2, "expected a number >= 0"),
    # signed RPMs: nothing is signed without the site's RPM key, and --repo is never defaulted
    (["site", "sign-rpms", "--cache", "{tmp}/cache"], 2, "the following arguments are required: --repo"),
    (["site", "sign-rpms", "--repo", "{tmp}/a-file", "--cache", "{tmp}/cache"], 2, "a-file: not a directory"),
    (["site", "sign-rpms", "--repo", "{repo}", "--cache", "{tmp}/cache"], 2,
     "the site has no RPM signing key"),
    # a negative fanout passed argparse and made random.sample raise inside the agent's gossip
    (["agent", "run", *AGENT, "--root", "{tmp}/root", "--fanout", "-1"], 2, "expected a whole number from 0"),
]

# Plans a hostile or wrong server may send; each is refused at the client's boundary (exit 1, no write).
GOOD_PLAN = {"format": 1, "host": "web01", "scd": "web-1", "generation": 3, "configuration": ["a-1-1.x86_64"],
             "image": None, "fallback": None, "packages": [], "files": [],
             "predicted_seconds": {"total": 1.0, "source": "manifest", "image": 0.5, "rpm": 0.2,
                                   "host_files": 0.1, "finish": 0.2}}
BAD_PLANS = [
    ("nested 100,000 deep", NESTED, "is not a valid document"),
    ("not JSON", b"<html>proxy error</html>", "is not valid JSON"),
    ("missing field", json.dumps({k: v for k, v in GOOD_PLAN.items() if k != "files"}).encode(), "`files`"),
    ("wrong type", json.dumps({**GOOD_PLAN, "packages": "all"}).encode(), "$.packages"),
    ("extra field", json.dumps({**GOOD_PLAN, "run_this": "rm -rf /"}).encode(), "run_this"),
    ("generation 2**70", json.dumps({**GOOD_PLAN, "generation": 2**70}).encode(), "$.generation"),
    ("package without digest", json.dumps({**GOOD_PLAN, "packages": [
        {"nevra": "a", "filename": "a.rpm", "size": 1, "installed_size": 1, "file_count": 1, "url": "/a"}]}).encode(),
     "sha256"),
    ("format 2", json.dumps({**GOOD_PLAN, "format": 2}).encode(), "$.format"),
    ("an RPM key that is not one", json.dumps({**GOOD_PLAN, "rpm_keys": ["rm -rf /"]}).encode(), "$.rpm_keys"),
]


@pytest.mark.parametrize("body, words", [c[1:] for c in BAD_PLANS], ids=[c[0] for c in BAD_PLANS])
def test_client_refuses_a_malformed_plan(body, words, tmp_path):
    hostile = CannedServer(body)
    try:
        proc = subprocess.run(ais_command("client", "plan", "--server", hostile.url, "--host", "web01",
                                          "--target", str(tmp_path / "disk"), "--state", str(tmp_path / "state")),
                              capture_output=True, text=True, timeout=120)
    finally:
        hostile.close()
    assert proc.returncode == 1, proc.stderr
    assert words in proc.stderr and "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    assert not (tmp_path / "disk").exists()


@pytest.mark.parametrize("argv, code, words", CASES, ids=[" ".join(c[0][:4] + c[0][-4:-2]) for c in CASES])
def test_error_exit_codes_and_messages(argv, code, words, repo_dir, tmp_path):
    (tmp_path / "a-file").write_text("not a directory\n")
    for name, text, mode in (("group-token", "a-good-admin-token-0123456789", 0o640), ("short-token", "short", 0o600)):
        (tmp_path / name).write_text(text + "\n")
        (tmp_path / name).chmod(mode)
    (tmp_path / "root" / "var" / "lib" / "rpm").mkdir(parents=True)  # an installed system, for `ais agent`
    hostile = CannedServer(NESTED)
    try:
        filled = [a.format(tmp=tmp_path, hostile=hostile.url, repo=repo_dir) for a in argv]
        if filled[0] in ("rebuild", "cache", "plan"):
            filled += ["--repo", str(repo_dir), "--cache", str(tmp_path / "cache")]
        proc = subprocess.run(ais_command(*filled), cwd=ROOT, capture_output=True, text=True, timeout=300)
    finally:
        hostile.close()
    assert proc.returncode == code, proc.stderr
    assert words in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    assert not Path("/proc/x.json").exists()
    assert not list(tmp_path.glob("**/.plan.json.*")), "no temporary plan file left behind"
