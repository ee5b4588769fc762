"""The house: imports follow the flow, descriptors -> configurations -> plan -> cache -> disk.

Reads every module of ais/ with ast and fails on any import arrow that must never
exist (docs/architecture.md draws the rooms and these arrows). The lab (aislab/),
the tests and the benchmarks are never imported by the product.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Shared foundation: every room may use these; they use no room.
COMMON = {"errors", "run", "files", "sizes", "faults", "model", "contracts", "cost", "rpmenv", "progress",
          "sitekey", "rpmkey", "siteca"}
# room -> rooms it must never import (at module level or inside a function)
NEVER = {
    "repo": {"descriptors", "planner", "cache", "stream", "server", "client", "calibrate", "updates", "agent", "console"},
    "descriptors": {"planner", "cache", "stream", "server", "client", "calibrate", "updates", "agent", "console"},
    "planner": {"cache", "stream", "server", "client", "calibrate", "agent", "console"},
    "stream": {"repo", "descriptors", "planner", "cache", "server", "client", "calibrate", "bootenv", "updates", "agent", "console"},
    "cache": {"server", "client", "calibrate", "console"},
    "server": {"planner", "client", "calibrate"},
    "client": {"repo", "descriptors", "planner", "cache", "server", "calibrate", "bootenv", "updates", "agent", "console"},
    "calibrate": {"server", "updates", "agent", "console"},
    "bootenv": {"repo", "descriptors", "planner", "cache", "stream", "server", "client", "calibrate", "updates", "agent", "console"},
    # updates: the records, signatures and global store every update party shares; only its
    # admin commands read the descriptors
    "updates": {"repo", "planner", "cache", "stream", "server", "client", "calibrate", "bootenv", "agent", "console"},
    # the agent runs on an installed host: it knows updates and rpm, nothing of the server's side
    "agent": {"repo", "descriptors", "planner", "cache", "stream", "server", "client", "calibrate", "bootenv", "console"},
    # the console reads what the others wrote (manifest, descriptors, history); the server serves it
    "console": {"repo", "planner", "stream", "server", "client", "calibrate", "bootenv", "agent"},
}
ROOMS = set(NEVER)
OUTSIDE = ("aislab", "tests", "bench", "scripts")


def room_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "ais" and len(parts) > 1 else None


def imports_of(path: Path) -> set[str]:
    """Every module an `import` or `from ... import` names, anywhere in the file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def forbidden_arrows() -> list[str]:
    bad = []
    for path in sorted((ROOT / "ais").rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        here = room_of(module)
        for target in sorted(imports_of(path)):
            there = room_of(target)
            if target.split(".")[0] in OUTSIDE:
                bad.append(f"{module} -> {target} (the product never imports its lab, tests or benchmarks)")
            elif here in COMMON and there is not None and there not in COMMON:
                bad.append(f"{module} -> {target} (shared modules use no room)")
            elif there in NEVER.get(here, ()):
                bad.append(f"{module} -> {target} ({here} must never import {there})")
    return bad


def test_no_import_arrow_that_must_never_exist():
    assert forbidden_arrows() == []


def test_every_room_is_in_the_picture():
    """A new folder or top-level module must be placed here and in docs/architecture.md."""
    rooms = {p.name for p in (ROOT / "ais").iterdir() if (p / "__init__.py").exists()}
    modules = {p.stem for p in (ROOT / "ais").glob("*.py")} - {"__init__", "cli"}
    assert rooms - ROOMS == set() and modules - COMMON == set()


def test_the_product_carries_no_lab():
    assert sorted(str(p.relative_to(ROOT)) for p in (ROOT / "ais").rglob("*lab*.py")) == []


def test_the_rule_catches_a_forbidden_arrow(tmp_path, monkeypatch):
    """The checker itself: a planner module importing the client is reported."""
    fake = tmp_path / "ais" / "planner"
    fake.mkdir(parents=True)
    (fake / "x.py").write_text("def f():\n    from ais.client import disk\n")
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    assert forbidden_arrows() == ["ais.planner.x -> ais.client (planner must never import client)"]
