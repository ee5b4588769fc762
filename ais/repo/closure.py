"""Dependency closure of package sets: which subsets rpm can install on their own.

An image is installed by one rpm transaction, so its package set must satisfy
its own Requires. An intersection of two configurations need not (web-1 and
web-2 share httpd but not the libssl it needs), so the planner shrinks every
candidate to its largest closed subset: drop what lacks a provider, repeat.
Dropping keeps the candidate a subset of each configuration it could serve.

Reads: `Package` records (requires/provides, file provides included by
`ais.repo.headers`). Fails on nothing: a requirement that no package of the
universe provides is ignored here (resolution already reported it).
Returns frozensets of NEVRAs.

>>> idx = DependencyIndex([])
>>> idx.largest_closed_subset(frozenset())
frozenset()
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable

from ais.model import Package
from ais.repo.headers import Dep, satisfies


class DependencyIndex:
    """Requirements of each package as sets of providers within a universe of packages."""

    def __init__(self, universe: Iterable[Package]):
        packages = {p.nevra: p for p in universe}
        provided: dict[str, list[tuple[Dep, str]]] = defaultdict(list)
        for pkg in packages.values():
            provided[pkg.name].append((Dep(pkg.name, "=", f"{pkg.epoch}:{pkg.version}-{pkg.release}"), pkg.nevra))
            for text in pkg.provides:
                dep = Dep.parse(text)
                provided[dep.name].append((dep, pkg.nevra))
        self.needs: dict[str, list[frozenset[str]]] = {}
        self.needed_by: dict[str, set[str]] = defaultdict(set)
        for pkg in packages.values():
            alternatives = []
            for text in pkg.requires:
                want = Dep.parse(text)
                providers = frozenset(n for dep, n in provided.get(want.name, ()) if satisfies(dep, want))
                if providers and pkg.nevra not in providers:
                    alternatives.append(providers)
                    for provider in providers:
                        self.needed_by[provider].add(pkg.nevra)
            self.needs[pkg.nevra] = alternatives

    def largest_closed_subset(self, nevras: frozenset[str]) -> frozenset[str]:
        """The largest subset of nevras whose every requirement is met inside it."""
        keep = set(nevras)
        queue = list(keep)
        while queue:
            nevra = queue.pop()
            if nevra in keep and not self._met(nevra, keep):
                keep.discard(nevra)
                queue.extend(n for n in self.needed_by.get(nevra, ()) if n in keep)
        return frozenset(keep)

    def is_closed(self, nevras: frozenset[str]) -> bool:
        return all(self._met(n, nevras) for n in nevras)

    def _met(self, nevra: str, present) -> bool:
        return all(not alternatives.isdisjoint(present) for alternatives in self.needs.get(nevra, ()))
