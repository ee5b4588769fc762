"""Read the RPM repository through the rpm Python bindings.

Reads: every `*.rpm` under a repository directory (headers only; signatures are
not checked, digests are computed from the file). Fails with `BadInput` when
the directory is missing or a file is not an RPM. Returns `Package` records and
a `RepoIndex` that answers "who provides X" (names, virtual provides and files)
and compares versions the way rpm does.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

import rpm

from ais.errors import BadInput
from ais.files import file_sha256
from ais.model import Package

_SCRIPTLET_TAGS = (
    rpm.RPMTAG_PREIN, rpm.RPMTAG_POSTIN, rpm.RPMTAG_PREUN,
    rpm.RPMTAG_POSTUN, rpm.RPMTAG_PRETRANS, rpm.RPMTAG_POSTTRANS,
)
_OPS = {rpm.RPMSENSE_LESS: "<", rpm.RPMSENSE_GREATER: ">", rpm.RPMSENSE_EQUAL: "="}


@dataclass(frozen=True)
class Dep:
    """One Requires or Provides entry: name, operator ("" when unversioned), evr."""

    name: str
    op: str = ""
    evr: str = ""

    def __str__(self) -> str:
        return f"{self.name} {self.op} {self.evr}" if self.op else self.name

    @classmethod
    def parse(cls, text: str) -> "Dep":
        parts = text.split()
        return cls(parts[0], parts[1], parts[2]) if len(parts) == 3 else cls(parts[0])


def split_evr(evr: str) -> tuple[str, str, str]:
    """'1:2.3-4' -> ('1', '2.3', '4'); missing epoch is '0', missing release ''."""
    epoch, _, rest = evr.rpartition(":")
    version, _, release = rest.partition("-")
    return (epoch or "0", version, release)


def compare_evr(a: str, b: str) -> int:
    """rpm's ordering of two EVR strings; a missing release matches any release."""
    ea, va, ra = split_evr(a)
    eb, vb, rb = split_evr(b)
    if not ra or not rb:
        ra = rb = ""
    return rpm.labelCompare((ea, va, ra), (eb, vb, rb))


def _deps(hdr, names_tag, flags_tag, versions_tag) -> tuple[str, ...]:
    out = []
    for name, flags, version in zip(hdr[names_tag], hdr[flags_tag], hdr[versions_tag]):
        if name.startswith("rpmlib("):
            continue  # satisfied by rpm itself
        op = "".join(sym for bit, sym in _OPS.items() if flags & bit)
        out.append(str(Dep(name, op, version) if op and version else Dep(name)))
    return tuple(dict.fromkeys(out))


def read_package(path: Path, repo_root: Path) -> tuple[Package, tuple[str, ...]]:
    """Read one RPM file: its Package record and the files it installs."""
    ts = rpm.TransactionSet()
    ts.setVSFlags(rpm._RPMVSF_NOSIGNATURES | rpm._RPMVSF_NODIGESTS)
    try:
        with open(path, "rb") as handle:
            hdr = ts.hdrFromFdno(handle.fileno())
    except rpm.error as err:
        raise BadInput(f"{path}: not a readable RPM ({err})") from err
    files = tuple(hdr[rpm.RPMTAG_FILENAMES])
    package = Package(
        name=hdr[rpm.RPMTAG_NAME],
        epoch=hdr[rpm.RPMTAG_EPOCHNUM],
        version=hdr[rpm.RPMTAG_VERSION],
        release=hdr[rpm.RPMTAG_RELEASE],
        arch=hdr[rpm.RPMTAG_ARCH],
        filename=str(path.relative_to(repo_root)),
        size=path.stat().st_size,
        installed_size=hdr[rpm.RPMTAG_LONGSIZE],
        file_count=len(files),
        scriptlets=sum(1 for tag in _SCRIPTLET_TAGS if hdr[tag]),
        digest=file_sha256(path),
        requires=_deps(hdr, rpm.RPMTAG_REQUIRENAME, rpm.RPMTAG_REQUIREFLAGS, rpm.RPMTAG_REQUIREVERSION),
        provides=_deps(hdr, rpm.RPMTAG_PROVIDENAME, rpm.RPMTAG_PROVIDEFLAGS, rpm.RPMTAG_PROVIDEVERSION),
    )
    return package, files


class RepoIndex:
    """All packages of a repository, with provider look-ups."""

    def __init__(self, packages: list[Package], files: dict[str, tuple[str, ...]]):
        self.packages = tuple(sorted(packages))
        self.by_name: dict[str, list[Package]] = defaultdict(list)
        self._providers: dict[str, list[tuple[Dep, Package]]] = defaultdict(list)
        for pkg in self.packages:
            self.by_name[pkg.name].append(pkg)
            evr = f"{pkg.epoch}:{pkg.version}-{pkg.release}"
            self._providers[pkg.name].append((Dep(pkg.name, "=", evr), pkg))
            for text in pkg.provides:
                dep = Dep.parse(text)
                self._providers[dep.name].append((dep, pkg))
            for name in files.get(pkg.nevra, ()):
                self._providers[name].append((Dep(name), pkg))
        for versions in self.by_name.values():
            versions.sort(key=lambda p: _evr_key(p), reverse=True)

    def newest(self, name: str) -> Package | None:
        versions = self.by_name.get(name)
        return versions[0] if versions else None

    def find(self, name: str, version: str | None, release: str | None) -> Package | None:
        """The newest package called name matching the optional version and release."""
        for pkg in self.by_name.get(name, ()):
            if (version is None or pkg.version == version) and (release is None or pkg.release == release):
                return pkg
        return None

    def providers(self, requirement: str) -> list[Package]:
        """Packages satisfying a Requires string, newest first, each once."""
        want = Dep.parse(requirement)
        found = [pkg for dep, pkg in self._providers.get(want.name, ()) if satisfies(dep, want)]
        return sorted(set(found), key=_evr_key, reverse=True)


def satisfies(provide: Dep, want: Dep) -> bool:
    """Whether a Provides entry satisfies a Requires entry (rpm's range overlap)."""
    if not want.op or not provide.op:
        return True
    cmp = compare_evr(provide.evr, want.evr)
    if "=" in provide.op and cmp == 0 and "=" in want.op:
        return True
    if "=" not in provide.op:  # permissive: a ranged provide satisfies any versioned requirement
        return True
    return ("<" in want.op and cmp < 0) or (">" in want.op and cmp > 0)


def _evr_key(pkg: Package):
    return rpm.ver(f"{pkg.epoch}:{pkg.version}-{pkg.release}")


def load_repo(repo_dir: str | os.PathLike) -> RepoIndex:
    """Read every RPM under repo_dir; raise BadInput if there is none."""
    root = Path(repo_dir)
    if not root.is_dir():
        raise BadInput(f"{root}: repository directory not found (run `make packages`)")
    packages, files = [], {}
    for path in sorted(root.rglob("*.rpm")):
        if path.name.endswith(".src.rpm"):
            continue
        pkg, pkg_files = read_package(path, root)
        packages.append(pkg)
        files[pkg.nevra] = pkg_files
    if not packages:
        raise BadInput(f"{root}: no RPMs found (run `make packages`)")
    return RepoIndex(with_file_provides(packages, files), files)


def with_file_provides(packages: list[Package], files: dict[str, tuple[str, ...]]) -> list[Package]:
    """Add to each package's provides the files it ships that some package requires.

    rpm satisfies a file requirement (`/bin/sh`) from file lists; carrying just the
    required paths keeps later phases (closure of image sets) free of file lists.
    """
    wanted = {Dep.parse(r).name for p in packages for r in p.requires if r.startswith("/")}
    out = []
    for pkg in packages:
        shipped = tuple(f for f in files.get(pkg.nevra, ()) if f in wanted and f not in pkg.provides)
        out.append(replace(pkg, provides=pkg.provides + shipped) if shipped else pkg)
    return out
