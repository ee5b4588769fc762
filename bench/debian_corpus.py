"""A real planner benchmark corpus from this machine's Debian package metadata.

What it does: reads the apt Packages indexes (lz4-compressed; read through
`/usr/lib/apt/apt-helper cat-file` via ais.run.run) of bookworm main and the
bookworm-security list, and builds configurations the way Debian machines are
really built: installation base = Priority required/important; a configuration
= base + a combination of tasksel tasks (a desktop or none, a subset of the
server/laptop/standard roles, a language or none; task packages bring their
Recommends, as tasksel installs them) closed under Depends and Pre-Depends
(networkx descendants); each combination at two patch levels (release, and
release plus the bookworm-security updates).
What it reads: /var/lib/apt/lists/*_Packages.lz4 (parsed by aislab.debsite.index, which the
real site's builder uses too).
What it fails on: missing lists or apt-helper: ToolError / FileNotFoundError.
What it returns: `Corpus` (plain dicts; `to_sets(n)` gives n configurations).

Facts the Packages index does not carry are estimated, and said so: file count
= installed KiB / 16 (Debian's median file is a few KiB), scriptlets = 1 when
a package depends on debconf, adduser or init-system-helpers (the packages that
ship maintainer scripts), else 0. Host weights are synthetic but seeded:
hosts ~ lognormal, reinstall rate 0.5-4 per period, current patch level 3x the
release one.
"""

from __future__ import annotations

import glob
import itertools
import pickle
import random
import re
from dataclasses import dataclass
from pathlib import Path

import networkx as nx

from aislab.debsite.index import read_index as _read_index

LISTS = "/var/lib/apt/lists"
FIELDS = ("Package", "Version", "Installed-Size", "Depends", "Pre-Depends", "Provides", "Priority", "Recommends")
DESKTOPS = ("", "gnome", "kde", "xfce", "lxde", "lxqt", "mate", "cinnamon", "gnome-flashback")
ROLES = ("web-server", "ssh-server", "laptop", "standard")
SCRIPTED = {"debconf", "adduser", "init-system-helpers"}


def read_index(path: str) -> list[dict[str, str]]:
    """Stanzas of one Packages file, keeping only FIELDS (the lab's parser, aislab.debsite.index)."""
    return _read_index(path, FIELDS)


def _alternatives(field: str) -> list[list[str]]:
    """'a (>= 1) | b, c:any' -> [['a', 'b'], ['c']]"""
    groups = []
    for part in field.split(","):
        names = [re.sub(r"[\s(\[<].*$", "", alt.strip()).split(":")[0] for alt in part.split("|")]
        names = [n for n in names if n]
        if names:
            groups.append(names)
    return groups


@dataclass
class Corpus:
    """Packages (name -> facts), two version maps, tasks and the dependency graph."""

    packages: dict[str, dict]
    security: dict[str, str]  # name -> newer version from the bookworm-security list
    graph: nx.DiGraph  # name -> chosen dependency names
    base_roots: list[str]
    standard: list[str]

    def closure(self, roots) -> frozenset[str]:
        names = set()
        for r in roots:
            if r in self.graph:
                names.add(r)
                names |= nx.descendants(self.graph, r)
        return frozenset(names)

    def key(self, name: str, patched: bool) -> str:
        version = self.security.get(name) if patched else None
        version = version or self.packages[name]["Version"]
        return f"{name}-{version}.amd64"

    def combinations(self) -> list[tuple[str, tuple[str, ...], str]]:
        languages = sorted(
            n[5:] for n in self.packages
            if n.startswith("task-") and not n.endswith("desktop") and n[5:] not in ROLES and n != "task-spooler"
        )
        combos = []
        for desktop, k, lang in itertools.product(DESKTOPS, range(len(ROLES) + 1), ["", *languages]):
            for roles in itertools.combinations(ROLES, k):
                if desktop or roles or lang:
                    combos.append((desktop, roles, lang))
        return sorted(set(combos))

    def roots_of(self, desktop: str, roles: tuple[str, ...], lang: str) -> list[str]:
        tasks = []
        if desktop:
            tasks.append(f"task-{desktop}-desktop")
            if lang and f"task-{lang}-desktop" in self.packages:
                tasks.append(f"task-{lang}-desktop")
        if lang:
            tasks.append(f"task-{lang}")
        roots = list(self.base_roots)
        for role in roles:
            if role == "standard":
                roots += self.standard
            else:
                tasks.append(f"task-{role}")
        for task in tasks:
            roots.append(task)
            roots += [g[0] for g in _alternatives(self.packages[task].get("Recommends", "")) if g[0] in self.graph]
        return roots

    def to_sets(self, n: int, seed: int = 7):
        """n configurations (n/2 combinations x 2 patch levels) as plain sets.

        Returns (configs {name: frozenset(keys)}, weights, installed_bytes,
        facts {key: (installed_bytes, files, scriptlets)}, bases [frozenset]).
        """
        rng = random.Random(seed)
        combos = self.combinations()
        chosen = sorted(rng.sample(combos, min(len(combos), (n + 1) // 2)))
        configs, weights = {}, {}
        for desktop, roles, lang in chosen:
            names = self.closure(self.roots_of(desktop, roles, lang))
            label = "-".join(x for x in (desktop or "server", *roles, lang) if x)
            hosts = max(1, int(rng.lognormvariate(1.5, 1.0)))
            rate = rng.uniform(0.5, 4.0)
            for patched in (False, True):
                if len(configs) >= n:
                    break
                name = f"{label}@{'sec' if patched else 'rel'}"
                configs[name] = frozenset(self.key(p, patched) for p in names)
                weights[name] = round(hosts * rate * (3 if patched else 1), 3)
        facts = {}
        for patched in (False, True):
            for name, meta in self.packages.items():
                facts[self.key(name, patched)] = self.facts(name)
        used = set().union(*configs.values())
        facts = {k: v for k, v in facts.items() if k in used}
        base_names = self.closure(self.base_roots)
        bases = [frozenset(self.key(p, patched) for p in base_names) for patched in (False, True)]
        return configs, weights, facts, bases

    def facts(self, name: str) -> tuple[int, int, int]:
        meta = self.packages[name]
        kib = int(meta.get("Installed-Size", "0") or 0)
        deps = {alt for g in _alternatives(meta.get("Depends", "") + "," + meta.get("Pre-Depends", "")) for alt in g}
        return kib * 1024, max(1, kib // 16), 1 if deps & SCRIPTED else 0


def load_corpus(cache: str | Path | None = None) -> Corpus:
    """Parse the lists once; cache the result as a pickle when cache is given."""
    if cache and Path(cache).exists():
        return pickle.loads(Path(cache).read_bytes())
    main = _one(f"{LISTS}/*_debian_dists_bookworm_main_binary-*_Packages.lz4")
    sec = _one(f"{LISTS}/*bookworm-security_main_binary-*_Packages.lz4")
    packages = {}
    for entry in read_index(main):
        packages.setdefault(entry["Package"], entry)
    security = {}
    for entry in read_index(sec):
        if entry["Package"] in packages and entry["Version"] != packages[entry["Package"]]["Version"]:
            security[entry["Package"]] = entry["Version"]
    corpus = Corpus(
        packages=packages,
        security=security,
        graph=_dependency_graph(packages),
        base_roots=sorted(n for n, e in packages.items() if e.get("Priority") in ("required", "important")),
        standard=sorted(n for n, e in packages.items() if e.get("Priority") == "standard"),
    )
    if cache:
        Path(cache).parent.mkdir(parents=True, exist_ok=True)
        Path(cache).write_bytes(pickle.dumps(corpus))
    return corpus


def _one(pattern: str) -> str:
    found = sorted(glob.glob(pattern))
    if not found:
        raise FileNotFoundError(f"no Packages list matches {pattern}: run apt-get update")
    return found[0]


def _dependency_graph(packages: dict[str, dict]) -> nx.DiGraph:
    """Edges package -> the dependency it would pull (first satisfiable alternative)."""
    providers: dict[str, list[str]] = {}
    for name, entry in packages.items():
        for group in _alternatives(entry.get("Provides", "")):
            providers.setdefault(group[0], []).append(name)
    graph = nx.DiGraph()
    graph.add_nodes_from(packages)
    for name, entry in packages.items():
        for group in _alternatives(entry.get("Depends", "") + "," + entry.get("Pre-Depends", "")):
            for alt in group:
                target = alt if alt in packages else (sorted(providers[alt])[0] if alt in providers else None)
                if target:
                    if target != name:
                        graph.add_edge(name, target)
                    break
    return graph
