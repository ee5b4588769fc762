"""Dependency closure of package sets: which subsets rpm can install on their own.

An image is installed by one rpm transaction, so its package set must satisfy
its own Requires. An intersection of two configurations need not (web-1 and
web-2 share httpd but not the libssl it needs), so the planner shrinks every
candidate to its largest closed subset: drop what lacks a provider, repeat.
Dropping keeps the candidate a subset of each configuration it could serve, and
a subset of an installable configuration has no conflict or obsoletes of its own,
so Requires are all that matters here.

Who provides what is libsolv's answer (`whatprovides` over a Pool made of the
`Package` records): versioned and ranged provides match as rpm matches them
(`Provides: foo < 1` does not meet `Requires: foo > 2`). A rich requirement
becomes a conjunction of "one of these providers" sets (`requirement_sets`):
exact for and, or, unless, with and without; for a condition (`a if b`,
`a unless b else c`'s else branch) it demands `a` whenever `b` can hold at all,
which may drop a package rpm would keep but never keeps one rpm would refuse.
The planner calls `largest_closed_subset` (as bitmasks, `ais.planner.problem`)
for thousands of candidates, so the sets are computed once here and the
closure itself is a plain fixed point.

Reads: `Package` records (requires/provides, file provides included by
`ais.repo.solver`). Fails on nothing: a requirement that no package of the
universe provides is ignored here (resolution already reported it).
Returns frozensets of NEVRAs.

>>> idx = DependencyIndex([])
>>> idx.largest_closed_subset(frozenset())
frozenset()
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Iterable

import solv

from ais.model import Package

_FLAGS = {"<": solv.REL_LT, "<=": solv.REL_LT | solv.REL_EQ, "=": solv.REL_EQ,
          "==": solv.REL_EQ, ">=": solv.REL_GT | solv.REL_EQ, ">": solv.REL_GT}
_TOKEN = re.compile(r"\(|\)|[^\s()]+")
_BOOLEAN = {"and", "or", "if", "else", "unless", "with", "without"}


class DependencyIndex:
    """Requirements of each package as sets of providers within a universe of packages."""

    def __init__(self, universe: Iterable[Package]):
        packages = {p.nevra: p for p in universe}
        self.pool = solv.Pool()
        repo = self.pool.add_repo("universe")
        nevra_of = {}
        for pkg in packages.values():
            nevra_of[self._add(repo, pkg)] = pkg.nevra
        repo.internalize()
        self.pool.createwhatprovides()
        self._nevra_of = nevra_of
        self.needs: dict[str, list[frozenset[str]]] = {}
        self.needed_by: dict[str, set[str]] = defaultdict(set)
        for pkg in packages.values():
            alternatives = []
            for text in pkg.requires:
                for providers in self.requirement_sets(text):
                    if providers and pkg.nevra not in providers and providers not in alternatives:
                        alternatives.append(providers)
            for providers in alternatives:
                for provider in providers:
                    self.needed_by[provider].add(pkg.nevra)
            self.needs[pkg.nevra] = alternatives

    def _add(self, repo, pkg: Package) -> int:
        s = repo.add_solvable()
        s.name, s.arch = pkg.name, pkg.arch
        s.evr = f"{pkg.epoch}:{pkg.version}-{pkg.release}" if pkg.epoch else f"{pkg.version}-{pkg.release}"
        s.add_provides(self.pool.Dep(pkg.name).Rel(solv.REL_EQ, self.pool.Dep(s.evr)))
        for text in pkg.provides:
            s.add_provides(self.dep(text))
        return s.id

    def dep(self, text: str):
        """A libsolv Dep of a dependency as rpm writes it: 'name', 'name >= evr' or '(rich)'."""
        if text.startswith("("):
            return self.pool.parserpmrichdep(text) or self.pool.Dep(text)
        parts = text.split()
        if len(parts) == 3 and parts[1] in _FLAGS:
            return self.pool.Dep(parts[0]).Rel(_FLAGS[parts[1]], self.pool.Dep(parts[2]))
        return self.pool.Dep(text)

    def providers(self, text: str) -> frozenset[str]:
        """NEVRAs of the universe that provide a (simple, with or without) dependency."""
        return frozenset(self._nevra_of[s.id] for s in self.pool.whatprovides(self.dep(text)))

    def requirement_sets(self, text: str) -> list[frozenset[str]]:
        """One requirement as sets of providers, each of which the package needs one of."""
        if not text.startswith("("):
            return [self.providers(text)]
        try:
            node, _ = _parse(_TOKEN.findall(text), 0)
        except (IndexError, ValueError):  # not rpm's rich syntax: libsolv's reading of it, as one set
            return [self.providers(text)]
        return [frozenset(c) for c in self._clauses(node)]

    def _clauses(self, node) -> list[frozenset[str]]:
        """Conjunctive normal form of a rich requirement, positive literals only (see module doc)."""
        if isinstance(node, str):
            return [self.providers(node)]
        op, parts = node
        if op in ("with", "without"):
            return [self.providers(_text(node))]
        if op == "and":
            return [c for part in parts for c in self._clauses(part)]
        if op == "or":
            return _or_clauses([self._clauses(part) for part in parts])
        then, cond = self._clauses(parts[0]), self._clauses(parts[1])
        otherwise = self._clauses(parts[2]) if len(parts) > 2 else None
        if op == "if":  # then ∨ ¬cond, and with else: (cond ∨ otherwise)
            out = then if all(cond) else []  # a condition nothing can meet is never true
            return out + (_or_clauses([cond, otherwise]) if otherwise is not None else [])
        # unless: then ∨ cond, and with else: (otherwise ∨ ¬cond)
        out = _or_clauses([then, cond])
        return out + (otherwise if otherwise is not None and all(cond) else [])

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


def _or_clauses(alternatives: list[list[frozenset[str]]]) -> list[frozenset[str]]:
    """CNF of a disjunction of CNFs (distribute); an always-true part makes it true."""
    result: list[frozenset[str]] = [frozenset()]
    for clauses in alternatives:
        if not clauses:
            return []
        result = [a | c for a in result for c in clauses]
    return result


def _parse(tokens: list[str], i: int):
    """Parse '( x op y [op z] )' from tokens[i]; return (node, next index).

    A node is a simple dependency text or (operator, [operands]); 'a if b else c'
    is ('if', [a, b, c]).
    """
    if tokens[i] != "(":
        raise ValueError(f"expected '(' at {tokens[i]!r}")
    i += 1
    parts, ops, words = [], [], []
    while tokens[i] != ")":
        if tokens[i] == "(":
            node, i = _parse(tokens, i)
            parts.append(node)
        elif tokens[i] in _BOOLEAN:
            if words:
                parts.append(" ".join(words))
                words = []
            ops.append(tokens[i])
            i += 1
        else:
            words.append(tokens[i])
            i += 1
    if words:
        parts.append(" ".join(words))
    if not ops:
        return parts[0], i + 1
    op = ops[0]
    return (op, parts), i + 1


def _text(node) -> str:
    if isinstance(node, str):
        return node
    op, parts = node
    if op in ("if", "unless") and len(parts) == 3:
        return f"({_text(parts[0])} {op} {_text(parts[1])} else {_text(parts[2])})"
    return "(" + f" {op} ".join(_text(p) for p in parts) + ")"
