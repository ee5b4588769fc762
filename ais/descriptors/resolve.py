"""Resolve each SCD to a configuration: a dependency-closed set of concrete RPMs.

Reads: SCD records (already checked for references and cycles) and a
`RepoIndex`. An SCD's packages are its installation base's, then those of the
SCDs it extends (nearest wins, so a patch-level SCD can pin a newer version),
then its own; dependencies are pulled in from the repository, newest provider
first, preferring what the configuration already has. Fails by returning
`Problem`s: a package or version the repository lacks, a requirement nothing
provides, two versions of one package. Returns `Configuration` records.
"""

from __future__ import annotations

from dataclasses import dataclass

from ais.descriptors.parse import PackageRequest, ScdRecord
from ais.errors import Problem
from ais.model import Configuration, Package
from ais.repo.headers import RepoIndex


@dataclass(frozen=True)
class Origin:
    """Where a package request was written (for error messages)."""

    file: str
    line: int


def effective_requests(scd: ScdRecord, by_name: dict[str, ScdRecord]) -> dict[str, tuple[PackageRequest, Origin]]:
    """Requests of scd and the SCDs it extends; the nearest SCD's entry wins."""
    chain = []
    current: ScdRecord | None = scd
    while current is not None and current not in chain:
        chain.append(current)
        current = by_name.get(current.extends) if current.extends else None
    merged: dict[str, tuple[PackageRequest, Origin]] = {}
    for record in reversed(chain):
        for req in record.packages:
            merged[req.name] = (req, Origin(record.file, req.line))
    return merged


def base_of(scd: ScdRecord, by_name: dict[str, ScdRecord]) -> str | None:
    seen = set()
    current: ScdRecord | None = scd
    while current is not None and current.name not in seen:
        if current.kind == "base":
            return current.name
        if current.base:
            return current.base
        seen.add(current.name)
        current = by_name.get(current.extends) if current.extends else None
    return None


def merge_base(system: dict, base: dict, problems: list[Problem]) -> dict:
    """Base requests plus system requests; two different pins of one name is an error."""
    merged = dict(base)
    for name, (req, origin) in system.items():
        if name in base:
            base_req, base_origin = base[name]
            if _pinned(base_req) and _pinned(req) and _pin(base_req) != _pin(req):
                problems.append(Problem(origin.file, origin.line,
                    f"two versions of {name!r} in one configuration: {_pin(req)} here and {_pin(base_req)} "
                    f"in the installation base ({base_origin.file}:{base_origin.line}); pin one"))
                continue
            if not _pinned(req):
                continue  # the base's pin stands
        merged[name] = (req, origin)
    return merged


def _pinned(req: PackageRequest) -> bool:
    return req.version is not None or req.release is not None


def _pin(req: PackageRequest) -> str:
    return f"{req.version or '*'}-{req.release or '*'}"


def pick_requested(requests: dict, index: RepoIndex, problems: list[Problem]) -> dict[str, tuple[Package, Origin]]:
    chosen = {}
    for name, (req, origin) in sorted(requests.items()):
        pkg = index.find(name, req.version, req.release)
        if pkg is None:
            problems.append(Problem(origin.file, origin.line, _missing_message(req, index)))
        else:
            chosen[name] = (pkg, origin)
    return chosen


def _missing_message(req: PackageRequest, index: RepoIndex) -> str:
    versions = index.by_name.get(req.name)
    if not versions:
        return f"package {req.name!r} is not in the repository; check the name or add its spec to packages/"
    have = ", ".join(f"{p.version}-{p.release}" for p in versions)
    return f"package {req.name!r} version {_pin(req)} is not in the repository (it has {have})"


def close_dependencies(chosen: dict[str, tuple[Package, Origin]], index: RepoIndex, problems: list[Problem]) -> None:
    """Add what the chosen packages require, in place; report what cannot be met."""
    queue = [name for name in sorted(chosen)]
    while queue:
        pkg, origin = chosen[queue.pop()]
        for requirement in pkg.requires:
            providers = index.providers(requirement)
            if any(chosen.get(p.name, (None,))[0] == p for p in providers):
                continue
            free = [p for p in providers if p.name not in chosen]
            if not free:
                problems.append(Problem(origin.file, origin.line, _unsatisfied(pkg, requirement, providers, chosen)))
                continue
            chosen[free[0].name] = (free[0], origin)
            queue.append(free[0].name)


def _unsatisfied(pkg: Package, requirement: str, providers: list[Package], chosen: dict) -> str:
    if not providers:
        return (f"unsatisfied dependency: {pkg.nevra} needs {requirement!r}, "
                "which no package in the repository provides")
    have = ", ".join(sorted({chosen[p.name][0].nevra for p in providers}))
    return (f"unsatisfied dependency: {pkg.nevra} needs {requirement!r}, but this configuration "
            f"has {have}; pin a version that provides it")


def resolve_scd(scd: ScdRecord, by_name: dict[str, ScdRecord], index: RepoIndex) -> tuple[Configuration | None, list[Problem]]:
    problems: list[Problem] = []
    base_name = base_of(scd, by_name)
    requests = effective_requests(scd, by_name)
    if scd.kind == "system" and base_name in by_name:
        requests = merge_base(requests, effective_requests(by_name[base_name], by_name), problems)
    chosen = pick_requested(requests, index, problems)
    close_dependencies(chosen, index, problems)
    if problems:
        return None, problems
    packages = tuple(sorted((pkg for pkg, _ in chosen.values()), key=lambda p: p.nevra))
    return Configuration(scd.name, base_name or scd.name, scd.kind, packages, scd.file), []
