"""The server trusts only a manifest signed by the site key: refused at start, the last good one kept
on a reload; the snapshot carries the key that signs plans; `ais cache status` says who signed."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from ais import sitekey
from ais.cache import manifest as manifests
from ais.cache.status import published_status, render
from ais.cache.store import Store
from ais.errors import BuildError
from ais.server.state import StateHolder


@pytest.fixture()
def cache(base_cache, tmp_path) -> Path:
    """A private copy of the published (unsigned) base cache's manifest: what the server reads."""
    root = tmp_path / "cache"
    root.mkdir()
    shutil.copy(base_cache / "manifest.json", root / "manifest.json")
    return root


def rewrite(cache: Path, edit) -> None:
    """Replace manifest.json by a new file (a new inode: the server notices) with edit applied."""
    manifest = json.loads((cache / "manifest.json").read_text())
    edit(manifest)
    (cache / "manifest.json.new").write_text(json.dumps(manifest, indent=1, sort_keys=True))
    os.replace(cache / "manifest.json.new", cache / "manifest.json")


def holder(site_dir, repo_dir, cache) -> StateHolder:
    return StateHolder(site_dir, repo_dir, cache, poll_seconds=3600)


def test_without_a_site_key_an_unsigned_manifest_serves(small_site_dir, repo_dir, cache):
    snap = holder(small_site_dir, repo_dir, cache).current()
    assert snap.generation >= 1 and snap.site_key is None


def test_an_unsigned_manifest_is_refused_at_start_when_the_site_has_a_key(small_site_dir, repo_dir, cache):
    sitekey.init(cache)
    with pytest.raises(BuildError, match="is not signed.*run `ais rebuild`"):
        holder(small_site_dir, repo_dir, cache)


def test_publish_signs_and_the_server_takes_it_with_its_key(small_site_dir, repo_dir, cache):
    public, _ = sitekey.init(cache)
    manifests.publish(Store(cache), manifests.read(Store(cache)))
    assert json.loads((cache / "manifest.json").read_text())["signature"]["key"] == public
    snap = holder(small_site_dir, repo_dir, cache).current()
    assert sitekey.public_hex(snap.site_key) == public


def test_a_changed_header_hash_is_refused_and_the_last_good_manifest_keeps_serving(small_site_dir, repo_dir,
                                                                                     cache, caplog):
    sitekey.init(cache)
    store = Store(cache)
    manifests.publish(store, manifests.read(store))
    state = holder(small_site_dir, repo_dir, cache)
    good = state.current().manifest
    iid = next(iter(good["images"]))
    rewrite(cache, lambda m: m["images"][iid].update(header_sha256="0" * 64))
    assert state.current().manifest == good
    assert "reload failed" in caplog.text and "does not match its content" in caplog.text


def test_a_manifest_signed_by_a_rotated_away_key_is_refused(small_site_dir, repo_dir, cache):
    sitekey.init(cache)
    store = Store(cache)
    manifests.publish(store, manifests.read(store))
    sitekey.init(cache, rotate=True)
    with pytest.raises(BuildError, match="not by the site key"):
        holder(small_site_dir, repo_dir, cache)
    manifests.publish(store, manifests.read(store))  # what `ais rebuild` does: a new generation, re-signed
    holder(small_site_dir, repo_dir, cache)


def test_cache_status_says_who_signed(cache):
    store = Store(cache)
    unsigned = published_status(store, manifests.read(store), 1 << 40)["signature"]
    assert unsigned == {"signed": False, "key": None, "site_key": None, "ok": True, "problem": None}
    public, _ = sitekey.init(cache)
    refused = published_status(store, manifests.read(store), 1 << 40)["signature"]
    assert refused["ok"] is False and "is not signed" in refused["problem"]
    manifests.publish(store, manifests.read(store))
    data = published_status(store, manifests.read(store), 1 << 40)
    assert data["signature"] == {"signed": True, "key": public, "site_key": public, "ok": True, "problem": None}
    data["rebuild_would"] = {"build": [], "remove": []}
    assert f"signature: signed by the site key {public}" in render(data)
