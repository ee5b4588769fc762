"""Host groups (groups.xml, <group> in HCDs) and the SCD's on-change policy: parse, model, `ais show`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ais.cli import main
from ais.descriptors import load_site
from ais.descriptors.checks import check_groups
from ais.descriptors.parse import parse_descriptors
from ais.model import ALL_GROUP, ON_CHANGE, Configuration, Group, Host, Site

DEMO = Path(__file__).resolve().parents[3] / "descriptors"
RACK_A = ("db01", "db02", "mail01", "mon01", "web01", "web02", "web03", "web04", "web05")


@pytest.fixture(scope="module")
def site(repo_dir):
    return load_site(DEMO, repo_dir)


@pytest.fixture
def demo_copy(tmp_path: Path) -> Path:
    return Path(shutil.copytree(DEMO, tmp_path / "descriptors", symlinks=True))


def host(site: Site, name: str) -> Host:
    return next(h for h in site.hosts if h.name == name)


# ------------------------------------------------------------------ the demo site


def test_host_groups_are_sorted_and_include_all(site):
    assert host(site, "web01").groups == ("all", "rack-a")
    assert host(site, "node03").groups == ("all", "rack-b")
    assert host(site, "desk04").groups == ("all", "office")
    assert all(h.groups[0] == ALL_GROUP and list(h.groups) == sorted(h.groups) for h in site.hosts)


def test_site_groups_list_members_and_descriptions(site):
    assert [g.name for g in site.groups] == ["all", "office", "rack-a", "rack-b"]
    assert site.group("all").hosts == tuple(sorted(h.name for h in site.hosts))
    assert site.group("rack-a") == Group("rack-a", "Server room rack A: web front ends, mail, databases, monitoring.",
                                         RACK_A)
    for group in site.groups:  # membership agrees both ways
        assert group.hosts == tuple(sorted(h.name for h in site.hosts if group.name in h.groups))
    with pytest.raises(KeyError):
        site.group("rack-z")


def test_on_change_as_written_default_reinstall(site):
    on_change = {c.name: c.on_change for c in site.configurations}
    assert on_change["dev"] == on_change["desktop-1"] == on_change["desktop-2"] == "update"
    assert on_change["web-1"] == on_change["hpc"] == on_change["base"] == "reinstall"
    assert set(on_change.values()) <= set(ON_CHANGE)


# ------------------------------------------------------------------ variations on a copy


def test_on_change_is_not_inherited_through_extends(demo_copy, repo_dir):
    web1 = demo_copy / "scd" / "web-1.xml"
    web1.write_text(web1.read_text().replace('base="base"', 'base="base" on-change="update"'))
    loaded = load_site(demo_copy, repo_dir)
    assert loaded.configuration("web-1").on_change == "update"
    assert loaded.configuration("web-2").on_change == "reinstall"  # web-2 extends web-1, says nothing


def test_no_groups_xml_means_only_all(demo_copy, repo_dir):
    (demo_copy / "groups.xml").unlink()
    for hcd in (demo_copy / "hcd").glob("*.xml"):
        lines = hcd.read_text().splitlines(keepends=True)
        hcd.write_text("".join(line for line in lines if "<group>" not in line))
    loaded = load_site(demo_copy, repo_dir)
    assert [g.name for g in loaded.groups] == [ALL_GROUP]
    assert all(h.groups == (ALL_GROUP,) for h in loaded.hosts)


def test_naming_all_in_an_hcd_is_harmless(demo_copy, repo_dir):
    db01 = demo_copy / "hcd" / "db01.xml"
    db01.write_text(db01.read_text().replace("<group>rack-a</group>", "<group>all</group><group>rack-a</group>"))
    loaded = load_site(demo_copy, repo_dir)
    assert host(loaded, "db01").groups == ("all", "rack-a")
    assert loaded.group("all").hosts.count("db01") == 1


def test_a_host_in_two_groups(demo_copy, repo_dir):
    groups = demo_copy / "groups.xml"
    groups.write_text(groups.read_text().replace("</groups>", '  <group name="critical">Page at night.</group>\n</groups>'))
    for name in ("db01", "mail01"):
        hcd = demo_copy / "hcd" / f"{name}.xml"
        hcd.write_text(hcd.read_text().replace("</hcd>", "  <group>critical</group>\n</hcd>"))
    loaded = load_site(demo_copy, repo_dir)
    assert host(loaded, "db01").groups == ("all", "critical", "rack-a")
    assert loaded.group("critical").hosts == ("db01", "mail01")


# ------------------------------------------------------------------ the parser, without a repository


def test_parse_keeps_lines_and_normalises_descriptions(tmp_path):
    (tmp_path / "scd").mkdir()
    (tmp_path / "hcd").mkdir()
    (tmp_path / "scd" / "s.xml").write_text('<scd name="s" kind="base" on-change="update"/>\n')
    (tmp_path / "hcd" / "h.xml").write_text(
        '<hcd name="h" scd="s">\n  <group> r1 </group>\n  <mac>02:00:00:00:00:01</mac>\n  <group>r2</group>\n</hcd>\n')
    (tmp_path / "groups.xml").write_text(
        '<groups>\n  <group name="r1">first<!-- a comment -->\n    rack</group>\n  <group name="r2"/>\n</groups>\n')
    parsed = parse_descriptors(tmp_path)
    assert parsed.problems == []
    assert parsed.scds[0].on_change == "update"
    assert parsed.hcds[0].groups == (("r1", 2), ("r2", 4))
    assert [(g.name, g.description, g.line) for g in parsed.groups] == [("r1", "first rack", 2), ("r2", "", 4)]
    assert parsed.groups_file == str(tmp_path / "groups.xml") and not parsed.groups_refused
    assert check_groups(parsed) == []


def test_parse_without_groups_xml(tmp_path):
    (tmp_path / "scd").mkdir()
    parsed = parse_descriptors(tmp_path)
    assert parsed.groups == [] and parsed.groups_file is None and not parsed.groups_refused


# ------------------------------------------------------------------ the model's defaults


def test_defaults_keep_old_constructors_working():
    old_host = Host("h", ("02:00:00:00:00:01",), "s", 1.0, (), None, "hcd/h.xml")
    assert old_host.groups == (ALL_GROUP,)
    assert Configuration("s", "s", "base", (), "scd/s.xml").on_change == "reinstall"
    assert Site((), (old_host,), ()).groups == ()


# ------------------------------------------------------------------ ais show


def show(name: str, repo_dir, capsys, *extra: str) -> str:
    assert main(["show", name, "--descriptors", str(DEMO), "--repo", str(repo_dir), *extra]) == 0
    return capsys.readouterr().out


def test_show_host_gives_groups(repo_dir, capsys):
    assert json.loads(show("web01", repo_dir, capsys, "--json"))["host"]["groups"] == ["all", "rack-a"]
    assert "  groups all, rack-a\n" in show("web01", repo_dir, capsys)


def test_show_scd_gives_on_change(repo_dir, capsys):
    assert json.loads(show("dev", repo_dir, capsys, "--json"))["on_change"] == "update"
    assert "on change: reinstall" in show("web-1", repo_dir, capsys)


def test_validate_json_lists_groups(repo_dir, capsys):
    assert main(["validate", "--json", "--descriptors", str(DEMO), "--repo", str(repo_dir)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["groups"]["rack-a"] == list(RACK_A)
    assert summary["configurations"]["desktop-2"]["on_change"] == "update"
