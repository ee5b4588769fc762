"""Real boot: a QEMU virtual machine (TCG) boots AIS's boot environment and reinstalls its own disk.

The boot environment is built by the real `ais bootenv build` (Debian packages via
apt); a real `ais serve` on this host serves it (/v1/boot/vmlinuz, /v1/boot/initrd) and
the iPXE script of the VM's MAC. The VM boots from the network as a machine does: its
firmware's iPXE gets the script's URL from QEMU's DHCP, fetches the script, the kernel
and the initramfs from the server, which it reaches at 10.0.2.2 through QEMU's user
network. After the reinstall the boot
environment kexecs into the installed disk's kernel, whose firstboot reports "up" and powers off
(QEMU runs with -no-reboot, so a guest reboot ends it too); the host checks the disk image:
exactly the SCD's packages (rpm -qa), `rpm -Va` empty, the host files, e2fsck -fn, and
the install record equal to the one the server's history stored with status ok.
A kernel that forbids kexec makes the machine reboot through its firmware, and the history says so;
the machine's next network boot is sent to its disk, once (tests/integration/test_local_boot.py boots it).
A disk too small is refused inside the VM and the failure (phase check) reaches the
server's history; a target disk that does not appear stops the boot in the init's step
wait_for_target, and the server is told too; a wrong ais.server= stops the boot in its
step find_server with a banner on the console (no server to tell). In both, the disk stays untouched. Every QEMU run is bounded by `timeout` and killed
when the test ends.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from ais.run import run
from aislab.disks import target_facts
from aislab.net import NetLab, ais_command
from aislab.qemu import TEST_BOOTENV, Vm, blank_disk, boot_site, build_bootenv, fetch, kernel_args_of
from aislab.site import ServeProcess, request, stored_reports

MAC = "52:54:00:00:00:06"  # db01's in its HCD
pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def lab(tmp_path_factory, repo_dir, bootenv):
    base = tmp_path_factory.mktemp("boot")
    booting = boot_site(base, repo_dir, ["db"], ["db01"])
    with ServeProcess(booting["descriptors"], repo_dir, booting["cache"], base / "history.sqlite",
                      "--advertise", "10.0.2.2", "--boot-target", "/dev/vda",
                      "--boot-append", "console=ttyS0 ais.final=poweroff") as server:
        yield {"base": base, "site": booting["site"], "server": server, "manifest": booting["manifest"]}


def boot_files(lab, tmp_path) -> tuple[Path, Path, str]:
    """The kernel, the initramfs and the kernel command line, as the server hands them out."""
    server = lab["server"]
    status, _, script = request(server, "GET", f"/v1/boot/ipxe/{MAC}")
    assert status == 200, script
    port = server.url.rsplit(":", 1)[1]
    kernel = fetch(f"{server.url}/v1/boot/vmlinuz", tmp_path / "vmlinuz")
    initrd = fetch(f"{server.url}/v1/boot/initrd", tmp_path / "initrd.img")
    current = json.loads((lab["base"] / "cache" / "bootenv" / "current.json").read_text())
    assert hashlib.sha256(kernel.read_bytes()).hexdigest() == current["kernel_sha256"]
    assert hashlib.sha256(initrd.read_bytes()).hexdigest() == current["initrd_sha256"]
    # The script names the server as the request reached it (127.0.0.1); the VM reaches it at 10.0.2.2.
    args = kernel_args_of(script.decode()).replace(f"127.0.0.1:{port}", f"10.0.2.2:{port}")
    return kernel, initrd, args


def history(lab, host):
    return stored_reports(lab["base"] / "history.sqlite", host)


def test_two_builds_of_the_same_inputs_are_the_same_bytes(bootenv, tmp_path):
    """Reproducible: another cache, another time, the same kernel and initramfs (the .debs are linked, not
    downloaded again)."""
    debs = tmp_path / "cache" / "bootenv" / "debs"
    debs.mkdir(parents=True)
    for deb in (TEST_BOOTENV / "bootenv" / "debs").glob("*.deb"):
        (debs / deb.name).hardlink_to(deb)
    again = build_bootenv(tmp_path / "cache")
    assert again["built"] is True and again["key"] == bootenv["key"]
    ours = json.loads((tmp_path / "cache" / "bootenv" / "current.json").read_text())
    shared = json.loads((TEST_BOOTENV / "bootenv" / "current.json").read_text())
    assert (ours["initrd_sha256"], ours["kernel_sha256"]) == (shared["initrd_sha256"], shared["kernel_sha256"])


BAD_CACHES = {"a file": "cache", "below a file": "cache/sub"}


@pytest.mark.parametrize("case", list(BAD_CACHES))
def test_a_cache_that_is_not_a_directory_is_bad_input(tmp_path, case):
    (tmp_path / "cache").write_text("not a directory\n")
    proc = run([*ais_command("bootenv", "build", "--cache", str(tmp_path / BAD_CACHES[case]))], check=False,
               timeout=120)
    assert proc.returncode == 2 and "is not a directory" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and (tmp_path / "cache").read_text() == "not a directory\n"


ROUTES = [  # (method, path, headers, status, words in the answer)
    ("GET", f"/v1/boot/ipxe/{MAC}", {}, 200, "ais.host=db01 ais.token=fb9577bf9257dd86cd19d77acdaf07b7"),
    ("GET", f"/v1/boot/ipxe/{MAC.replace(':', '-').upper()}", {}, 200, "initrd --name initrd.img http://"),
    ("GET", "/v1/boot/ipxe/52:54:00:00:00:99", {}, 404, "no HCD has the MAC address 52:54:00:00:00:99"),
    ("GET", "/v1/boot/ipxe/db01", {}, 400, "malformed MAC address"),
    ("GET", f"/v1/boot/ipxe/{MAC}", {"Host": "bad host"}, 400, "Host header"),
    ("GET", "/v1/boot/kernel", {}, 404, "no such boot file"),
    ("POST", "/v1/boot/vmlinuz", {}, 405, "use GET or HEAD"),
    ("HEAD", "/v1/boot/initrd", {}, 200, ""),
    ("GET", "/v1/boot/vmlinuz", {"Range": "bytes=0-3"}, 206, ""),
]


@pytest.mark.parametrize("method, path, headers, status, words", ROUTES, ids=[f"{r[0]} {r[1]} {r[3]}" for r in ROUTES])
def test_boot_routes(lab, method, path, headers, status, words):
    got, answer_headers, body = request(lab["server"], method, path, headers)
    assert got == status, body
    assert words.encode() in body
    if path == "/v1/boot/vmlinuz" and status == 206:
        assert len(body) == 4 and body[:2] == b"MZ"  # a bzImage starts with MZ
        assert answer_headers["ETag"].strip('"') == json.loads(
            (lab["base"] / "cache" / "bootenv" / "current.json").read_text())["kernel_sha256"]


def test_a_server_without_boot_target_or_boot_environment_says_so(lab, tmp_path, repo_dir):
    import shutil

    cache = tmp_path / "cache"
    shutil.copytree(lab["base"] / "cache", cache, symlinks=True, ignore=shutil.ignore_patterns("bootenv"))
    with ServeProcess(lab["base"] / "descriptors", repo_dir, cache, tmp_path / "history.sqlite") as server:
        status, _, body = request(server, "GET", f"/v1/boot/ipxe/{MAC}")
        assert status == 404 and b"start it with --boot-target DEV" in body
        status, _, body = request(server, "GET", "/v1/boot/initrd")
        assert status == 404 and b"no boot environment is built: run `ais bootenv build`" in body


BAD_SERVE_OPTIONS = [
    (["--boot-target", "vda"], "--boot-target: expected a device path"),
    (["--boot-target", "/dev/vda", "--boot-append", "ais.token=x"], "ais.token= is set by the server itself"),
    (["--boot-target", "/dev/vda", "--boot-append", 'a="b c"'], "without quotes"),
]


@pytest.mark.parametrize("options, words", BAD_SERVE_OPTIONS)
def test_bad_boot_options_exit_2(lab, tmp_path, repo_dir, options, words):
    proc = run([*ais_command("serve", "--plain-http", "--descriptors", str(lab["base"] / "descriptors"), "--repo", str(repo_dir),
                             "--cache", str(tmp_path / "cache"), "--history", str(tmp_path / "h.sqlite"),
                             "--listen", "127.0.0.1:0", "--stream-listen", "127.0.0.1:0", "--seconds", "0",
                             *options)], check=False, timeout=60)
    assert proc.returncode == 2 and words in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "cache").exists()


def test_a_vm_boots_from_the_network_reinstalls_its_disk_and_comes_back_up(lab, tmp_path):
    """Firmware PXE -> iPXE -> the script of its MAC from ais serve -> kernel + initramfs -> ais-boot ->
    kexec into the installed disk's own kernel and initramfs -> firstboot reports "up" -> power-off."""
    server = lab["server"]
    port = server.url.rsplit(":", 1)[1]
    disk = blank_disk(tmp_path / "disk.img")
    with Vm(tmp_path / "vm", disk=disk, mac=MAC, netboot=f"http://10.0.2.2:{port}/v1/boot/ipxe/{MAC}",
            timeout=900) as vm:
        code = vm.wait(timeout=960)
        console = vm.console()
    assert code == 0, console[-3000:]  # the installed system powered off (ais.final=poweroff, carried over)
    assert f"Command line: initrd=initrd.img ais.server=http://10.0.2.2:{port} ais.target=/dev/vda ais.host=db01" \
        in console
    for line in ("ais-init: network_up: eth0 has 10.0.2.15", "ais-init: find_server:", "reinstalled db01",
                 "leaving the boot environment (ais.reboot=kexec)", "kexec: loading vmlinuz-",
                 "Command line: root=/dev/vda rw init=/usr/lib/ais/firstboot console=ttyS0 ais.final=poweroff",
                 "firstboot: the installed system is up", 'firstboot: report_up: the server stored "up" for db01',
                 "firstboot: powering off"):
        assert line in console, console[-3000:]
    assert "ais.token=" not in console.split("kexec: loading", 1)[1]  # the installed system's command line is clean
    for route in ("/v1/boot/ipxe/52%3A54%3A00%3A00%3A00%3A06\" 200", "/v1/boot/vmlinuz\" 200",
                  "/v1/boot/initrd\" 200"):
        assert route in server.log()  # what iPXE fetched came from this server
    site = lab["site"]
    hcd = next(h for h in site.hosts if h.name == "db01")
    facts = target_facts(str(disk), [f.path for f in hcd.files])
    assert facts["nevras"] == set(site.configuration(hcd.scd).nevras)
    assert facts["rpm_va"] == "" and facts["fsck_rc"] == 0 and not facts["staging_left"]
    for f in hcd.files:
        content, mode, uid, gid = facts["files"][f.path]
        assert (content, mode, uid, gid) == (f.content, f.mode, 0, 0)
    (ok, report), (rebooting, how), (up, came_up) = history(lab, "db01")[-3:]
    assert ok == "ok" and report["record"] == facts["record"] and facts["record"]["host"] == "db01"
    assert (rebooting, how["phase"]) == ("rebooting", "kexec")
    assert up == "up" and (came_up["image"], came_up["generation"]) == (report["image"], report["generation"])
    assert [p["name"] for p in came_up["phases"]] == ["up"]
    names = [p["name"] for p in report["phases"]]
    assert names[:3] == ["bootenv", "identify", "plan"] and {"image", "install", "files", "verify"} <= set(names)
    assert all(p["start"] <= p["end"] for p in report["phases"])


def test_kexec_refused_by_the_kernel_falls_back_to_the_firmware_and_the_history_says_so(lab, tmp_path):
    """A kernel that forbids kexec (kexec_load_disabled, as locked-down kernels do): after the reinstall
    the machine reboots through its firmware (QEMU's -no-reboot ends it), and the history says why."""
    kernel, initrd, args = boot_files(lab, tmp_path)
    disk = blank_disk(tmp_path / "disk.img")
    with Vm(tmp_path / "vm", disk=disk, mac=MAC, kernel=kernel, initrd=initrd,
            append=f"{args} sysctl.kernel.kexec_load_disabled=1", timeout=900) as vm:
        code = vm.wait(timeout=960)
        console = vm.console()
    assert code == 0, console[-3000:]
    assert "kexec failed:" in console and "; rebooting through the firmware" in console, console[-3000:]
    assert "firstboot:" not in console
    (ok, _), (rebooting, how) = history(lab, "db01")[-2:]
    assert (ok, rebooting, how["phase"]) == ("ok", "rebooting", "firmware")
    assert how["message"].startswith("kexec failed:") and "kexec -l" in how["message"]
    # The machine's next network boot goes to its disk (once), not into another reinstall.
    status, _, script = request(lab["server"], "GET", f"/v1/boot/ipxe/{MAC}")
    assert status == 200 and script.decode().endswith("\nsanboot --no-describe --drive 0x80\n"), script
    status, _, script = request(lab["server"], "GET", f"/v1/boot/ipxe/{MAC}")
    assert status == 200 and b"\nkernel http://" in script


def test_a_disk_too_small_is_refused_in_the_vm_and_the_server_is_told(lab, tmp_path):
    """A failure of ais-boot inside the boot environment reaches the server's history."""
    kernel, initrd, args = boot_files(lab, tmp_path)
    disk = tmp_path / "disk.img"
    with open(disk, "wb") as f:
        f.truncate(16 << 20)  # the image's filesystem needs more
    with Vm(tmp_path / "vm", disk=disk, mac=MAC, kernel=kernel, initrd=initrd, append=args, timeout=600) as vm:
        code = vm.wait(timeout=660)
        console = vm.console()
    assert code == 0, console[-3000:]  # ais.final=poweroff after the failure
    assert "REINSTALL FAILED in phase 'check'" in console and "ais-boot failed with exit code 1" in console
    status, report = history(lab, "db01")[-1]
    assert status == "failed" and report["phase"] == "check" and "use a larger disk" in report["message"]
    with open(disk, "rb") as f:
        assert f.read().count(0) == 16 << 20  # nothing written


def test_a_missing_target_disk_stops_the_boot_and_the_server_is_told(lab, tmp_path):
    """A failure of the init's own steps after the server answered reaches the history too."""
    kernel, initrd, args = boot_files(lab, tmp_path)
    args = args.replace("ais.target=/dev/vda", "ais.target=/dev/vdz")
    disk = blank_disk(tmp_path / "disk.img")
    with Vm(tmp_path / "vm", disk=disk, mac=MAC, kernel=kernel, initrd=initrd, append=args, timeout=600) as vm:
        code = vm.wait(timeout=660)
        console = vm.console()
    assert code == 0, console[-3000:]
    assert "BOOT FAILED in step 'wait_for_target': the target disk /dev/vdz did not appear" in console
    assert "nothing was written to any disk; the server was told" in console
    status, report = history(lab, "db01")[-1]
    assert (status, report["phase"]) == ("failed", "wait_for_target") and "/dev/vdz" in report["message"]
    with open(disk, "rb") as f:
        assert f.read(64 << 20).count(0) == 64 << 20


def test_a_wrong_server_stops_the_boot_with_a_message_and_writes_nothing(lab, tmp_path):
    kernel, initrd, args = boot_files(lab, tmp_path)
    closed = "http://10.0.2.2:9"  # the host's loopback, a port nothing listens on
    args = " ".join(f"ais.server={closed}" if w.startswith("ais.server=") else w for w in args.split())
    disk = blank_disk(tmp_path / "disk.img")
    before = len(history(lab, "db01"))
    with Vm(tmp_path / "vm", disk=disk, mac=MAC, kernel=kernel, initrd=initrd, append=args, timeout=600) as vm:
        code = vm.wait(timeout=660)
        console = vm.console()
    assert code == 0, console[-3000:]  # ais.final=poweroff: the guest powered off
    assert f"BOOT FAILED in step 'find_server': the AIS server {closed} does not answer" in console
    assert "the server could not be told" in console
    assert "run_ais_boot" not in console
    with open(disk, "rb") as f:
        assert f.read(64 << 20).count(0) == 64 << 20  # still all zeros
    assert len(history(lab, "db01")) == before


def test_a_host_the_server_does_not_know_stops_in_plan_with_the_servers_reason(lab, tmp_path):
    """ais.host= names no HCD: the plan step fails with the server's own message on the console; nobody
    to tell (an unknown host has no history), and the disk stays untouched."""
    kernel, initrd, args = boot_files(lab, tmp_path)
    args = args.replace("ais.host=db01", "ais.host=nosuch01")
    disk = blank_disk(tmp_path / "disk.img")
    with Vm(tmp_path / "vm", disk=disk, mac=MAC, kernel=kernel, initrd=initrd, append=args, timeout=600) as vm:
        code = vm.wait(timeout=660)
        console = vm.console()
    assert code == 0, console[-3000:]
    assert "REINSTALL FAILED in phase 'plan'" in console and "unknown host nosuch01" in console, console[-3000:]
    assert history(lab, "nosuch01") == []
    with open(disk, "rb") as f:
        assert f.read(64 << 20).count(0) == 64 << 20


def test_no_dhcp_answer_stops_the_boot_in_network_up(lab, tmp_path):
    """A segment without a DHCP server (a lab bridge with nothing on it but the VM's tap): the init's
    network_up gives up with a banner, nobody can be told, nothing is written."""
    kernel, initrd, args = boot_files(lab, tmp_path)
    disk = blank_disk(tmp_path / "disk.img")
    with NetLab(0, tag="aind", mtu=1500) as segment, \
            Vm(tmp_path / "vm", disk=disk, mac=MAC, kernel=kernel, initrd=initrd, append=args,
               tap=segment.add_tap("tap0"), timeout=600) as vm:
        code = vm.wait(timeout=660)
        console = vm.console()
    assert code == 0, console[-3000:]
    assert "BOOT FAILED in step 'network_up': no address by DHCP on eth0" in console, console[-3000:]
    assert "the server could not be told" in console
    with open(disk, "rb") as f:
        assert f.read(64 << 20).count(0) == 64 << 20
