"""Install order of packages: a topological order by Requires (rpm orders again).

What it does: `install_order(packages)` lists packages so that each comes
after the packages (of the same list) that provide what it requires; among
packages free to go, the alphabetically first goes first, so the order is
deterministic. Requires met by packages outside the list (already on the
image) are ignored. A dependency cycle is broken at its alphabetically first
package, as rpm does it, and noted in the returned list of cycle members.

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

import heapq

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
    users: dict[str, set[str]] = {name: set() for name in by_name}
    for name, deps in needs.items():
        for dep in deps:
            users[dep].add(name)
    ready = [name for name, deps in needs.items() if not deps]
    heapq.heapify(ready)
    order: list[str] = []
    cycles: list[str] = []
    while len(order) < len(by_name):
        if not ready:  # a cycle: break it at the alphabetically first waiting package
            name = min(n for n in needs if n not in order and needs[n])
            cycles.append(name)
            needs[name].clear()
            heapq.heappush(ready, name)
        name = heapq.heappop(ready)
        order.append(name)
        for user in sorted(users[name]):
            needs[user].discard(name)
            if not needs[user] and user not in order and user not in ready:
                heapq.heappush(ready, user)
    return [by_name[n] for n in order], cycles
