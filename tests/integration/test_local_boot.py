"""The firmware path ends in the installed system, not in a reinstall loop (QEMU, TCG).

Boot 1: a VM boots from the network (its firmware's iPXE, QEMU's DHCP naming `ais serve`'s
/v1/boot/ipxe/<mac>), reinstalls its blank disk (the bootloader step puts EXTLINUX into the
disk's first sector, which is the whole-disk ext4's own), and with ais.reboot=firmware
reports "rebooting" (phase firmware) and reboots through the firmware: QEMU runs with
-no-reboot, so it ends there. Boot 2: the same VM again, on the same disk, from the network
again: the server answers the local-boot script (sanboot drive 0x80) once, SeaBIOS boots the
disk's EXTLINUX, which starts the installed kernel with init=/usr/lib/ais/firstboot; firstboot
reports "up" and powers off (ais.final=poweroff, carried into extlinux.conf). The history is
ok, rebooting (firmware), up; the next network boot gets the reinstall script again.
Without a VM: the route answers the local boot once per firmware report, and never for a
firmware report from before the server started (it cannot know whether a reinstall began since).
Every QEMU run is bounded by `timeout` and killed when the test ends.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ais.server.history import History
from aislab.disks import target_facts
from aislab.qemu import Vm, blank_disk, boot_site
from aislab.site import ServeProcess, request, stored_reports

MAC = "52:54:00:00:00:06"  # db01's in its HCD
TOKEN = "fb9577bf9257dd86cd19d77acdaf07b7"  # db01's
LOCAL = b"\nsanboot --no-describe --drive 0x80\n"
pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def lab(tmp_path_factory, repo_dir, bootenv):
    base = tmp_path_factory.mktemp("local-boot")
    booting = boot_site(base, repo_dir, ["db"], ["db01"])
    descriptors, cache = booting["descriptors"], booting["cache"]
    with ServeProcess(descriptors, repo_dir, cache, base / "history.sqlite", "--advertise", "10.0.2.2",
                      "--boot-target", "/dev/vda",
                      "--boot-append", "console=ttyS0 ais.final=poweroff ais.reboot=firmware") as server:
        yield {"base": base, "site": booting["site"], "server": server,
               "descriptors": descriptors, "repo": repo_dir, "cache": cache}


def script(server) -> bytes:
    status, _, body = request(server, "GET", f"/v1/boot/ipxe/{MAC}")
    assert status == 200, body
    return body


def post_report(server, body: dict) -> None:
    status, _, answer = request(server, "POST", "/v1/hosts/db01/report",
                                {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
                                json.dumps(body).encode())
    assert status == 201, answer


def test_a_firmware_reboot_is_answered_with_the_local_disk_once(lab, tmp_path):
    history_path = tmp_path / "history.sqlite"
    with ServeProcess(lab["descriptors"], lab["repo"], lab["cache"], history_path, "--boot-target", "/dev/vda") as s:
        assert b"\nkernel http://" in script(s)
        post_report(s, {"status": "ok"})
        post_report(s, {"status": "rebooting", "phase": "kexec", "message": "kexec into the installed system"})
        assert b"\nkernel http://" in script(s)  # kexec: the installed system runs; its next boot reinstalls
        post_report(s, {"status": "rebooting", "phase": "firmware", "message": "ais.reboot=firmware"})
        first, second = script(s), script(s)
        assert first.startswith(b"#!ipxe\n# AIS: db01 ") and first.endswith(LOCAL), first
        assert b"\nkernel http://" in second and LOCAL not in second  # once
        assert s.log().count("boot: db01 gets the local disk") == 1
        post_report(s, {"status": "rebooting", "phase": "firmware", "message": "kexec failed: x"})
        assert script(s).endswith(LOCAL)  # a new firmware report: once more
        post_report(s, {"status": "rebooting", "phase": "firmware", "message": "ais.reboot=firmware"})
        post_report(s, {"status": "up"})
        assert b"\nkernel http://" in script(s)  # up came after it: reinstall


def test_a_firmware_report_from_before_the_server_started_gets_the_reinstall_script(lab, tmp_path):
    history_path = tmp_path / "history.sqlite"
    History(history_path).add("db01", {"status": "rebooting", "phase": "firmware", "message": "ais.reboot=firmware"})
    with ServeProcess(lab["descriptors"], lab["repo"], lab["cache"], history_path, "--boot-target", "/dev/vda") as s:
        assert b"\nkernel http://" in script(s) and "gets the local disk" not in s.log()


def history(lab, host):
    return stored_reports(lab["base"] / "history.sqlite", host)


def network_boot(lab, tmp_path: Path, disk: Path, name: str) -> str:
    """One boot of the VM from the network until QEMU ends (power-off or reboot); its console."""
    port = lab["server"].url.rsplit(":", 1)[1]
    with Vm(tmp_path / name, disk=disk, mac=MAC, netboot=f"http://10.0.2.2:{port}/v1/boot/ipxe/{MAC}",
            timeout=900) as vm:
        code = vm.wait(timeout=960)
        console = vm.console()
    assert code == 0, console[-3000:]
    return console


def test_after_a_firmware_reboot_the_next_network_boot_starts_the_installed_disk(lab, tmp_path):
    disk = blank_disk(tmp_path / "disk.img")

    first = network_boot(lab, tmp_path, disk, "boot1")
    for line in ("reinstalled db01", "bootloader: EXTLINUX boots vmlinuz-",
                 "leaving the boot environment (ais.reboot=firmware)", "reboot: Restarting system"):
        assert line in first, first[-3000:]
    assert "firstboot:" not in first and "kexec:" not in first
    (ok, report), (rebooting, how) = history(lab, "db01")[-2:]
    assert (ok, rebooting, how["phase"], how["message"]) == ("ok", "rebooting", "firmware", "ais.reboot=firmware")
    assert "bootloader" in [p["name"] for p in report["phases"]]

    second = network_boot(lab, tmp_path, disk, "boot2")
    assert "boot: db01 gets the local disk (sanboot drive 0x80)" in lab["server"].log()
    for line in ("SYSLINUX 6.04", "Loading /boot/vmlinuz-", "Loading /boot/initrd.img-",
                 "root=/dev/vda rw init=/usr/lib/ais/firstboot console=ttyS0 ais.final=poweroff",
                 "initrd: mount_root: /dev/vda (ext4, rw)", "firstboot: the installed system is up",
                 'firstboot: report_up: the server stored "up" for db01', "firstboot: powering off"):
        assert line in second, second[-3000:]
    assert "ais-init" not in second and "ais.server=" not in second  # the boot environment did not run
    (ok, report), (rebooting, _), (up, came_up) = history(lab, "db01")[-3:]
    assert (ok, rebooting, up) == ("ok", "rebooting", "up")
    assert (came_up["image"], came_up["generation"]) == (report["image"], report["generation"])

    facts = target_facts(str(disk), [])
    assert facts["record"] == report["record"] and facts["rpm_va"] == "" and facts["fsck_rc"] == 0

    status, _, script = request(lab["server"], "GET", f"/v1/boot/ipxe/{MAC}")  # after "up": reinstall again
    assert status == 200 and b"\nkernel http://" in script and b"sanboot" not in script
