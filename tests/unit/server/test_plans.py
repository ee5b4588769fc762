"""Plans from a real published cache (base image built by the real builder): the planned
image, each reason to fall back, the choice among fallbacks, and the plan's JSON fields."""

import copy
import hashlib
import shutil
from pathlib import Path

import pytest

from ais.cache import manifest as manifests
from ais.cache.store import Store
from ais.cost import CostModel
from ais.server.images import ImageChecker
from ais.server.plans import Endpoints, choose_image, host_plan
from ais.server.state import make_snapshot

CHEAP_IMAGES = CostModel(image_fixed_s=0.1, stream_bytes_per_s=1e9, transaction_s=1.0)
ENDPOINTS = Endpoints("127.0.0.1:9999", "239.255.1.1:5000")


@pytest.fixture()
def cache(base_cache, tmp_path) -> Path:
    """A private copy of the base cache that a test may damage."""
    return Path(shutil.copytree(base_cache, tmp_path / "cache"))


def snapshot_of(site, cache, repo_dir, edit=None):
    manifest = manifests.read(Store(cache))
    if edit:
        manifest = copy.deepcopy(manifest)
        edit(manifest)
    return make_snapshot(site, manifest, cache, repo_dir)


def base_id(snapshot):
    return snapshot.manifest["configurations"]["mail"]["image"]


def test_planned_image_serves(small_site, cache, repo_dir):
    snap = snapshot_of(small_site, cache, repo_dir)
    host = snap.hosts["mail01"]
    plan = host_plan(snap, host, ImageChecker(), CostModel(), ENDPOINTS)
    base = {p.nevra for p in small_site.configuration("base").packages}
    assert plan["host"] == "mail01" and plan["scd"] == "mail" and plan["fallback"] is None
    assert plan["image"]["id"] == base_id(snap) and set(plan["image"]["packages"]) == base
    assert plan["image"]["stream"] == {"tcp": "127.0.0.1:9999", "multicast": "239.255.1.1:5000",
                                       "transport": "unicast", "transport_note": None}
    assert plan["image"]["header_sha256"] == snap.manifest["images"][base_id(snap)]["header_sha256"]
    names = [p["nevra"].split("-0:")[0] for p in plan["packages"]]
    assert names == ["postfix", "dovecot"]  # dovecot requires MTA, which postfix provides
    assert plan["configuration"] == sorted(small_site.configuration("mail").nevras)
    assert plan["predicted_seconds"]["source"] == "manifest"
    pkg = plan["packages"][0]
    assert pkg["url"] == f"/v1/packages/{pkg['filename']}"
    assert hashlib.sha256((repo_dir / "RPMS" / "x86_64" / pkg["filename"]).read_bytes()).hexdigest() == pkg["sha256"]
    key = next(f for f in plan["files"] if f["path"] == "/etc/ssl/private/site.key")
    assert key["mode"] == "0600" and key["owner"] == "root" and key["url"] == "/v1/hosts/mail01/files/2"


def test_missing_image_file_falls_back_to_packages_only(small_site, cache, repo_dir):
    snap = snapshot_of(small_site, cache, repo_dir)
    snap.image_path(base_id(snap)).unlink()
    choice = choose_image(snap, small_site.configuration("mail"), ImageChecker(), CHEAP_IMAGES)
    assert choice.image is None and "unreadable" in choice.fallback["reason"]
    assert choice.fallback["planned_image"] == base_id(snap)
    assert choice.fallback["chosen"] == "a packages-only install onto a fresh filesystem"


def test_flipped_byte_falls_back(small_site, cache, repo_dir):
    snap = snapshot_of(small_site, cache, repo_dir)
    path = snap.image_path(base_id(snap))
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF
    path.write_bytes(bytes(data))
    choice = choose_image(snap, small_site.configuration("db"), ImageChecker(), CHEAP_IMAGES)
    assert choice.image is None and "fails its check" in choice.fallback["reason"]


def test_unpublished_planned_image_falls_back_to_best_subset(small_site, cache, repo_dir):
    def plan_a_missing_image(m):
        m["configurations"]["mail"]["image"] = "f" * 64

    snap = snapshot_of(small_site, cache, repo_dir, plan_a_missing_image)
    choice = choose_image(snap, small_site.configuration("mail"), ImageChecker(), CHEAP_IMAGES)
    assert choice.image == snap.manifest["configurations"]["db"]["image"]  # the base image, a subset
    assert "no longer a subset" in choice.fallback["reason"] or "not in" in choice.fallback["reason"]
    # with images made expensive, packages-only is predicted faster and chosen
    slow = CostModel(image_fixed_s=1000.0)
    assert choose_image(snap, small_site.configuration("mail"), ImageChecker(), slow).image is None


def test_configuration_not_in_manifest(small_site, cache, repo_dir):
    snap = snapshot_of(small_site, cache, repo_dir, lambda m: m["configurations"].pop("db"))
    choice = choose_image(snap, small_site.configuration("db"), ImageChecker(), CHEAP_IMAGES)
    assert "not in the published manifest" in choice.fallback["reason"] and choice.image is not None


def test_image_no_longer_a_subset(small_site, cache, repo_dir):
    def add_foreign(m):
        m["images"][base_id_of(m)]["packages"].append("ghost-0:1-1.x86_64")

    def base_id_of(m):
        return m["configurations"]["mail"]["image"]

    snap = snapshot_of(small_site, cache, repo_dir, add_foreign)
    choice = choose_image(snap, small_site.configuration("mail"), ImageChecker(), CHEAP_IMAGES)
    assert choice.image is None and "no longer a subset" in choice.fallback["reason"]


def test_packages_only_by_plan_is_no_fallback(small_site, cache, repo_dir):
    def packages_only(m):
        m["configurations"]["db"] = {"image": None, "remainder": [], "predicted_seconds": 4.0}

    snap = snapshot_of(small_site, cache, repo_dir, packages_only)
    plan = host_plan(snap, snap.hosts["db01"], ImageChecker(), CostModel(), ENDPOINTS)
    assert plan["image"] is None and plan["fallback"] is None
    assert sorted(p["nevra"] for p in plan["packages"]) == plan["configuration"]
    assert plan["packages"][0]["nevra"].startswith("filesystem-")
    assert plan["predicted_seconds"]["total"] == 4.0


def test_empty_manifest(small_site, tmp_path, repo_dir):
    snap = make_snapshot(small_site, manifests.empty(), tmp_path, repo_dir)
    plan = host_plan(snap, snap.hosts["mail01"], ImageChecker(), CostModel(), ENDPOINTS)
    assert plan["image"] is None and "not in the published manifest" in plan["fallback"]["reason"]
    assert plan["generation"] == 0


def test_checker_remembers_per_file_version(small_site, cache, repo_dir):
    snap = snapshot_of(small_site, cache, repo_dir)
    checker = ImageChecker()
    header, why = checker.check(snap, base_id(snap))
    assert why is None and header.image_id == base_id(snap)
    assert checker.check(snap, base_id(snap))[0] is header  # remembered, not re-read
    snap.image_path(base_id(snap)).write_bytes(b"AISIMG\r\ngarbage")
    assert checker.check(snap, base_id(snap))[0] is None  # a new file version is checked again


ARMORED = "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmQGNBGk=\n-----END PGP PUBLIC KEY BLOCK-----\n"


@pytest.mark.parametrize("keys, field", [((), None), ((ARMORED,), [ARMORED])], ids=["unsigned site", "signed RPMs"])
def test_the_plan_carries_the_sites_rpm_key_only_when_it_has_one(small_site, cache, repo_dir, keys, field):
    """Omitted when empty: clients older than signed RPMs refuse a field they do not know."""
    manifest = manifests.read(Store(cache))
    snap = make_snapshot(small_site, manifest, cache, repo_dir, rpm_keys=keys)
    plan = host_plan(snap, snap.hosts["mail01"], ImageChecker(), CostModel(), ENDPOINTS)
    assert plan.get("rpm_keys") == field
