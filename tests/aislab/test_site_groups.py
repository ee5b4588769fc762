"""A subset of the demo descriptors carries only the groups its hosts name, so it validates."""

from __future__ import annotations

from pathlib import Path

from lxml import etree

from ais.descriptors import load_site
from aislab.site import subset_descriptors

DEMO = Path(__file__).resolve().parents[2] / "descriptors"


def declared(directory: Path) -> list[str]:
    return [g.get("name") for g in etree.parse(str(directory / "groups.xml")).getroot().iter("group")]


def test_subset_keeps_the_groups_its_hosts_name(tmp_path, repo_dir):
    dst = subset_descriptors(DEMO, tmp_path / "d", ["mail", "hpc"], ["mail01", "node01"])
    assert sorted(declared(dst)) == ["rack-a", "rack-b"]  # not office: no office host was copied
    site = load_site(dst, repo_dir)  # an empty office would be refused
    assert [(g.name, g.hosts) for g in site.groups] == [
        ("all", ("mail01", "node01")), ("rack-a", ("mail01",)), ("rack-b", ("node01",))]


def test_subset_without_hosts_has_no_groups_xml(tmp_path):
    dst = subset_descriptors(DEMO, tmp_path / "d", ["mail"], [])
    assert not (dst / "groups.xml").exists()
