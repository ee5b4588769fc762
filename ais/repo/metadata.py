"""The repository's metadata: createrepo_c, run again when the RPM files changed.

What it does: `stale(repo)` says whether any RPM under the repository is newer than its
repodata/repomd.xml (or there is none); `refresh(repo)` runs `createrepo_c` over it, which
writes the new repodata beside the old one and swaps it in. `ais site sign-rpms` calls it after
re-signing RPMs (each file's sha256, which the metadata records and plans check, changed).

Reads: the repository directory. Fails with `ToolError` (createrepo_c failed or is missing).
Returns nothing / a bool.
"""

from __future__ import annotations

import os
from pathlib import Path

from ais.run import run

REPOMD = Path("repodata") / "repomd.xml"


def rpm_files(repo: str | os.PathLike) -> list[Path]:
    """Every *.rpm under the repository (not under repodata/, not hidden), sorted."""
    found = []
    for dirpath, dirnames, filenames in os.walk(repo):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "repodata")
        found.extend(Path(dirpath, f) for f in sorted(filenames) if f.endswith(".rpm") and not f.startswith("."))
    return found


def stale(repo: str | os.PathLike) -> bool:
    """Whether the metadata is missing or older than one of the RPMs."""
    try:
        made = Path(repo, REPOMD).stat().st_mtime_ns
    except FileNotFoundError:
        return True
    return any(p.stat().st_mtime_ns > made for p in rpm_files(repo))


def refresh(repo: str | os.PathLike) -> None:
    """createrepo_c over the repository (as `make packages` and `make real-site` build it)."""
    run(["createrepo_c", "--quiet", "--workers", "2", os.fspath(repo)], timeout=1800)
