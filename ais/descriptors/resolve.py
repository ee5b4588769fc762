"""Resolve each SCD to a configuration: a dependency-closed set of concrete RPMs.

Reads: SCD records (already checked for references and cycles) and a
`RepoPool` (the repository's repodata in libsolv). An SCD's requests are its
installation base's, then those of the SCDs it extends (nearest wins, so a
patch-level SCD can pin a newer version), then its own; libsolv then installs
them all at once (`ais.repo.solver`): dependencies from the repository, newest
version first, ranged provides, rich dependencies, conflicts and obsoletes
honoured, alternatives backtracked. Fails by returning `Problem`s, every one at
once, each at the SCD line of a request it involves (and naming the others): a
package or version the repository lacks, two pins of one package, a requirement
nothing (installable) provides, requests that conflict or obsolete each other.
Returns `Configuration` records.
"""

from __future__ import annotations

from dataclasses import dataclass

from ais.descriptors.parse import PackageRequest, ScdRecord
from ais.errors import Problem
from ais.model import Configuration
from ais.repo.solver import RepoPool, Request, Unresolved


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


def as_requests(requests: dict[str, tuple[PackageRequest, Origin]]) -> list[Request]:
    """The solver's requests, in name order, each carrying where it was written."""
    return [Request(name, req.version, req.release, origin) for name, (req, origin) in sorted(requests.items())]


def to_problem(unresolved: Unresolved, scd: ScdRecord) -> Problem:
    """A solver problem at the line of the first request it involves, naming the others."""
    origins = sorted({r.origin for r in unresolved.requests}, key=lambda o: (o.file, o.line))
    if not origins:
        return Problem(scd.file, scd.line, unresolved.message)
    message = unresolved.message
    if len(origins) > 1:
        message += " (requests at " + ", ".join(f"{o.file}:{o.line}" for o in origins) + ")"
    return Problem(origins[0].file, origins[0].line, message)


def resolve_scd(scd: ScdRecord, by_name: dict[str, ScdRecord], pool: RepoPool) -> tuple[Configuration | None, list[Problem]]:
    """The configuration of one SCD (packages without scriptlet counts), or its problems."""
    problems: list[Problem] = []
    base_name = base_of(scd, by_name)
    requests = effective_requests(scd, by_name)
    if scd.kind == "system" and base_name in by_name:
        requests = merge_base(requests, effective_requests(by_name[base_name], by_name), problems)
    resolution = pool.resolve(as_requests(requests))
    problems += [to_problem(u, scd) for u in resolution.problems]
    if problems:
        return None, problems
    return Configuration(scd.name, base_name or scd.name, scd.kind, tuple(resolution.packages), scd.file,
                         on_change=scd.on_change), []
