"""Descriptors: read, validate and resolve SCD/HCD files and groups.xml into a `Site`.

Reads: a descriptors directory (`scd/*.xml`, `hcd/*.xml`, the optional
`groups.xml`, host file sources) and an RPM repository directory: its repodata
once (`ais.repo.solver`, which also resolves), plus the header of each RPM a
configuration installs for its scriptlet count (`ais.repo.headers`;
`Site.packages` no configuration installs keep a count of 0, nothing reads it).
Fails with one `DescriptorError` listing every problem found (file:line and
what to do) — nothing past this edge sees XML or trusts its input. Returns a
`Site` of frozen dataclasses.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from ais.descriptors.checks import check_groups, normalise_mac, run_checks
from ais.descriptors.parse import GroupRecord, HcdRecord, parse_descriptors
from ais.descriptors.resolve import resolve_scd
from ais.errors import BadInput, DescriptorError, Problem
from ais.model import ALL_GROUP, Configuration, Group, Host, HostFile, Site
from ais.repo.headers import with_scriptlets
from ais.repo.solver import RepoPool


def load_site(descriptors_dir: str | os.PathLike, repo_dir: str | os.PathLike) -> Site:
    """Parse, check and resolve everything; raise DescriptorError with all problems."""
    directory = Path(descriptors_dir)
    if not directory.is_dir():
        raise BadInput(f"{directory}: descriptors directory not found")
    pool = RepoPool(repo_dir)
    parsed = parse_descriptors(directory)
    problems = parsed.problems + run_checks(parsed.scds, parsed.hcds, directory) + check_groups(parsed)
    by_name = {s.name: s for s in parsed.scds}
    configurations = []
    if not problems:
        for scd in parsed.scds:
            conf, found = resolve_scd(scd, by_name, pool)
            problems += found
            if conf is not None:
                configurations.append(conf)
    if not problems and not parsed.scds:
        problems.append(Problem(str(directory), None, "no SCDs found under scd/"))
    if problems:
        raise DescriptorError(problems)
    hosts = tuple(sorted((_host(h, directory) for h in parsed.hcds), key=lambda h: h.name))
    counted = with_scriptlets({p for c in configurations for p in c.packages}, repo_dir)
    configurations = [_counted(c, counted) for c in configurations]
    packages = tuple(counted.get(p.nevra, p) for p in pool.packages)
    return Site(tuple(sorted(configurations, key=lambda c: c.name)), hosts, packages, site_groups(hosts, parsed.groups))


def site_groups(hosts: tuple[Host, ...], declared: list[GroupRecord]) -> tuple[Group, ...]:
    """The implicit group of every host plus each declared group, with its members, by name."""
    groups = [Group(ALL_GROUP, "every host", tuple(sorted(h.name for h in hosts)))]
    groups += [Group(g.name, g.description, tuple(sorted(h.name for h in hosts if g.name in h.groups)))
               for g in declared]
    return tuple(sorted(groups, key=lambda g: g.name))


def _counted(conf: Configuration, counted: dict) -> Configuration:
    """conf with the scriptlet-counted record of each of its packages."""
    return replace(conf, packages=tuple(counted[p.nevra] for p in conf.packages))


def _host(record: HcdRecord, directory: Path) -> Host:
    files = tuple(
        HostFile(
            path=f.path,
            content=(directory / f.source).read_bytes() if f.source is not None else f.text.encode(),
            mode=int(f.mode, 8),
            owner=f.owner,
            group=f.group,
        )
        for f in record.files
    )
    return Host(
        name=record.name,
        macs=tuple(normalise_mac(m) for m, _ in record.macs),
        scd=record.scd,
        reinstalls=record.reinstalls,
        files=files,
        token=record.token,
        source=record.file,
        transport=record.transport,
        groups=tuple(sorted({ALL_GROUP} | {name for name, _ in record.groups})),
    )
