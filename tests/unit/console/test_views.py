"""ais.console.views and render: each page's data from a real rebuilt cache and a real history database."""

import json

import pytest

from ais.cache import manifest as manifests
from ais.cache.store import Store
from ais.console.queries import HistoryReader
from ais.console.render import Sources, html, report_html, view
from ais.console.pages import Pages


@pytest.fixture
def sources(demo_cache, demo_site, history):
    return Sources(manifests.read(Store(demo_cache)), manifests.read_generations(demo_cache), demo_site,
                   HistoryReader(history))


def test_cache_view_adds_up_the_published_images(sources):
    v = view("cache", sources)
    published = sources.manifest["images"]
    assert {i["id"] for i in v["images"]} == set(published)
    assert v["used_bytes"] == sum(r["stored_bytes"] for r in published.values())
    assert v["budget_bytes"] == sources.manifest["plan"]["budget_bytes"]
    served = sorted(c for i in v["images"] for c in i["serves"]) + v["packages_only"]
    assert sorted(served) == sorted(sources.manifest["configurations"])
    assert [g["generation"] for g in v["generations"]] == [sources.manifest["generation"]]
    json.dumps(v)  # what the data endpoint sends


def test_plan_view_names_images_by_their_published_ids(sources):
    v = view("plan", sources)["plan"]
    assert {i["id"] for i in v["images"]} == set(sources.manifest["images"])
    for conf in v["configurations"]:
        assert conf["image"] == sources.manifest["configurations"][conf["name"]]["image"]
    assert v["objective"] == sources.manifest["plan"]["objective"]
    assert set(v["baselines"]) == {"packages_only", "image_per_configuration", "greedy"}


def test_hosts_view_joins_descriptors_and_history(sources):
    v = view("hosts", sources)
    rows = {h["name"]: h for h in v["hosts"]}
    assert set(rows) == {h.name for h in sources.site.hosts}
    assert rows["mail01"]["last_install"]["status"] == "ok" and rows["mail01"]["scd"] == "mail"
    assert rows["db01"]["last_install"]["status"] == "failed"
    assert rows["web01"]["last_install"] is None
    assert "all" in rows["mail01"]["groups"]
    assert v["counts"] == {"ok": 1, "up": 1, "failed": 1}
    assert [f["host"] for f in v["failures"]] == ["db01"]


def test_host_view_has_the_install_phases(sources):
    v = view("host", sources, "mail01")
    assert v["installs"][0]["status"] == "up"
    assert [p["name"] for p in v["installs"][0]["phases"]][:2] == ["plan", "image"]
    with pytest.raises(KeyError):
        view("host", sources, "nosuchhost")


def test_a_missing_history_reads_as_empty(demo_cache, demo_site, tmp_path):
    src = Sources(manifests.read(Store(demo_cache)), [], demo_site, HistoryReader(tmp_path / "none.sqlite"))
    assert all(h["last_install"] is None for h in view("hosts", src)["hosts"])
    assert not (tmp_path / "none.sqlite").exists()


def test_hostile_text_is_shown_as_text(sources):
    page = html(Pages(), "hosts", sources)
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; &#34;quoted&#34;" in page


@pytest.mark.parametrize("page", ["cache", "plan", "hosts", "live"])
def test_every_page_renders_with_its_charts(sources, page):
    text = html(Pages(), page, sources)
    assert text.startswith("<!doctype html>") and "<script" not in text
    if page in ("cache", "plan"):
        assert text.count("<svg") >= 2


def test_report_holds_cache_plan_and_hosts_with_no_script(sources):
    text = report_html(sources)
    assert "<script" not in text and "http-equiv" not in text
    for heading in ("<h1>Cache</h1>", "<h1>Plan</h1>", "<h1>Hosts</h1>"):
        assert heading in text
