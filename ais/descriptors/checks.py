"""Meaning checks over parsed descriptors, one named check per rule.

Reads: the records from `parse.py` and the descriptors directory (for host
file sources). Each `check_*` returns a list of `Problem`s with file, line and
what to do; none raises. Runs only after the schema accepted the files, so
attributes have the right shape here.
"""

from __future__ import annotations

import os
import posixpath
import re
from pathlib import Path

from ais.descriptors.parse import GroupRecord, HcdRecord, Parsed, ScdRecord
from ais.errors import Problem
from ais.model import ALL_GROUP

MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


def normalise_mac(text: str) -> str:
    return text.strip().lower().replace("-", ":")


def check_unique_scd_names(scds: list[ScdRecord]) -> list[Problem]:
    return _duplicates([(s.name, s.file, s.line) for s in scds], "SCD name")


def check_unique_host_names(hcds: list[HcdRecord]) -> list[Problem]:
    return _duplicates([(h.name, h.file, h.line) for h in hcds], "host name")


def check_macs(hcds: list[HcdRecord]) -> list[Problem]:
    problems, seen = [], []
    for host in hcds:
        for text, line in host.macs:
            mac = normalise_mac(text)
            if not MAC_RE.match(mac):
                problems.append(Problem(host.file, line, f"malformed MAC address {text.strip()!r}; write six hex pairs like 52:54:00:12:34:56"))
            else:
                seen.append((mac, host.file, line))
    return problems + _duplicates(seen, "MAC address")


def check_names_are_not_macs(hcds: list[HcdRecord]) -> list[Problem]:
    """A host named like a MAC (with ':' or '-') would be ambiguous at boot, where a
    client asks for its plan by name or by MAC: refuse the name."""
    return [Problem(h.file, h.line, f"host name {h.name!r} is written like a MAC address; a booting "
                                    "client asks by name or by MAC, so choose a name that is not six hex pairs")
            for h in hcds if h.name and MAC_RE.match(normalise_mac(h.name))]


def _duplicates(items: list[tuple[str, str, int]], what: str) -> list[Problem]:
    first: dict[str, tuple[str, int]] = {}
    problems = []
    for key, file, line in items:
        if key in first:
            other = f"{first[key][0]}:{first[key][1]}"
            problems.append(Problem(file, line, f"duplicate {what} {key!r} (also at {other}); each must be unique"))
        else:
            first[key] = (file, line)
    return problems


def check_scd_references(scds: list[ScdRecord]) -> list[Problem]:
    by_name = {s.name: s for s in scds}
    problems = []
    for scd in scds:
        if scd.kind == "base" and (scd.base or scd.extends):
            problems.append(Problem(scd.file, scd.line, "an installation base (kind=\"base\") cannot have base= or extends="))
        if scd.base is not None:
            target = by_name.get(scd.base)
            if target is None:
                problems.append(Problem(scd.file, scd.line, f"unknown installation base {scd.base!r}; known: {_known(by_name, 'base')}"))
            elif target.kind != "base":
                problems.append(Problem(scd.file, scd.line, f"base={scd.base!r} names an SCD that is not kind=\"base\""))
        if scd.extends is not None and scd.extends not in by_name:
            problems.append(Problem(scd.file, scd.line, f"extends unknown SCD {scd.extends!r}; known: {_known(by_name, 'system')}"))
        if scd.kind == "system" and scd.base is None and scd.extends is None:
            problems.append(Problem(scd.file, scd.line, "a system SCD needs base=\"...\" (its installation base) or extends=\"...\""))
    return problems


def _known(by_name: dict[str, ScdRecord], kind: str) -> str:
    names = sorted(n for n, s in by_name.items() if s.kind == kind)
    return ", ".join(names) if names else "(none)"


def check_extends_cycles(scds: list[ScdRecord]) -> list[Problem]:
    by_name = {s.name: s for s in scds}
    problems = []
    for scd in scds:
        chain, current = [scd.name], scd.extends
        while current in by_name:
            if current in chain:
                if current == scd.name:
                    loop = " -> ".join(chain + [current])
                    problems.append(Problem(scd.file, scd.line, f"inheritance cycle {loop}; remove one extends="))
                break
            chain.append(current)
            current = by_name[current].extends
    return problems


def check_package_requests(scds: list[ScdRecord]) -> list[Problem]:
    problems = []
    for scd in scds:
        seen: dict[str, int] = {}
        for req in scd.packages:
            if req.name in seen:
                problems.append(Problem(scd.file, req.line, f"package {req.name!r} is listed twice (first at line {seen[req.name]}); one configuration holds one version of a package"))
            seen.setdefault(req.name, req.line)
    return problems


def check_host_scds(hcds: list[HcdRecord], scds: list[ScdRecord]) -> list[Problem]:
    names = {s.name for s in scds}
    return [
        Problem(h.file, h.line, f"host runs unknown SCD {h.scd!r}; known: {', '.join(sorted(names)) or '(none)'}")
        for h in hcds if h.scd not in names
    ]


def check_host_files(hcds: list[HcdRecord], directory: Path) -> list[Problem]:
    problems = []
    for host in hcds:
        paths: set[str] = set()
        for rec in host.files:
            problems += check_target_path(host.file, rec.line, rec.path)
            if rec.path in paths:
                problems.append(Problem(host.file, rec.line, f"host file {rec.path} is given twice"))
            paths.add(rec.path)
            if rec.source is not None:
                problems += check_source(host.file, rec.line, rec.source, directory)
            if int(rec.mode, 8) > 0o7777:
                problems.append(Problem(host.file, rec.line, f"mode {rec.mode} is not a file mode"))
    return problems


def check_target_path(file: str, line: int, path: str) -> list[Problem]:
    """A host file path must be absolute, normalised and stay inside the target."""
    if not path.startswith("/"):
        return [Problem(file, line, f"host file path {path!r} is relative; write an absolute path like /etc/hostname")]
    if ".." in path.split("/"):
        return [Problem(file, line, f"host file path {path!r} contains '..'; it could escape the target root")]
    if posixpath.normpath(path) != path or path == "/" or "\x00" in path:
        return [Problem(file, line, f"host file path {path!r} is not a normalised file path; write it as {posixpath.normpath(path)!r}")]
    return []


def check_source(file: str, line: int, source: str, directory: Path) -> list[Problem]:
    """A host file source must be a regular file inside the descriptors repository."""
    root = os.path.realpath(directory)
    if os.path.isabs(source):
        return [Problem(file, line, f"source {source!r} is absolute; give a path relative to the descriptors repository")]
    real = os.path.realpath(os.path.join(root, source))
    if os.path.commonpath([root, real]) != root:
        return [Problem(file, line, f"source {source!r} resolves outside the descriptors repository (to {real}); keep host files inside it")]
    if not os.path.isfile(real):
        return [Problem(file, line, f"source {source!r} does not exist or is not a regular file")]
    return []


def check_group_declarations(groups: list[GroupRecord]) -> list[Problem]:
    """Each declared group once; the implicit group is never declared."""
    problems = [Problem(g.file, g.line, f"group {ALL_GROUP!r} is implicit (every host is in it); remove this declaration")
                for g in groups if g.name == ALL_GROUP]
    return problems + _duplicates([(g.name, g.file, g.line) for g in groups], "group")


def check_host_groups(hcds: list[HcdRecord], groups: list[GroupRecord], groups_file: str | None) -> list[Problem]:
    """Every group an HCD names is declared (or is the implicit one), and named once."""
    declared = {g.name for g in groups} | {ALL_GROUP}
    listing = ", ".join(sorted({g.name for g in groups} - {ALL_GROUP})) or "(none)"
    where = "groups.xml" if groups_file else "groups.xml (there is none)"
    problems = []
    for host in hcds:
        seen: dict[str, int] = {}
        for name, line in host.groups:
            if name not in declared:
                problems.append(Problem(host.file, line, f"unknown group {name!r}; declared in {where}: {listing}"))
            elif name in seen:
                problems.append(Problem(host.file, line, f"group {name!r} is named twice (first at line {seen[name]}); name it once"))
            seen.setdefault(name, line)
    return problems


def check_groups_used(groups: list[GroupRecord], hcds: list[HcdRecord]) -> list[Problem]:
    """A declared group has at least one host."""
    used = {name for h in hcds for name, _ in h.groups}
    return [Problem(g.file, g.line, f"empty group {g.name!r}: no HCD names it; add <group>{g.name}</group> "
                                    "to a host's HCD or remove the declaration")
            for g in groups if g.name not in used and g.name != ALL_GROUP]


def check_groups(parsed: Parsed) -> list[Problem]:
    """The group checks a partly refused input still allows: no HCD names a group groups.xml
    may declare when groups.xml was refused, and no group is empty for want of a refused HCD."""
    problems = check_group_declarations(parsed.groups)
    if not parsed.groups_refused:
        problems += check_host_groups(parsed.hcds, parsed.groups, parsed.groups_file)
    if not parsed.unread_hcds:
        problems += check_groups_used(parsed.groups, parsed.hcds)
    return problems


def run_checks(scds: list[ScdRecord], hcds: list[HcdRecord], directory: Path) -> list[Problem]:
    """Every meaning check of SCDs and HCDs, in a fixed order (groups: `check_groups`)."""
    problems: list[Problem] = []
    problems += check_unique_scd_names(scds)
    problems += check_scd_references(scds)
    problems += check_extends_cycles(scds)
    problems += check_package_requests(scds)
    problems += check_unique_host_names(hcds)
    problems += check_macs(hcds)
    problems += check_names_are_not_macs(hcds)
    problems += check_host_scds(hcds, scds)
    problems += check_host_files(hcds, directory)
    return problems
