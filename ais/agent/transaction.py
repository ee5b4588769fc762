"""One rpm transaction on a live root, run as a child process: installs, up/downgrades and erases at once.

What it does: `ais agent transaction ROOT` (`main`) reads {"install": [rpm paths],
"erase": [names]} on stdin and runs them as ONE rpm transaction through the rpm
bindings (the rpm command line cannot mix -U and -e): dependencies and conflicts
are checked first (`ts.check`), then a test run, then the real run with
scriptlets. Nothing is applied when the check or the test run finds a problem.
When the root's rpmdb holds the site's RPM key (a site that signs its RPMs), rpm's
signature checking is on (`_pkgverify_level signature`): a package unsigned, signed by
another key or with a damaged signature is refused and nothing is applied.
It prints {"ok": bool, "problems": [...], "script_errors": [...]}.
It is a child process, not a call in the agent, because rpm chroots the whole
process for a transaction (the agent's other threads would see the root's files)
and because a crash or power cut must not take the agent's state with it.

`apply(root, install, erase)` (the agent's side) runs the child through
`ais.run.run` and returns its answer.

Reads: a root with an rpm database at /var/lib/rpm, RPM files. Fails (exit 1, JSON
on stdout) on a transaction problem; `apply` raises `ToolError` when the child cannot
run at all. Returns the JSON answer.
"""

from __future__ import annotations

import json
import os
import sys

from ais.errors import UsageError
from ais.rpmenv import DBPATH


def transact(root: str, install: list[str], erase: list[str]) -> dict:
    import rpm  # only the child pays for the bindings

    rpm.addMacro("_dbpath", DBPATH)
    signed = signed_site(rpm.TransactionSet(root))
    if signed:  # the site's RPM key is in the rpmdb: only packages it signed are installed
        rpm.addMacro("_pkgverify_level", "signature")  # read when a transaction set is made
    ts = rpm.TransactionSet(root)
    if not signed:
        ts.setVSFlags(rpm._RPMVSF_NOSIGNATURES)  # a site that does not sign: digests, checked by the agent too
    # An update may take a package back to an older version; after a power cut half-way through an
    # upgrade (old and new both in the database) the agent installs the new one again, replacing both.
    ts.setProbFilter(rpm.RPMPROB_FILTER_OLDPACKAGE | rpm.RPMPROB_FILTER_REPLACEPKG)
    try:
        for name in erase:
            ts.addErase(name)
        for path in install:
            with open(path, "rb") as f:
                header = ts.hdrFromFdno(f.fileno())
            ts.addInstall(header, path, "u")
    except (rpm.error, OSError) as err:  # a name not installed, an RPM file unreadable or not an RPM
        return {"ok": False, "problems": [f"{err}"], "script_errors": []}
    problems: list[str] = []
    if ts.check():  # rpm's words ("libc is needed by make-4.3-1.x86_64"), not check()'s tuples
        problems = [str(p) for p in ts.problems()] or ["unresolved dependencies"]
    if problems:
        return {"ok": False, "problems": problems, "script_errors": []}
    ts.order()
    script_errors: list[str] = []
    files: dict[str, int] = {}

    def callback(reason, amount, total, key, _data):
        if reason == rpm.RPMCALLBACK_INST_OPEN_FILE:
            files[key] = os.open(key, os.O_RDONLY)
            return files[key]
        if reason == rpm.RPMCALLBACK_INST_CLOSE_FILE:
            os.close(files.pop(key))
        elif reason == rpm.RPMCALLBACK_SCRIPT_ERROR:
            script_errors.append(f"scriptlet of {key or 'a package'} failed (exit {total})")
        return None

    ts.setFlags(rpm.RPMTRANS_FLAG_TEST)
    problems = [str(p) for p in ts.run(callback, "") or []]
    if problems:
        return {"ok": False, "problems": problems, "script_errors": []}
    ts.setFlags(0)
    problems = [str(p) for p in ts.run(callback, "") or []]
    return {"ok": not problems and not script_errors, "problems": problems, "script_errors": script_errors}


def signed_site(ts) -> bool:
    """Whether the root's rpmdb holds an OpenPGP key (gpg-pubkey: the site's RPM key, which images and the
    client import when the site signs its RPMs)."""
    return any(True for _ in ts.dbMatch("name", "gpg-pubkey"))


def apply(root: str, install: list[str], erase: list[str], timeout: float = 600.0) -> dict:
    """Run the transaction in a child; its JSON answer ({"ok", "problems", "script_errors"})."""
    from ais.run import run

    proc = run([sys.executable, "-m", "ais.cli", "agent", "transaction", root], check=False, timeout=timeout,
               input=json.dumps({"install": install, "erase": erase}))
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"ok": False, "problems": [f"the rpm transaction died (exit {proc.returncode}): "
                                          f"{proc.stderr.strip()[-500:]}"], "script_errors": []}


def main(root: str) -> int:
    try:
        request = json.loads(sys.stdin.read())
        if not isinstance(request, dict):
            raise ValueError("not a JSON object")
    except ValueError as err:
        raise UsageError(f"the transaction request on stdin is not {{\"install\": [...], \"erase\": [...]}}: {err}") \
            from err
    answer = transact(root, request.get("install", []), request.get("erase", []))
    sys.stdout.write(json.dumps(answer) + "\n")
    sys.stdout.flush()
    return 0 if answer["ok"] else 1
