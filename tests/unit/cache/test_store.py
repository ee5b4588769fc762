"""Store, manifest, lock, sizes: the pieces of the cache that need no rpm."""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from ais.cache import manifest as manifests
from ais.cache.lock import locked
from ais.sizes import human, parse_size
from ais.cache.store import BUILDER_FORMAT, Store, image_id
from ais.errors import BuildError, LockBusy, UsageError
from ais.model import Package


def pkg(name, version="1.0", digest="d0"):
    return Package(name, 0, version, "1", "x86_64", f"RPMS/x86_64/{name}.rpm", 10, 20, 1, 0, digest)


def test_image_id_depends_on_set_not_order():
    a, b = pkg("a"), pkg("b")
    assert image_id([a, b]) == image_id([b, a])
    assert image_id([a]) != image_id([a, b])


def test_image_id_changes_with_digest_and_version():
    assert image_id([pkg("a", digest="d0")]) != image_id([pkg("a", digest="d1")])
    assert image_id([pkg("a", "1.0")]) != image_id([pkg("a", "1.1")])


def test_image_id_includes_builder_format(monkeypatch):
    before = image_id([pkg("a")])
    monkeypatch.setattr("ais.cache.store.BUILDER_FORMAT", BUILDER_FORMAT + 1)
    assert image_id([pkg("a")]) != before


def test_install_moves_from_tmp_and_replaces(tmp_path, small_image):
    store = Store(tmp_path / "cache")
    store.ensure()
    work = store.work_dir("x")
    shutil.copy(small_image, work / "f")
    store.install(work / "f", "abc")
    assert store.stored_ids() == {"abc"}
    first_torrent = store.torrent_path("abc").read_bytes()
    with open(work / "g", "wb") as f:  # another file of the same id: a repaired image
        f.write(small_image.read_bytes())
        f.write(b"tail")
    store.install(work / "g", "abc")
    assert store.image_path("abc").read_bytes() == small_image.read_bytes() + b"tail"
    assert store.torrent_path("abc").read_bytes() != first_torrent  # made again, with a new salt
    assert not list(store.tmp.glob("*.torrent*"))
    assert store.remove(["abc", "missing"]) == small_image.stat().st_size + 4
    assert store.stored_ids() == set() and not store.torrent_path("abc").exists()


def test_install_gives_the_image_its_torrent_and_ensure_adds_a_missing_one(tmp_path, small_image):
    from ais.stream.format import read_header
    from ais.stream.torrent import torrent_info

    store = Store(tmp_path / "cache")
    store.ensure()
    work = store.work_dir("x")
    shutil.copy(small_image, work / "f")
    store.install(work / "f", "abc")
    header = read_header(store.image_path("abc"))
    assert torrent_info(store.torrent_path("abc").read_bytes(), header).num_pieces() == len(header.chunks)
    assert store.ensure_torrent("abc") is False  # has one: left alone
    store.torrent_path("abc").unlink()  # a cache from before torrents
    assert store.ensure_torrent("abc") is True
    assert torrent_info(store.torrent_path("abc").read_bytes(), header).num_pieces() == len(header.chunks)
    assert store.ensure_torrent("missing") is False


def test_clean_tmp_removes_everything(tmp_path):
    store = Store(tmp_path / "cache")
    store.ensure()
    (store.work_dir("a") / "root").mkdir()
    (store.tmp / "manifest.json.new").write_text("{}")
    assert store.clean_tmp() == 2
    assert list(store.tmp.iterdir()) == []


RECORD = {"key": "k0", "packages": ["a"], "file": "images/x.aisimg", "stored_bytes": 5, "fs_bytes": 4096,
          "chunks": 1, "header_sha256": "0" * 64}


def test_manifest_publish_replaces_atomically(tmp_path):
    store = Store(tmp_path / "cache")
    store.ensure()
    assert manifests.read(store) == manifests.empty()
    first = manifests.make(previous=manifests.empty(), plan_json=None, images={}, configurations={})
    manifests.publish(store, first)
    second = manifests.make(previous=first, plan_json=None, images={"x": RECORD},
                            configurations={"c": {"image": "x", "remainder": [], "predicted_seconds": 1.0}})
    manifests.publish(store, second)
    read = manifests.read(store)
    assert read["generation"] == 2
    assert manifests.known_sizes(read) == {frozenset(["a"]): 5}
    assert not (store.tmp / "manifest.json.new").exists()


BAD_MANIFESTS = [
    ("not JSON", "{not json", "not valid JSON"),
    ("other format", json.dumps({"format": 99}), r"\$\.format"),
    ("missing fields", json.dumps({"format": 1}), "missing required field"),
    ("nested deeply", "[" * 100_000 + "]" * 100_000, "manifest"),
    ("record without its hash", json.dumps({**manifests.empty(), "images": {"x": {**RECORD, "header_sha256": "zz"}}}),
     "header_sha256"),
    ("huge generation", json.dumps({**manifests.empty(), "generation": 2**70}), r"\$\.generation"),
    ("unknown field", json.dumps({**manifests.empty(), "colour": "red"}), "colour"),
]


@pytest.mark.parametrize("text, words", [c[1:] for c in BAD_MANIFESTS], ids=[c[0] for c in BAD_MANIFESTS])
def test_manifest_that_breaks_its_contract_is_an_error(tmp_path, text, words):
    store = Store(tmp_path)
    store.manifest_path.write_text(text)
    with pytest.raises(BuildError, match=words):
        manifests.read(store)


def test_publish_refuses_a_manifest_that_breaks_its_contract(tmp_path):
    store = Store(tmp_path / "cache")
    store.ensure()
    broken = manifests.make(previous=manifests.empty(), plan_json=None, images={"x": {"packages": ["a"]}},
                            configurations={})
    with pytest.raises(BuildError, match="breaks its contract"):
        manifests.publish(store, broken)
    assert not store.manifest_path.exists()


def test_lock_busy_names_holder_pid(tmp_path):
    lock = tmp_path / "lock"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from ais.cache.lock import locked
        with locked(Path({str(lock)!r})):
            print("held", flush=True)
            sys.stdin.read()
        """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LockBusy, match=f"pid {holder.pid}"):
            with locked(lock, wait=False):
                pass
    finally:
        holder.stdin.close()
        holder.wait()
    with locked(lock, wait=False):  # released when the holder exits
        assert lock.read_text().strip() == str(os.getpid())


def test_parse_size():
    assert parse_size("20G") == 20 << 30
    assert parse_size("500M") == 500 << 20
    assert parse_size("4096") == 4096
    assert parse_size("1.5k") == 1536
    assert parse_size("2GiB") == 2 << 30
    for bad in ("", "G", "-1G", "12X", "1 2"):
        with pytest.raises(UsageError):
            parse_size(bad)
    assert human(1536) == "1.5K" and human(900) == "900B"
