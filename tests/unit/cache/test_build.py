"""Real image builds of the demo base set: rpm --root, mke2fs -d, e2fsck, pack, verify."""

import dataclasses
from pathlib import Path

import pytest

from ais.cache.build import build_fs, build_image, fs_size
from ais.cache.store import Store, image_id
from ais.cache.verify import check_store, problem
from ais.descriptors import load_site
from ais.errors import BuildError
from ais.rpmenv import installed_nevras
from ais.run import run
from ais.stream.format import read_header

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def base_packages(repo_dir):
    site = load_site(ROOT / "descriptors", repo_dir)
    return list(site.configuration("base").packages)


@pytest.fixture(scope="module")
def built(tmp_path_factory, base_packages, repo_dir):
    store = Store(tmp_path_factory.mktemp("cache"))
    store.ensure()
    record = build_image(store, base_packages, repo_dir, key="k0")
    store.drain()
    return store, record


def test_build_fs_is_checked_ext4_with_exact_rpmdb(tmp_path, base_packages, repo_dir):
    fs = build_fs(base_packages, repo_dir, tmp_path, label="ais-test")
    assert run(["e2fsck", "-fn", fs.path], check=False).returncode == 0
    assert fs.nevras == {p.nevra for p in base_packages}
    out = run(["dumpe2fs", "-h", fs.path]).stdout
    assert "ais-test" in out and "Block size:               4096" in out
    listing = run(["debugfs", "-R", "ls -p /bin", fs.path]).stdout
    assert "/sh/" in listing or "sh" in listing


def test_build_image_records_and_stores(built, base_packages):
    store, record = built
    iid = image_id(base_packages)
    assert record["file"] == f"images/{iid}.aisimg"
    assert record["packages"] == sorted(p.nevra for p in base_packages)
    assert record["stored_bytes"] == store.image_path(iid).stat().st_size
    header = read_header(store.image_path(iid))
    assert header.image_id == iid and sorted(header.packages) == record["packages"]
    assert record["header_sha256"] == header.sha256()
    assert record["fs_bytes"] == header.fs_bytes
    assert list(store.tmp.iterdir()) == []  # work dir removed
    assert problem(store.image_path(iid), iid, record) is None


def test_rpmdb_of_unpacked_image_lists_the_set(built, tmp_path):
    """Write the packed image back to a file and ask rpm about the rpmdb in it."""
    from ais.stream.format import decode_chunk, iter_chunks

    store, record = built
    iid = store.stored_ids().pop()
    path = store.image_path(iid)
    header = read_header(path)
    target = tmp_path / "fs.img"
    with open(target, "wb") as out:
        out.truncate(header.fs_bytes)
        for index, stored in iter_chunks(path, header):
            for offset, data in decode_chunk(header, index, stored):
                out.seek(offset)
                out.write(data)
    assert run(["e2fsck", "-fn", target], check=False).returncode == 0
    dest = tmp_path / "check" / "var" / "lib"
    dest.mkdir(parents=True)
    run(["debugfs", "-R", f"rdump /var/lib/rpm {dest}", target])
    assert installed_nevras(tmp_path / "check") == set(record["packages"])


@pytest.mark.parametrize("where", ["header", "chunk", "tail"])
def test_flipped_byte_is_detected(built, tmp_path, where):
    store, record = built
    iid = store.stored_ids().pop()
    data = bytearray(store.image_path(iid).read_bytes())
    pos = {"header": 40, "chunk": len(data) // 2, "tail": len(data) - 1}[where]
    data[pos] ^= 0x01
    copy = Store(tmp_path)
    copy.ensure()
    copy.image_path(iid).write_bytes(bytes(data))
    why = problem(copy.image_path(iid), iid, record)
    assert why is not None
    assert check_store(copy, {"images": {iid: record}}) == {iid: why}


def test_missing_rpm_is_a_build_error(tmp_path, base_packages, repo_dir):
    ghost = dataclasses.replace(base_packages[0], filename="RPMS/x86_64/ghost-1-1.x86_64.rpm")
    with pytest.raises(BuildError, match="missing from the repository"):
        build_fs([ghost, *base_packages[1:]], repo_dir, tmp_path, label="x")


def test_unsatisfied_dependency_fails_in_rpm(tmp_path, base_packages, repo_dir):
    """rpm refuses a set that is not dependency-closed: no partial image."""
    from ais.errors import ToolError

    without_busybox = [p for p in base_packages if p.name != "busybox-base"]
    with pytest.raises((ToolError, BuildError)):
        build_fs(without_busybox, repo_dir, tmp_path, label="x")


def test_fs_size_grows_with_content_and_attempt():
    assert fs_size(10 << 20, 100) < fs_size(100 << 20, 100)
    assert fs_size(10 << 20, 100, attempt=1) == 2 * fs_size(10 << 20, 100) or \
        fs_size(10 << 20, 100, attempt=1) > fs_size(10 << 20, 100)
    assert fs_size(1, 1) % (1 << 20) == 0
