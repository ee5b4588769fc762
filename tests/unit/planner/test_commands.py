import json

import pytest

import ais.descriptors
from ais.cli import main
from ais.model import Configuration, Host, Package, Site
from ais.planner import plan as plan_module
from ais.planner.plan import Plan


def pkg(name, size=100_000_000):
    return Package(name, 0, "1.0", "1", "x86_64", f"RPMS/{name}.rpm", size, size * 3, 40, 1, "d" * 64)


def conf(name, names, kind="system"):
    return Configuration(name, "base", kind, tuple(sorted(pkg(n) for n in names)), f"scd/{name}.xml")


def host(name, scd, reinstalls=1.0):
    return Host(name, ("52:54:00:00:00:01",), scd, reinstalls, (), None, f"hcd/{name}.xml")


SITE = Site(
    (conf("base", ["glibc", "bash"], "base"), conf("web-3", ["glibc", "bash", "httpd", "php"]),
     conf("web-4", ["glibc", "bash", "httpd", "perl"]), conf("db-1", ["glibc", "bash", "postgres"])),
    (host("w1", "web-3", 2.0), host("w2", "web-4"), host("d1", "db-1")),
    (),
)


@pytest.fixture
def site(monkeypatch):
    monkeypatch.setattr(ais.descriptors, "load_site", lambda descriptors, repo: SITE)
    return SITE


def test_plan_prints_a_table_and_writes_json(site, tmp_path, capsys):
    out = tmp_path / "plan.json"
    assert main(["plan", "--budget", "3G", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "images" in text and "baselines on the same costs" in text and "web-3" in text
    plan = Plan.from_json(out.read_text())
    assert plan.budget_bytes == 3 * 2**30
    assert set(plan.serve) == {"base", "web-3", "web-4", "db-1"}


def test_plan_json_to_stdout(site, tmp_path, capsys):
    assert main(["plan", "--budget", "500M", "--json", "--out", str(tmp_path / "p.json")]) == 0
    assert json.loads(capsys.readouterr().out)["budget_bytes"] == 500 * 2**20


def test_explain_says_why(site, tmp_path, capsys):
    assert main(["plan", "--budget", "3G", "--explain", "web-3", "--out", str(tmp_path / "p.json")]) == 0
    assert "why web-3 is served this way" in capsys.readouterr().out


def test_explain_unknown_configuration_is_exit_2(site, tmp_path, capsys):
    assert main(["plan", "--budget", "3G", "--explain", "nope", "--out", str(tmp_path / "p.json")]) == 2
    assert "no such configuration" in capsys.readouterr().err


def test_bad_budget_is_exit_2(site, capsys):
    assert main(["plan", "--budget", "lots"]) == 2


def test_hosts_pointing_to_nothing_is_exit_2(monkeypatch, tmp_path, capsys):
    broken = Site(SITE.configurations, (host("x", "mail-9"),), ())
    monkeypatch.setattr(ais.descriptors, "load_site", lambda descriptors, repo: broken)
    assert main(["plan", "--budget", "3G", "--out", str(tmp_path / "p.json")]) == 2
    assert "mail-9" in capsys.readouterr().err


def test_solver_timing_out_still_gives_a_plan(site, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(plan_module, "MIN_SOLVER_SECONDS", 1e-9)
    assert main(["plan", "--budget", "3G", "--time-limit", "0.000001", "--out", str(tmp_path / "p.json")]) == 0
    plan = Plan.from_json((tmp_path / "p.json").read_text())
    assert plan.bound <= plan.objective
    assert plan.objective <= plan.baselines["greedy"]["objective"] + 1e-6
