"""Closed subsets on hand-drawn package sets and on the real demo configurations."""

from __future__ import annotations

from pathlib import Path

import pytest

from ais.descriptors import load_site
from ais.model import Package
from ais.repo.closure import DependencyIndex

DEMO = Path(__file__).resolve().parents[3] / "descriptors"


def pkg(name: str, version: str = "1", requires=(), provides=()) -> Package:
    return Package(name, 0, version, "1", "x86_64", f"{name}.rpm", 1, 1, 1, 0, "0" * 64,
                   tuple(requires), tuple(provides))


def nevra(name: str, version: str = "1") -> str:
    return f"{name}-0:{version}-1.x86_64"


def test_drops_transitively_what_lacks_a_provider():
    universe = [pkg("sh", provides=("/bin/sh",)), pkg("ssl", "1"), pkg("ssl", "2"),
                pkg("httpd", requires=("ssl", "/bin/sh")), pkg("mod", requires=("httpd",)),
                pkg("php", requires=("webserver",)), pkg("nginx", provides=("webserver",))]
    idx = DependencyIndex(universe)
    shared = frozenset({nevra("sh"), nevra("httpd"), nevra("mod")})  # web-1 ∩ web-2: no ssl
    assert idx.largest_closed_subset(shared) == {nevra("sh")}
    with_ssl = shared | {nevra("ssl", "2")}
    assert idx.largest_closed_subset(with_ssl) == with_ssl
    assert idx.largest_closed_subset(frozenset({nevra("php")})) == frozenset()
    assert idx.is_closed(frozenset({nevra("php"), nevra("nginx")}))


def test_versioned_requirement_respected():
    universe = [pkg("lib", "1"), pkg("lib", "2"), pkg("app", requires=("lib >= 0:2",))]
    idx = DependencyIndex(universe)
    assert idx.largest_closed_subset(frozenset({nevra("app"), nevra("lib", "1")})) == {nevra("lib", "1")}


def test_demo_configurations_are_closed_and_their_intersections_shrink(repo_dir):
    site = load_site(DEMO, repo_dir)
    idx = DependencyIndex(site.packages)
    for conf in site.configurations:
        assert idx.is_closed(conf.nevras), conf.name
    common = site.configuration("web-1").nevras & site.configuration("web-2").nevras
    closed = idx.largest_closed_subset(common)
    assert not idx.is_closed(common)
    assert idx.is_closed(closed) and closed < common
    assert not any(n.startswith(("httpd-0", "mod_ssl-0")) for n in closed)


def test_ranged_provide_does_not_meet_a_disjoint_range():
    universe = [pkg("oldfoo", "9", provides=("foo < 1",)), pkg("newfoo", provides=("foo = 3",)),
                pkg("wants", requires=("foo > 2",))]
    idx = DependencyIndex(universe)
    assert idx.largest_closed_subset(frozenset({nevra("wants"), nevra("oldfoo", "9")})) == {nevra("oldfoo", "9")}
    assert idx.is_closed(frozenset({nevra("wants"), nevra("newfoo")}))


@pytest.mark.parametrize("requirement, present, closed", [
    ("(aaa or bbb)", set(), False),
    ("(aaa or bbb)", {"bbb"}, True),
    ("(aaa and bbb)", {"aaa"}, False),
    ("(aaa and bbb)", {"aaa", "bbb"}, True),
    ("(ccc if ddd)", {"ddd"}, False),
    ("(ccc if ddd)", {"ddd", "ccc"}, True),
    ("(ccc if nothere)", set(), True),  # a condition no package meets never applies
    ("(aaa unless bbb)", {"bbb"}, True),
    ("(aaa unless bbb)", set(), False),
    ("(foo >= 1 with foo < 2)", {"foo2"}, False),  # foo2 provides foo = 2: not below 2
    ("(foo >= 1 with foo < 2)", {"foo1"}, True),
    ("(aaa or (bbb and ccc))", {"bbb"}, False),
    ("(aaa or (bbb and ccc))", {"bbb", "ccc"}, True),
])
def test_rich_requirement(requirement, present, closed):
    universe = [pkg(n) for n in ("aaa", "bbb", "ccc", "ddd")] + [
        pkg("foo1", provides=("foo = 1",)), pkg("foo2", provides=("foo = 2",)),
        pkg("rich", requires=(requirement,))]
    idx = DependencyIndex(universe)
    wanted = frozenset({nevra("rich")} | {nevra(n) for n in present})
    assert idx.is_closed(wanted) is closed
    assert idx.largest_closed_subset(wanted) == (wanted if closed else wanted - {nevra("rich")})
