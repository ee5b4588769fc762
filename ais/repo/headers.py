"""Scriptlet counts from RPM headers: the one figure repodata does not carry.

Reads: the header of each given RPM file through the rpm Python bindings (the
header only: neither payload nor signature is read). Used for the packages a
configuration installs, whose install time the cost model estimates from, among
others, the number of scriptlets; everything else about a package comes from
repodata (`ais.repo.solver`). Fails with `BadInput` when a file is missing or
not an RPM. Returns the packages with `scriptlets` filled in.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Iterable

import rpm

from ais.errors import BadInput
from ais.model import Package

_SCRIPTLET_TAGS = (
    rpm.RPMTAG_PREIN, rpm.RPMTAG_POSTIN, rpm.RPMTAG_PREUN,
    rpm.RPMTAG_POSTUN, rpm.RPMTAG_PRETRANS, rpm.RPMTAG_POSTTRANS,
)


def count_scriptlets(path: Path) -> int:
    """Install/erase scriptlets in one RPM's header."""
    ts = rpm.TransactionSet()
    ts.setVSFlags(rpm._RPMVSF_NOSIGNATURES | rpm._RPMVSF_NODIGESTS)
    try:
        with open(path, "rb") as handle:
            hdr = ts.hdrFromFdno(handle.fileno())
    except OSError as err:
        raise BadInput(f"{path}: cannot read the RPM the repository metadata lists ({err.strerror}); "
                       "run createrepo_c again") from err
    except rpm.error as err:
        raise BadInput(f"{path}: not a readable RPM ({err})") from err
    return sum(1 for tag in _SCRIPTLET_TAGS if hdr[tag])


def with_scriptlets(packages: Iterable[Package], repo_dir: str | os.PathLike) -> dict[str, Package]:
    """{nevra: package with its scriptlet count} for the given packages of repo_dir."""
    root = Path(repo_dir)
    return {p.nevra: replace(p, scriptlets=count_scriptlets(root / p.filename)) for p in packages}
