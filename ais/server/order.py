"""Install order of packages: a topological order by Requires (rpm orders again).

What it does: `install_order(packages)` lists packages so that each comes
after the packages (of the same list) that provide what it requires
(graphlib.TopologicalSorter); packages that become free together go in
alphabetical order, so the order is deterministic. Requires met by packages
outside the list (already on the image) are ignored. A dependency cycle is
broken at its alphabetically first member, and noted in the returned list.

Reads: `ais.model.Package` records (requires/provides strings such as
"libc", "/bin/sh", "libssl >= 3"). Fails on nothing. Returns
(ordered packages, names of packages whose order a cycle decided).

>>> from ais.model import Package
>>> def pkg(n, req=()):
...     return Package(n, 0, "1", "1", "x86_64", n, 0, 0, 0, 0, "", tuple(req), (n,))
>>> [p.name for p in install_order([pkg("app", ["lib"]), pkg("lib", ["fs"]), pkg("fs")])[0]]
['fs', 'lib', 'app']
"""

from __future__ import annotations

import graphlib

from ais.model import Package


def _capability(text: str) -> str:
    return text.split()[0] if text.split() else text


def install_order(packages: list[Package] | tuple[Package, ...]) -> tuple[list[Package], list[str]]:
    by_name = {p.name: p for p in packages}
    provider: dict[str, str] = {}
    for pkg in sorted(packages):
        for cap in (pkg.name, *map(_capability, pkg.provides)):
            provider.setdefault(cap, pkg.name)
    needs: dict[str, set[str]] = {name: set() for name in by_name}
    for pkg in packages:
        for req in pkg.requires:
            dep = provider.get(_capability(req))
            if dep is not None and dep != pkg.name:
                needs[pkg.name].add(dep)
    sorter, cycles = _acyclic_sorter(needs)
    order: list[str] = []
    while sorter.is_active():
        for name in sorted(sorter.get_ready()):  # deterministic: alphabetical among the ready
            order.append(name)
            sorter.done(name)
    return [by_name[n] for n in order], cycles


def _acyclic_sorter(needs: dict[str, set[str]]) -> tuple[graphlib.TopologicalSorter, list[str]]:
    """A prepared sorter over needs; each cycle is broken at its alphabetically first member
    (its requirements inside the cycle are dropped), and those members are returned."""
    cycles: list[str] = []
    while True:
        sorter = graphlib.TopologicalSorter(needs)
        try:
            sorter.prepare()
            return sorter, cycles
        except graphlib.CycleError as err:
            members = err.args[1][:-1]  # [a, b, ..., a]
            first = min(members)
            cycles.append(first)
            needs[first] -= set(members)
