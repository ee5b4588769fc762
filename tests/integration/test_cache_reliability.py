"""The cache under crashes, races, corruption, a full disk and bad descriptors.

Real `ais rebuild` processes (python -m ais.cli) with real rpm, mke2fs, e2fsck
and packing; kill -9 at named steps (AIS_TEST_PAUSE_AT, see ais/faults.py)
and in the middle of a running rpm transaction; a real loop-mounted ext4 as a
small cache disk. The site is a 4-SCD copy of the demo descriptors (base, db,
mail, hpc) with a cost model under which every configuration gets its own
image, so every rebuild is a fixed point and images stay small.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from ais.cache import manifest as manifests
from ais.cache.store import Store
from ais.cache.verify import problem
from ais.cost import CostModel, save_calibration
from aislab.net import ais_command
from aislab.site import copy_groups

ROOT = Path(__file__).resolve().parents[2]
SITE_A = {"scd": ["base", "db", "mail"], "hcd": ["db01", "mail01"]}
SITE_B = {"scd": ["base", "mail", "hpc"], "hcd": ["mail01", "node01"]}  # drops db, adds hpc


def make_site(dest: Path, spec: dict) -> Path:
    (dest / "scd").mkdir(parents=True)
    (dest / "hcd").mkdir()
    shutil.copytree(ROOT / "descriptors" / "files", dest / "files")
    for name in spec["scd"]:
        shutil.copy(ROOT / "descriptors" / "scd" / f"{name}.xml", dest / "scd")
    for name in spec["hcd"]:
        shutil.copy(ROOT / "descriptors" / "hcd" / f"{name}.xml", dest / "hcd")
    copy_groups(ROOT / "descriptors", dest)
    return dest


def ais(args: list[str], *, env: dict | None = None, **popen) -> subprocess.Popen:
    return subprocess.Popen([*ais_command(), *args], cwd=ROOT,
                            env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, **popen)


class Env:
    """A cache directory plus the descriptors and cost model to rebuild it from."""

    def __init__(self, base: Path, repo: Path, cache: Path | None = None):
        self.base = base
        self.repo = repo
        self.cache = cache or base / "cache"
        self.cost = base / "cost.json"
        save_calibration(CostModel(rpm_per_package_s=2.0, image_fixed_s=0.5), self.cost)
        self.site_a = make_site(base / "site-a", SITE_A)
        self.site_b = make_site(base / "site-b", SITE_B)

    def args(self, command: str, site: Path, *extra: str) -> list[str]:
        return [*command.split(), "--descriptors", str(site), "--repo", str(self.repo),
                "--cache", str(self.cache), "--budget", "1G", "--cost", str(self.cost),
                "--time-limit", "20", *extra]

    def rebuild(self, site: Path, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
        proc = ais(self.args("rebuild", site, *extra), env=env)
        out, err = proc.communicate(timeout=300)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    def status(self, site: Path) -> dict:
        proc = ais(self.args("cache status", site, "--json"))
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        return json.loads(out)

    @property
    def store(self) -> Store:
        return Store(self.cache)


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def snapshot(path: Path) -> dict[str, tuple]:
    """Every entry under path: kind, size, mtime and content hash of files."""
    out = {}
    for p in sorted(path.rglob("*")):
        st = p.lstat()
        digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None
        out[str(p.relative_to(path))] = (p.is_dir(), st.st_size, st.st_mtime_ns, digest)
    return out


def assert_servable(store: Store, manifest_bytes: bytes | None = None) -> dict:
    """The published manifest (equal to manifest_bytes if given) and all its images verify."""
    if manifest_bytes is not None:
        assert store.manifest_path.read_bytes() == manifest_bytes
    published = manifests.read(store)
    for iid, record in published["images"].items():
        assert problem(store.image_path(iid), iid, record) is None, iid
    for name, entry in published["configurations"].items():
        assert entry["image"] is None or entry["image"] in published["images"], name
    return published


def assert_matches_plan(env: Env, site: Path) -> dict:
    """tmp/ empty, images/ holds exactly the published images, a rebuild would change nothing."""
    published = assert_servable(env.store)
    assert env.store.stored_ids() == set(published["images"])
    assert list(env.store.tmp.iterdir()) == []
    status = env.status(site)
    assert status["rebuild_would"]["build"] == [] and status["rebuild_would"]["remove"] == []
    assert status["corrupt"] == {}
    return published


@pytest.fixture(scope="module")
def generation_a(tmp_path_factory, repo_dir) -> Env:
    """A cache published from site A (base, db, mail): built once, copied per test."""
    env = Env(tmp_path_factory.mktemp("gen-a"), repo_dir)
    ok(env.rebuild(env.site_a))
    published = assert_matches_plan(env, env.site_a)
    assert len(published["images"]) >= 2
    return env


@pytest.fixture
def env(generation_a, tmp_path) -> Env:
    """A private copy of generation A's cache."""
    shutil.copytree(generation_a.cache, tmp_path / "cache", symlinks=True)
    return Env(tmp_path, generation_a.repo)


@pytest.fixture(scope="module")
def result_b(generation_a, tmp_path_factory) -> dict:
    """What one uninterrupted rebuild from generation A to site B publishes."""
    base = tmp_path_factory.mktemp("result-b")
    shutil.copytree(generation_a.cache, base / "cache")
    env = Env(base, generation_a.repo)
    ok(env.rebuild(env.site_b))
    return assert_matches_plan(env, env.site_b)


def same_result(a: dict, b: dict) -> None:
    def serving(m):  # predicted seconds move with measured sizes; who serves whom must not
        return {c: (e["image"], sorted(e["remainder"])) for c, e in m["configurations"].items()}

    assert set(a["images"]) == set(b["images"])
    assert serving(a) == serving(b)


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"rebuild exited {proc.returncode} before pausing:\n{proc.stderr.read()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"rebuild did not reach {path.name}")
        time.sleep(0.02)


def kill9(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGKILL)  # the rebuild and its children (rpm, mke2fs)
    proc.communicate(timeout=60)


@pytest.mark.parametrize("step", ["locked", "rpm", "mkfs", "pack", "install", "publish"])
def test_kill9_before_publish_keeps_old_cache_and_next_run_finishes(env, result_b, step):
    old = env.store.manifest_path.read_bytes()
    marker = env.base / "paused"
    proc = ais(env.args("rebuild", env.site_b),
               env={"AIS_TEST_PAUSE_AT": step, "AIS_TEST_PAUSE_FILE": str(marker)})
    wait_for(marker, proc)
    kill9(proc)
    assert_servable(env.store, old)  # the previous manifest and its images, intact
    ok(env.rebuild(env.site_b))
    same_result(assert_matches_plan(env, env.site_b), result_b)


def test_kill9_after_publish_serves_new_cache_and_next_run_collects(env, result_b):
    marker = env.base / "paused"
    proc = ais(env.args("rebuild", env.site_b),
               env={"AIS_TEST_PAUSE_AT": "gc", "AIS_TEST_PAUSE_FILE": str(marker)})
    wait_for(marker, proc)
    kill9(proc)
    same_result(assert_servable(env.store), result_b)
    assert env.store.stored_ids() > set(result_b["images"])  # garbage not yet removed
    ok(env.rebuild(env.site_b))
    same_result(assert_matches_plan(env, env.site_b), result_b)


def rpm_child(session: int) -> bool:
    """True when an `rpm -i` runs in the given session (the rebuild's process group)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[3]) == session and argv[0].endswith(b"rpm") and b"-i" in argv:
            return True
    return False


def test_kill9_while_rpm_transaction_runs(env, result_b):
    """No pause hook: watch for the real rpm process and kill the group while it runs."""
    old = env.store.manifest_path.read_bytes()
    proc = ais(env.args("rebuild", env.site_b))
    deadline = time.monotonic() + 120
    while not rpm_child(proc.pid):
        assert proc.poll() is None, f"rebuild ended before rpm was seen: {proc.stderr.read()}"
        assert time.monotonic() < deadline
        time.sleep(0.002)
    kill9(proc)
    assert_servable(env.store, old)
    ok(env.rebuild(env.site_b))
    same_result(assert_matches_plan(env, env.site_b), result_b)


def test_two_rebuilds_together_are_serialized(env, result_b):
    marker = env.base / "paused"
    first = ais(env.args("rebuild", env.site_b),
                env={"AIS_TEST_PAUSE_AT": "locked", "AIS_TEST_PAUSE_FILE": str(marker)})
    wait_for(marker, first)  # first holds the lock now, and stands still until the marker goes
    second = ais(env.args("rebuild", env.site_b))
    said: list[str] = []

    def until_waiting() -> None:  # the second says it waits for the first
        for line in second.stderr:
            said.append(line)
            if "waiting" in line:
                return

    reader = threading.Thread(target=until_waiting, daemon=True)
    reader.start()
    reader.join(timeout=300)
    assert said and "waiting" in said[-1], said
    busy = env.rebuild(env.site_b, "--no-wait")
    marker.unlink()  # let the first go on
    out1, err1 = first.communicate(timeout=300)
    out2, err2 = second.communicate(timeout=300)
    err2 = "".join(said) + err2
    assert first.returncode == 0, err1
    assert second.returncode == 0, err2
    assert f"pid {first.pid}" in err2 and "waiting" in err2
    assert busy.returncode == 1 and f"pid {first.pid}" in busy.stderr and "--no-wait" in busy.stderr
    assert "did build" in out1 and "nothing to build or remove" in out2
    same_result(assert_matches_plan(env, env.site_b), result_b)


def test_corrupted_image_is_detected_and_rebuilt(env):
    published = manifests.read(env.store)
    iid = sorted(published["images"])[0]
    path = env.store.image_path(iid)
    with open(path, "r+b") as f:  # flip one byte in the middle of the chunk data
        f.seek(path.stat().st_size // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0xFF]))
    status = env.status(env.site_a)
    assert not status["images"][iid]["ok"] and iid in status["corrupt"]
    assert [b["id"] for b in status["rebuild_would"]["build"]] == [iid]
    proc = ok(env.rebuild(env.site_a))
    assert "1 corrupt" in proc.stderr and "corrupt copy replaced" in proc.stdout
    after = assert_matches_plan(env, env.site_a)
    assert set(after["images"]) == set(published["images"])
    assert after["images"][iid]["header_sha256"] != ""


def test_bad_descriptor_stops_before_touching_cache(env):
    broken = env.base / "site-broken"
    shutil.copytree(env.site_b, broken)
    scd = broken / "scd" / "mail.xml"
    scd.write_text(scd.read_text().replace("</scd>", '  <package name="no-such-package"/>\n</scd>'))
    (env.store.tmp / "leftover").write_text("from a crashed run")  # even tmp/ stays as it is
    before = snapshot(env.cache)
    proc = env.rebuild(broken)
    assert proc.returncode == 2, proc.stderr
    assert "no-such-package" in proc.stderr
    assert snapshot(env.cache) == before


SMALL_DISK_ROOM_MIB = 12  # from the cache's size: a fixed 40 MB disk no longer held it once the demo kernel was real


@pytest.fixture
def small_disk(generation_a, tmp_path):
    """An ext4 filesystem on a real loop device, mounted at tmp_path/disk: generation A's cache fits
    with SMALL_DISK_ROOM_MIB to spare (ext4's metadata and journal, a little room), a bigger site's
    new images do not."""
    image, mountpoint = tmp_path / "disk.img", tmp_path / "disk"
    mountpoint.mkdir()
    cache_bytes = sum(p.stat().st_size for p in generation_a.cache.rglob("*") if p.is_file())
    subprocess.run(["truncate", "-s", f"{(cache_bytes >> 20) + SMALL_DISK_ROOM_MIB}M", image], check=True)
    subprocess.run(["mke2fs", "-q", "-t", "ext4", "-m", "0", image], check=True)
    loop = subprocess.run(["losetup", "--find", "--show", image], check=True,
                          capture_output=True, text=True).stdout.strip()
    try:
        subprocess.run(["mount", loop, mountpoint], check=True)
        try:
            yield mountpoint
        finally:
            subprocess.run(["umount", mountpoint], check=True)
    finally:
        subprocess.run(["losetup", "-d", loop], check=True)


def test_disk_full_during_build_keeps_old_cache(generation_a, small_disk, tmp_path):
    env = Env(tmp_path / "work", generation_a.repo, cache=small_disk / "cache") \
        if (tmp_path / "work").mkdir() is None else None
    shutil.copytree(generation_a.cache, env.cache)
    old = env.store.manifest_path.read_bytes()
    big = env.base / "site-big"
    make_site(big, {"scd": ["base", "db", "mail", "hpc", "hpc-dev", "dev"],
                    "hcd": ["db01", "mail01", "node01", "login01", "dev01"]})
    proc = env.rebuild(big)
    assert proc.returncode == 1, proc.stderr
    assert "no space left on the cache filesystem" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert_servable(env.store, old)
    assert list(env.store.tmp.iterdir()) == []  # the failed build cleaned up after itself
