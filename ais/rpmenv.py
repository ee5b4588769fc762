"""rpm as it is on the target, made to behave like rpm on a Red Hat system.

Every rpm call in AIS goes through here so images always carry /var/lib/rpm:
`--dbpath /var/lib/rpm` always (Debian's default is ~/.rpmdb, which `--root R`
would put at R/root/.rpmdb; on an RPM-based system it is the default anyway).
Installs get `--force-debian` only when the rpm on PATH is Debian's: that
option exists only there (it silences the "use Alien" nag) and any other rpm
refuses it. Which rpm it is is found once per rpm binary, from `rpm --help`.

Reads: a target root directory and RPM file paths. Fails with `ToolError` when
rpm fails, and with `BuildError` when a scriptlet failed although rpm exited 0
(rpm does that when a scriptlet cannot run). Returns the installed NEVRAs.
"""

from __future__ import annotations

import functools
import os
import shutil
from pathlib import Path

from ais.errors import BuildError
from ais.run import run

DBPATH = "/var/lib/rpm"
RPM_FLAGS = ["--dbpath", DBPATH]
DEBIAN_FLAG = "--force-debian"  # Debian's rpm only; only -i/-U accept it
# Printed by rpm even when it exits 0; any of these means the root is not what we asked for.
SCRIPTLET_FAILURES = ("scriptlet failed", "/bin/sh is needed", "execv(")


def rpm_cmd(root: str | os.PathLike, *args: str) -> list[str]:
    """argv for rpm operating on `root` with AIS's database path and flags."""
    return ["rpm", "--root", os.fspath(root), *RPM_FLAGS, *args]


def rpm_install(root: str | os.PathLike, rpm_paths: list[str | os.PathLike], *,
                upgrade: bool = False) -> None:
    """Install rpm_paths into root in ONE transaction; rpm orders by dependencies.

    One transaction, not one per package: 10x faster and rpm sees the whole set
    when it orders scriptlets.
    """
    if not rpm_paths:
        return
    Path(root).mkdir(parents=True, exist_ok=True)  # rpm -i creates the database itself
    mode = "-U" if upgrade else "-i"
    proc = run(rpm_cmd(root, mode, *install_flags(), "--quiet", *[os.fspath(p) for p in rpm_paths]))
    _check_scriptlets(proc.stdout + proc.stderr)


def install_flags() -> tuple[str, ...]:
    """Extra flags for -i/-U: ('--force-debian',) with Debian's rpm, else none."""
    return _install_flags_of(shutil.which("rpm") or "rpm")


@functools.lru_cache(maxsize=None)
def _install_flags_of(rpm_binary: str) -> tuple[str, ...]:
    """Asked once per rpm binary: Debian's rpm lists --force-debian in its --help."""
    proc = run([rpm_binary, "--help"], check=False)
    return (DEBIAN_FLAG,) if DEBIAN_FLAG in proc.stdout + proc.stderr else ()


def installed_nevras(root: str | os.PathLike) -> set[str]:
    """NEVRAs in root's rpm database, in AIS's name-epoch:version-release.arch form."""
    fmt = "%{NAME}-%{EPOCHNUM}:%{VERSION}-%{RELEASE}.%{ARCH}\\n"
    out = run(rpm_cmd(root, "-qa", "--qf", fmt)).stdout
    return {line.strip() for line in out.splitlines() if line.strip()}


def verify(root: str | os.PathLike) -> str:
    """Output of `rpm -Va` on root (empty when every file is as packaged)."""
    return run(rpm_cmd(root, "-Va"), check=False).stdout


def _check_scriptlets(output: str) -> None:
    bad = [line for line in output.splitlines() if any(s in line for s in SCRIPTLET_FAILURES)]
    if bad:
        raise BuildError("rpm reported failing scriptlets:\n" + "\n".join(bad[:10]))
