"""The real site's base, end to end: Debian bookworm's own packages as RPMs, reinstalled onto a loop disk.

Builds (incrementally, into build/real-repo-base; the .debs are cached in build/debs) the
installation base of the real site with `aislab.debsite`, writes its SCDs, serves it with a
real `ais serve` from an image cache of the base, and reinstalls host min01 of
descriptors-real with a real `ais client reinstall` onto a loop disk full of garbage.
Then: `rpm -qa` is exactly the configuration, `rpm -Va` is clean (the client refuses a
target that is not; /etc/passwd and /etc/group, which the system-user scriptlets edit, are
%verify(not md5 size mtime) as in Red Hat's setup package), the host files are there,
`e2fsck -fn` passes, and the scriptlets did their real work (ldconfig cache, depmod, alternatives,
system groups). Needs the apt lists and the network for the first `apt-get download`.
"""

import shutil
from pathlib import Path

import pytest

from aislab.disks import LoopDisk, Mounted, reinstall_argv, target_facts
from ais.descriptors import load_site
from ais.cost import CostModel, save_calibration
from ais.rpmenv import install_flags, rpm_cmd
from ais.run import run
from aislab.debsite.build import build_site
from aislab.site import ServeProcess, publish_base_cache

ROOT = Path(__file__).resolve().parents[2]
HOST = "min01"


@pytest.fixture(scope="module")
def real_base(tmp_path_factory):
    base = tmp_path_factory.mktemp("real-site")
    descriptors = base / "descriptors"
    repo = ROOT / "build" / "real-repo-base"
    result = build_site(repo, ROOT / "build" / "debs", roles=[], descriptors=descriptors, echo=lambda line: None)
    (descriptors / "scd" / "base-1.xml").unlink()  # one patch level is enough to reinstall a host
    (descriptors / "hcd").mkdir()
    shutil.copy(ROOT / "descriptors-real" / "hcd" / f"{HOST}.xml", descriptors / "hcd")
    cost = base / "cost.json"
    save_calibration(CostModel(image_fixed_s=0.1, stream_bytes_per_s=300e6), cost)
    manifest = publish_base_cache(descriptors, repo, base / "cache", cost=cost)
    site = load_site(descriptors, repo)
    with ServeProcess(descriptors, repo, base / "cache", base / "history.sqlite") as server:
        yield {"base": base, "site": site, "server": server, "manifest": manifest, "result": result}


def test_the_base_is_debian_required_and_important_with_a_kernel(real_base):
    conf = real_base["site"].configuration("base-2")
    names = {p.name for p in conf.packages}
    assert {"dash", "bash", "coreutils", "libc6", "systemd", "apt", "perl-base", "base-files", "base-passwd",
            "usr-is-merged", "linux-image-amd64"} <= names
    assert any(n.startswith("linux-image-6.1.0-") for n in names)
    kinds = {f.kind for f in real_base["result"].findings}
    assert "dropped-script" in kinds and "name-clash" not in kinds


def test_rpm_accepts_what_libsolv_resolved_for_the_real_base(real_base, tmp_path):
    """libsolv's closure of the real base (Debian's required and important packages as RPMs, rich
    dependencies, virtual provides, conflicts) is what rpm's own transaction check accepts into an
    empty root; without one package others need, rpm refuses and names it."""
    conf = real_base["site"].configuration("base-2")
    repo = ROOT / "build" / "real-repo-base"
    files = [repo / p.filename for p in conf.packages]
    proc = run(rpm_cmd(tmp_path / "root", "-i", "--test", *install_flags(), *files), check=False, timeout=600)
    assert proc.returncode == 0, f"rpm refuses what libsolv resolved:\n{(proc.stdout + proc.stderr)[-3000:]}"
    without = [f for f in files if not f.name.startswith("libc6-")]
    proc = run(rpm_cmd(tmp_path / "root2", "-i", "--test", *install_flags(), *without), check=False, timeout=600)
    assert proc.returncode != 0 and "libc6" in proc.stdout + proc.stderr


def test_reinstall_a_host_of_the_real_base(real_base, tmp_path):
    site, server = real_base["site"], real_base["server"]
    hcd = next(h for h in site.hosts if h.name == HOST)
    with LoopDisk(tmp_path / "disk.img", 2048) as disk:
        disk.fill_random(16)
        proc = run(reinstall_argv(server.url, HOST, hcd.token, disk.device, tmp_path / "state"), check=False,
                   timeout=900)
        assert proc.returncode == 0, proc.stderr
        facts = target_facts(disk.device, [f.path for f in hcd.files])
        with Mounted(disk.device) as root:
            awk = (root / "usr/bin/awk").readlink()
            chosen_awk = (root / "etc/alternatives/awk").readlink()
            cache = (root / "etc/ld.so.cache").stat().st_size
            depmod = sorted(p.parent.name for p in (root / "usr/lib/modules").glob("*/modules.dep"))
            groups = (root / "etc/group").read_text()
            merged = {top: (root / top).readlink() for top in ("bin", "sbin", "lib", "lib64")}
    assert facts["nevras"] == set(site.configuration("base-2").nevras)
    assert facts["rpm_va"] == ""
    for f in hcd.files:
        content, mode, _, _ = facts["files"][f.path]
        assert content == f.content and mode == f.mode
    assert facts["fsck_rc"] == 0 and not facts["staging_left"]
    record = facts["record"]
    assert record["host"] == HOST and record["image"]["id"] == real_base["manifest"]["configurations"]["base-2"]["image"]
    assert merged == {"bin": Path("usr/bin"), "sbin": Path("usr/sbin"), "lib": Path("usr/lib"),
                      "lib64": Path("usr/lib64")}
    assert awk == Path("/etc/alternatives/awk") and chosen_awk == Path("/usr/bin/mawk")
    assert cache > 0 and len(depmod) == 1
    assert "\ncrontab:x:" in groups and "\nnetdev:x:" in groups
