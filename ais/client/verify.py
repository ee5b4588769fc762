"""Check the installed target before it is declared good.

What it does: `verify_target(plan, root)` checks that
1. the target's rpmdb lists exactly the configuration's packages (`rpm -qa`),
2. `rpm -Va` reports nothing except the allowed differences below,
3. every host file has the planned sha256, mode, owner and group.

Allowed `rpm -Va` differences, and why:
- a file the host files overwrite (the HCD deliberately replaces it; its
  content is checked in step 3 instead);
- `%config` files listed in `CONFIG_WRITTEN_BY_SCRIPTLETS`: a package's
  %post scriptlet writes them on purpose, so they differ from the packaged
  copy on every correct install. In the demo repository that is only
  slurm-client's /etc/slurm/slurm.conf (`%ghost %config`, written by %post
  when absent). Nothing else is allowed: an unexpected line is a failure, with
  rpm's own output in the message. (mail and db installs give an empty
  `rpm -Va`: tests/integration/test_client_reinstall.py checks it.)

Reads: the plan, the target root. Fails with `ClientError` naming every
problem. Returns the list of allowed rpm -Va lines (for the install record).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ais.client.hostfiles import read_ids, resolve
from ais.errors import ClientError
from ais.rpmenv import installed_nevras, verify

# %config files that the demo packages' scriptlets change after rpm unpacked them.
CONFIG_WRITTEN_BY_SCRIPTLETS = frozenset({
    "/etc/slurm/slurm.conf",  # slurm-client: %ghost %config(noreplace), written by its %post
})


def rpm_va_problems(output: str, host_paths: set[str]) -> tuple[list[str], list[str]]:
    """Split `rpm -Va` lines into (allowed, unexpected)."""
    allowed, bad = [], []
    for line in output.splitlines():
        if not line.strip():
            continue
        path = line[line.find("/"):] if "/" in line else ""
        is_config = len(line) > 11 and line[11] == "c" or " c /" in line
        if path in host_paths or (is_config and path in CONFIG_WRITTEN_BY_SCRIPTLETS):
            allowed.append(line)
        else:
            bad.append(line)
    return allowed, bad


def check_host_files(plan: dict, root: str) -> list[str]:
    users, groups = read_ids(root, "passwd"), read_ids(root, "group")
    problems = []
    for entry in plan["files"]:
        path = Path(root, entry["path"].lstrip("/"))
        try:
            st = os.lstat(path)
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError as err:
            problems.append(f"host file {entry['path']}: {err.strerror}")
            continue
        want = (int(entry["mode"], 8), resolve(entry["owner"], users, "owner", root),
                resolve(entry["group"], groups, "group", root))
        got = (st.st_mode & 0o7777, st.st_uid, st.st_gid)
        if digest != entry["sha256"]:
            problems.append(f"host file {entry['path']}: content differs from the plan")
        if got != want:
            problems.append(f"host file {entry['path']}: mode/uid/gid {oct(got[0])}/{got[1]}/{got[2]}, "
                            f"expected {oct(want[0])}/{want[1]}/{want[2]}")
    return problems


def verify_target(plan: dict, root: str) -> list[str]:
    problems = []
    installed = installed_nevras(root)
    expected = set(plan["configuration"])
    if installed != expected:
        problems.append(f"rpm -qa differs from configuration {plan['scd']}: "
                        f"extra {sorted(installed - expected)[:5]}, missing {sorted(expected - installed)[:5]}")
    allowed, bad = rpm_va_problems(verify(root), {f["path"] for f in plan["files"]})
    problems += [f"rpm -Va: {line}" for line in bad[:20]]
    problems += check_host_files(plan, root)
    if problems:
        raise ClientError("the installed target fails verification:\n  " + "\n  ".join(problems))
    return allowed
