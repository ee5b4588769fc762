"""Real reinstalls: a real `ais serve` subprocess over a real cache, real loop devices, real rpm.

After each reinstall the target must hold exactly the SCD's packages (`rpm -qa`), `rpm -Va`
must be empty (mail and db have no scriptlet-written %config files), host files must be
byte-identical with the planned mode and owner, `e2fsck -fn` must pass, and the install
record inside the target must equal the record the server's history stored. The same
holds for a disk holding the previous configuration, a disk of random garbage, the
packages-only path, ais-boot driven by a kernel command line, ais-boot over HTTPS with the site
CA pinned (and the installed system's first-boot report over TLS, from a chroot of the target),
and a dry run writes nothing.
"""

import os
import shutil
import time
from pathlib import Path

import pytest

from aislab.disks import LoopDisk, Mounted, reinstall_argv, target_facts
from ais import siteca
from ais.descriptors import load_site
from ais.cost import CostModel, save_calibration
from ais.run import run
from aislab.site import ServeProcess, publish_base_cache, stored_reports, subset_descriptors
from aislab.net import ais_command

ROOT = Path(__file__).resolve().parents[2]
TOKENS = {"mail01": "9d4bf7abd55eb7e7da9043caf50c4203", "db01": "fb9577bf9257dd86cd19d77acdaf07b7"}
EXTRA_FILE = '  <file path="/var/spool/drop/owned-by-nobody" mode="0604" owner="nobody" group="nobody">x\n</file>\n'


@pytest.fixture(scope="module")
def lab(tmp_path_factory, repo_dir):
    base = tmp_path_factory.mktemp("client")
    descriptors = subset_descriptors(ROOT / "descriptors", base / "descriptors", ["mail", "db"], ["mail01", "db01"])
    hcd = descriptors / "hcd" / "mail01.xml"  # one file owned by a non-root user of the TARGET's passwd
    hcd.write_text(hcd.read_text().replace("</hcd>", EXTRA_FILE + "</hcd>"))
    cost = base / "cost.json"
    save_calibration(CostModel(image_fixed_s=0.1, stream_bytes_per_s=300e6), cost)
    manifest = publish_base_cache(descriptors, repo_dir, base / "cache", cost=cost)
    site = load_site(descriptors, repo_dir)
    with ServeProcess(descriptors, repo_dir, base / "cache", base / "history.sqlite") as server:
        yield {"base": base, "site": site, "server": server, "manifest": manifest, "descriptors": descriptors}


@pytest.fixture()
def disk(tmp_path):
    with LoopDisk(tmp_path / "disk.img", 1024) as d:
        yield d


def reinstall(lab, host, disk, state, *extra, check=True):
    proc = run(reinstall_argv(lab["server"].url, host, TOKENS[host], disk.device, state, *extra), check=False,
               timeout=240)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def history(lab, host):
    return stored_reports(lab["base"] / "history.sqlite", host)


def assert_installed(lab, host, disk):
    site = lab["site"]
    hcd = next(h for h in site.hosts if h.name == host)
    facts = target_facts(disk.device, [f.path for f in hcd.files])
    assert facts["nevras"] == set(site.configuration(hcd.scd).nevras)  # exactly the SCD's set
    assert facts["rpm_va"] == ""
    for f in hcd.files:
        content, mode, uid, gid = facts["files"][f.path]
        assert content == f.content and mode == f.mode
        assert (uid, gid) == ((65534, 65534) if f.owner == "nobody" else (0, 0))
    assert facts["fsck_rc"] == 0 and not facts["staging_left"]
    assert_bootloader(facts, disk.device)
    record = facts["record"]
    assert record["host"] == host and record["scd"] == hcd.scd
    status, report = history(lab, host)[-1]
    assert status == "ok" and report["record"] == record  # the target and the server's history agree
    return record


def assert_bootloader(facts, device):
    """EXTLINUX in the filesystem's (= the whole disk's) first sector, booting the installed kernel."""
    sector = facts["boot_sector"]
    assert sector[3:11] == b"SYSLINUX" and sector[510:] == b"\x55\xaa" and facts["ldlinux"]
    conf = facts["extlinux_conf"] or ""
    assert "  LINUX /boot/vmlinuz-" in conf and "  INITRD /boot/initrd.img-" in conf, conf
    assert f"  APPEND root={device} rw init=/usr/lib/ais/firstboot" in conf, conf


def test_reinstall_image_plus_remainder(lab, disk, tmp_path):
    proc = reinstall(lab, "mail01", disk, tmp_path / "state")
    record = assert_installed(lab, "mail01", disk)
    assert record["image"]["id"] == lab["manifest"]["configurations"]["mail"]["image"]
    assert record["remainder"] == ["postfix-0:3.7.5-1.x86_64", "dovecot-0:2.3.19-1.x86_64"]
    assert set(record["timings"]) >= {"image", "grow", "mount", "install", "files", "verify"}
    assert record["predicted_seconds"] == lab["manifest"]["configurations"]["mail"]["predicted_seconds"]
    assert record["measured_seconds"] > 0
    assert "reinstalled mail01" in proc.stderr


def test_disk_with_previous_configuration_and_garbage_give_the_same_result(lab, disk, tmp_path):
    reinstall(lab, "db01", disk, tmp_path / "s1")
    assert_installed(lab, "db01", disk)
    reinstall(lab, "mail01", disk, tmp_path / "s2")  # over db01's installation
    first = assert_installed(lab, "mail01", disk)
    disk.fill_random(96)  # garbage over the filesystem's whole extent and beyond
    reinstall(lab, "mail01", disk, tmp_path / "s3")
    second = assert_installed(lab, "mail01", disk)
    assert first["remainder"] == second["remainder"] and first["image"] == second["image"]


def test_packages_only_when_the_image_is_gone(lab, disk, tmp_path):
    cache = lab["base"] / "cache"
    image_file = cache / lab["manifest"]["images"][lab["manifest"]["configurations"]["db"]["image"]]["file"]
    saved = tmp_path / "saved.aisimg"
    shutil.move(image_file, saved)
    try:
        proc = reinstall(lab, "db01", disk, tmp_path / "state")
    finally:
        shutil.move(saved, image_file)
    record = assert_installed(lab, "db01", disk)
    assert record["image"] is None and "unreadable" in record["fallback"]["reason"]
    assert sorted(record["remainder"]) == sorted(record["configuration"])
    assert "fallback:" in proc.stderr


def test_dry_run_writes_nothing(lab, disk, tmp_path):
    before = len(history(lab, "db01"))
    proc = reinstall(lab, "db01", disk, tmp_path / "state", "--dry-run")
    assert "would stream image" in proc.stderr and "would install 3 RPMs" in proc.stderr
    assert "dry run: nothing was written" in proc.stderr
    assert f"would install EXTLINUX into the boot sector of {disk.device}" in proc.stderr
    with open(disk.device, "rb") as f:
        assert f.read(64 << 20).count(0) == 64 << 20  # still all zeros
    assert len(history(lab, "db01")) == before


def test_ais_boot_from_a_kernel_command_line(lab, disk, tmp_path):
    run(["shellcheck", str(ROOT / "ais/client/ais-boot")])  # the Makefile installs shellcheck
    cmdline = tmp_path / "cmdline"
    cmdline.write_text(f"BOOT_IMAGE=/vmlinuz quiet ais.server={lab['server'].url} ais.target={disk.device} "
                       f"ais.host=db01 ais.token={TOKENS['db01']} ais.transport=unicast\n")
    env = {"AIS": ais_command()[0]}
    proc = run(["sh", str(ROOT / "ais/client/ais-boot"), "--cmdline", str(cmdline), "--state", str(tmp_path / "st"),
                "--no-reboot"], env=env, check=False, timeout=240)
    assert proc.returncode == 0, proc.stderr
    assert "reinstalled; staying up" in proc.stderr
    assert_installed(lab, "db01", disk)


def test_ais_boot_over_https_pins_the_site_ca_and_the_installed_system_reports_up_over_tls(lab, disk, tmp_path,
                                                                                           repo_dir):
    """The site gets a CA and a certificate for 127.0.0.1; `ais serve` answers over HTTPS only. ais-boot
    pins the CA from its default file (as a boot environment carries it), the reinstall goes over
    TLS, the target gets the CA and https:// settings, and the installed system's own first-boot
    report (busybox only: busybox wget) reaches the server from a chroot of the target."""
    cache = tmp_path / "cache"  # a copy: the module's plain-HTTP server keeps its own
    shutil.copytree(lab["base"] / "cache", cache, symlinks=True)
    run(ais_command("site", "init", "--cache", str(cache), "--ca"))
    run(ais_command("site", "cert", "--cache", str(cache), "--name", "127.0.0.1"))
    ca = siteca.ca_path(cache)
    history_db = tmp_path / "history.sqlite"
    with ServeProcess(lab["descriptors"], repo_dir, cache, history_db, tls=True) as server:
        assert server.url.startswith("https://127.0.0.1:")
        cmdline = tmp_path / "cmdline"
        cmdline.write_text(f"quiet ais.server={server.url} ais.target={disk.device} ais.host=db01 "
                           f"ais.token={TOKENS['db01']} ais.transport=unicast\n")
        proc = run(["sh", str(ROOT / "ais/client/ais-boot"), "--cmdline", str(cmdline), "--state",
                    str(tmp_path / "st"), "--no-reboot"], env={"AIS": ais_command()[0], "AIS_SITE_CA_FILE": str(ca)},
                   check=False, timeout=240)
        assert proc.returncode == 0, proc.stderr
        assert f"site CA {ca}" in proc.stderr and "reinstalled; staying up" in proc.stderr
        assert "plain HTTP" not in proc.stderr
        (status, report), = stored_reports(history_db, "db01")
        assert status == "ok" and report["record"]["server"] == server.url
        with Mounted(disk.device, readonly=False) as root:
            copied = root / "var/lib/ais/site-ca.pem"
            assert copied.read_bytes() == ca.read_bytes() and copied.stat().st_mode & 0o777 == 0o644
            conf = (root / "var/lib/ais/firstboot.conf").read_text()
            assert f"SERVER_SCHEME=https\nSERVER_URL={server.url}\n" in conf and "SITE_CA=/var/lib/ais/site-ca.pem" in conf
            assert not any((root / d / "curl").exists() for d in ("bin", "usr/bin"))  # the demo's system: busybox
            console = first_boot_report(root)
    assert "firstboot: report_up: busybox wget does not check the server's certificate" in console, console
    assert 'firstboot: report_up: the server stored "up" for db01' in console, console
    (status, up), = stored_reports(history_db, "db01")[1:]
    assert status == "up" and (up["image"], up["generation"]) == (report["image"], report["generation"])


def first_boot_report(root: Path) -> str:
    """firstboot's report_up, run in a chroot of the installed target (its busybox, its settings,
    this host's network, /proc and /dev mounted as firstboot's mount_pseudo does); what it said."""
    functions = (root / "usr/lib/ais/firstboot").read_text().split("\ncase ${1:-} in\n", 1)[0]
    (root / "tmp/report-up").write_text(functions + '\nsay() { echo "firstboot: $*"; }\nreport_up\n')
    for d, kind in (("proc", "proc"), ("dev", "devtmpfs")):
        (root / d).mkdir(exist_ok=True)
        run(["mount", "-t", kind, kind, str(root / d)])
    try:
        return run(["chroot", str(root), "/bin/sh", "/tmp/report-up"], check=False, timeout=120).stdout
    finally:
        # busybox timeout's watcher outlives wget by up to a second, inside the chroot
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_root_of(pid) == str(root) for pid in os.listdir("/proc")):
            time.sleep(0.2)
        for d in ("dev", "proc"):
            run(["umount", str(root / d)])


def _root_of(pid: str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/root") if pid.isdigit() else None
    except OSError:
        return None


BAD_SETTINGS = [
    ("quiet ais.server=http://127.0.0.1:1", "ais.target= are required"),
    ("quiet ais.server=http://127.0.0.1:1 ais.target=/dev/nonexistent-disk", "cannot tell who this is"),
    ("ais.server=http://127.0.0.1:1 ais.target=/dev/x ais.host=h ais.transport=carrier-pigeon",
     "ais.transport must be"),
]


@pytest.mark.parametrize("cmdline_text, words", BAD_SETTINGS)
def test_ais_boot_bad_settings_exit_2(cmdline_text, words, tmp_path):
    cmdline = tmp_path / "cmdline"
    cmdline.write_text(cmdline_text + "\n")
    proc = run(["sh", str(ROOT / "ais/client/ais-boot"), "--cmdline", str(cmdline), "--state", str(tmp_path / "st")],
               env={"AIS": ais_command()[0]}, check=False, timeout=60)
    assert proc.returncode == 2 and words in proc.stderr, proc.stderr
    assert not (tmp_path / "st").exists()
