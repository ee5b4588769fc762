"""`ais site sign-rpms`: sign every RPM of a repository with the site's OpenPGP key, then refresh its metadata.

What it does: `sign_repo(repo, cache)` checks every RPM under the repository against the site's
RPM key (`ais.rpmenv.signature_states`: rpmkeys -K with a throw-away rpmdb holding only that key)
and re-signs, with rpmsign, each one that is not signed by it: unsigned, signed by another key (a
rotated one, a vendor's), or with a signature that does not match. Atomic per file: a copy beside
the file (`.NAME.ais-signing`, which createrepo_c ignores) is signed and renamed over it, so a file
is either the old one or the signed one, never half written. Then, if anything was signed or the
metadata is older than an RPM (a run interrupted before its createrepo_c), createrepo_c refreshes
the repository's metadata (ais.repo.metadata). Running it again signs nothing. Progress: k of n
files checked, k of m signed (ais.progress).

Reads: the repository, CACHE/site/ (ais.rpmkey). Fails with `UsageError` (the site has no RPM
key; the repository is not a directory), `BuildError` (an RPM whose digests do not match: damaged,
not signed), `ToolError` (rpmsign, gpg, createrepo_c). Returns a summary dict: rpms, signed (file
names), metadata_refreshed.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ais import progress, rpmkey
from ais.errors import BuildError, UsageError, WorldError, describe_os_error
from ais.files import fsync_dir
from ais.repo import metadata
from ais.rpmenv import rpmsign, signature_states

BATCH = 32  # files per rpmsign call (one gpg start per call, not per file)
TEMP_SUFFIX = ".ais-signing"


def sign_repo(repo: str | os.PathLike, cache: str | os.PathLike) -> dict:
    """Sign what is not signed by the site key, refresh the metadata if needed; a summary."""
    repo = Path(repo)
    if not repo.is_dir():
        raise UsageError(f"--repo {repo}: not a directory")
    fpr = rpmkey.fingerprint(cache)
    paths = metadata.rpm_files(repo)
    _remove_leftovers(repo)
    states = signature_states(paths, rpmkey.public_path(cache))
    damaged = [p for p in paths if states[p] == "damaged"]
    if damaged:
        raise BuildError(f"{len(damaged)} RPM(s) in {repo} fail their digest check (damaged: rebuild or fetch "
                         f"them again; they are not signed): {', '.join(p.name for p in damaged[:5])}")
    todo = [p for p in paths if states[p] != "signed"]
    progress.line(f"sign-rpms: {len(paths) - len(todo)} of {len(paths)} RPMs are signed by the site key "
                  f"{fpr[-16:]}; signing {len(todo)}")
    if todo:
        with progress.task("signing RPMs", total=len(todo), unit="RPMs") as task, rpmkey.gpg_home(cache) as home:
            for start in range(0, len(todo), BATCH):
                _sign_batch(todo[start:start + BATCH], home, fpr)
                task.advance(len(todo[start:start + BATCH]))
    refreshed = bool(todo) or metadata.stale(repo)
    if refreshed:
        progress.line(f"sign-rpms: createrepo_c {repo}")
        metadata.refresh(repo)
    return {"repo": str(repo), "key": fpr, "rpms": len(paths), "signed": [p.name for p in todo],
            "metadata_refreshed": refreshed}


def _sign_batch(paths: list[Path], home: Path, fpr: str) -> None:
    """Sign copies, then rename each over its original (one rename per file: atomic)."""
    copies = [p.with_name(f".{p.name}{TEMP_SUFFIX}") for p in paths]
    try:
        for path, copy in zip(paths, copies):
            shutil.copy(path, copy)
        rpmsign(copies, home, fpr)
        for path, copy in zip(paths, copies):
            _fsync(copy)
            os.rename(copy, path)
        for parent in {p.parent for p in paths}:
            fsync_dir(parent)
    except OSError as err:
        raise WorldError(f"cannot sign RPMs in {paths[0].parent}: {describe_os_error(err)}") from err
    finally:
        for copy in copies:
            copy.unlink(missing_ok=True)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_leftovers(repo: Path) -> None:
    """Copies an interrupted run left behind (the originals are intact)."""
    for dirpath, _, filenames in os.walk(repo):
        for name in filenames:
            if name.startswith(".") and name.endswith(TEMP_SUFFIX):
                Path(dirpath, name).unlink(missing_ok=True)
