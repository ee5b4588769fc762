"""ais.updates.changes: a changed on-change="update" SCD as update operations, recorded once."""

from dataclasses import dataclass

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ais.cost import CostModel
from ais.updates.changes import (configuration_nevras, configuration_updates, delta_ops, explain_change, host_groups,
                                 published_manifest, record, update_seconds)
from ais.updates.store import UpdateStore


@dataclass(frozen=True)
class Pkg:
    name: str
    version: str
    size: int = 100
    installed_size: int = 1000
    file_count: int = 3
    scriptlets: int = 1

    @property
    def nevra(self):
        return f"{self.name}-0:{self.version}-1.x86_64"

    @property
    def filename(self):
        return f"RPMS/x86_64/{self.name}-{self.version}-1.x86_64.rpm"

    @property
    def digest(self):
        return (self.name + self.version).encode().hex().ljust(64, "0")[:64]


@dataclass(frozen=True)
class Conf:
    name: str
    nevras: frozenset
    on_change: str = "update"


@dataclass(frozen=True)
class Site:
    configurations: tuple
    packages: tuple

    def configuration(self, name):
        return next(c for c in self.configurations if c.name == name)


@dataclass(frozen=True)
class Host:
    groups: tuple
    scd: str


A1, A2, B1, C1 = Pkg("a", "1"), Pkg("a", "2"), Pkg("b", "1"), Pkg("c", "1")
PACKAGES = {p.nevra: p for p in (A1, A2, B1, C1)}
PUBLISHED = {"generation": 4, "images": {"img": {"packages": [A1.nevra]}},
             "configurations": {"web": {"image": "img", "remainder": [B1.nevra]},
                                "db": {"image": None, "remainder": [A1.nevra, B1.nevra]}}}


def site(*confs):
    return Site(confs, tuple(PACKAGES.values()))


def test_configuration_nevras_is_the_image_plus_the_remainder():
    assert configuration_nevras(PUBLISHED, "web") == {A1.nevra, B1.nevra}
    assert configuration_nevras(PUBLISHED, "db") == {A1.nevra, B1.nevra}
    assert configuration_nevras(PUBLISHED, "mail") is None


def test_delta_upgrades_installs_and_erases():
    ops = delta_ops(frozenset({A1.nevra, B1.nevra}), frozenset({A2.nevra, C1.nevra}), PACKAGES)
    assert [(op.action, op.name, op.nevra) for op in ops] == [
        ("install", "a", A2.nevra), ("install", "c", C1.nevra), ("erase", "b", None)]
    assert ops[0].file == "a-2-1.x86_64.rpm" and ops[0].size == 100 and ops[0].sha256 == A2.digest


@pytest.mark.parametrize("on_change, now, expect", [
    ("update", {A2.nevra, B1.nevra}, [("install", "a")]),  # a new version
    ("update", {A1.nevra}, [("erase", "b")]),  # a package dropped
    ("update", {A1.nevra, B1.nevra}, []),  # unchanged: no update
    ("reinstall", {A2.nevra, B1.nevra}, []),  # its hosts get it at the next reinstall
])
def test_configuration_updates(on_change, now, expect):
    planned = configuration_updates(PUBLISHED, site(Conf("web", frozenset(now), on_change)))
    assert [(op.action, op.name) for p in planned for op in p.ops] == expect
    assert all(p.group == "scd:web" for p in planned)


def test_a_configuration_never_published_gets_no_update():
    assert configuration_updates(PUBLISHED, site(Conf("mail", frozenset({C1.nevra})))) == []


def test_record_stores_each_planned_update_once(tmp_path):
    store, key = UpdateStore(tmp_path / "h.sqlite"), Ed25519PrivateKey.generate()
    planned = configuration_updates(PUBLISHED, site(Conf("web", frozenset({A2.nevra, B1.nevra}))))
    assert [u.seq for u in record(store, key, planned)] == [1]
    assert record(store, key, planned) == []  # a rebuild that runs again
    again = configuration_updates(PUBLISHED, site(Conf("web", frozenset({A2.nevra}))))  # another change
    assert [u.seq for u in record(store, key, again)] == [2]


def test_host_groups_add_the_scd_group():
    assert host_groups(Host(("all", "rack-a"), "web")) == ("all", "rack-a", "scd:web")


def test_update_seconds_is_one_transaction_plus_each_package():
    cost = CostModel()
    ops = delta_ops(frozenset({A1.nevra, B1.nevra}), frozenset({A2.nevra}), PACKAGES)
    expected = cost.transaction_s + cost.rpm_seconds(1000, 3, 1) + cost.rpm_per_package_s
    assert update_seconds(ops, PACKAGES, cost) == pytest.approx(expected)


def test_explain_change_names_both_ways(tmp_path):
    text = explain_change(PUBLISHED, site(Conf("web", frozenset({A2.nevra, B1.nevra}))), "web", CostModel(), 42.0)
    assert "since generation 4" in text and "a reinstall 42.0 s" in text and "updated in place" in text
    same = explain_change(PUBLISHED, site(Conf("web", frozenset({A1.nevra, B1.nevra}))), "web", CostModel(), 1.0)
    assert "nothing to update in place" in same
    assert published_manifest(tmp_path) == {}  # nothing published
