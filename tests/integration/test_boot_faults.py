"""Faults at boot: a QEMU virtual machine (TCG) reinstalls its disk while the world goes wrong.

Each test boots AIS's boot environment (kernel + initramfs given to QEMU directly, with the
kernel command line a real `ais serve` hands out for db01's MAC, plus ais.reboot=firmware)
against its own real `ais serve` (its own history) over the module's cache, breaks
something at a moment it sees happen (a line on the VM's console, a request in the
server's log), and checks what follows:
- the VM is reset (QMP `system_reset`) in the middle of the image, and in the middle of
  the RPM transaction: the interrupted attempt leaves no report in the history (the server
  only saw it ask for its plan and its files); the next boot on the same disk (a new QEMU:
  with -no-reboot, QEMU ends at a reset, which is what a power cycle does to a disk)
  reinstalls it cleanly;
- the server is down when the VM boots: the init's find_server retries; the server is
  started on the port the VM was told once the first retry shows on the console; the
  reinstall succeeds;
- the server stops answering mid-image (SIGSTOP): the stream's socket times out, the
  client says so and retries with back-off; once that shows on the console the server
  goes on (SIGCONT) and the reinstall succeeds;
- the server dies mid-image and stays away: the client gives up after its bounded retries,
  the console says the machine is NOT reinstalled and the server could not be told, and
  nothing is reported as a success.
A clean reinstall is: exactly the SCD's packages (rpm -qa), `rpm -Va` empty, e2fsck -fn
clean, no staging left, the history's "ok" report carrying the record found on the disk,
then "rebooting" (firmware).

Why an interrupted reinstall never boots into a half-written system: the boot environment
is what the machine boots (the server hands it out at every network boot but the one right
after a "rebooting" (firmware) report this server received, which follows the "ok" report;
the disk's own EXTLINUX is written late, by the bootloader step after verify), and the boot
environment enters the installed system only
by `ais client reboot` (kexec), which ais-boot runs only after every step passed: image,
install, files, verify, the install record, unmount, e2fsck -fn and the "ok" report; and
kexec itself refuses a disk whose /var/lib/ais/install.json is not the record this
reinstall wrote (ais.client.reboot.check_record, tests/unit/client/test_reboot.py). A
reset anywhere before that leaves the disk to the next network boot, which reinstalls it
whole (the image is written from its first chunk again: the client keeps no progress
journal on a block device). The tests here run with ais.reboot=firmware, so a success
ends QEMU. Every QEMU run is bounded by `timeout` and killed when its
test ends; every wait is bounded.
"""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

import pytest

from aislab.disks import target_facts
from aislab.qemu import Vm, blank_disk, boot_site, fetch, kernel_args_of
from aislab.site import ServeProcess, request, stored_reports

MAC = "52:54:00:00:00:06"  # db01's in its HCD
BOOT_S = 900  # one VM run, at most
pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def lab(tmp_path_factory, repo_dir, bootenv):
    """db01's cache (base image + remainder, so the install step runs rpm), the boot environment's files."""
    base = tmp_path_factory.mktemp("faults")
    booting = boot_site(base, repo_dir, ["db"], ["db01"])
    lab = {"base": base, "descriptors": booting["descriptors"], "repo": repo_dir, "cache": booting["cache"],
           "site": booting["site"], "kernel": base / "vmlinuz", "initrd": base / "initrd.img"}
    with serve(lab, base / "first") as server:
        fetch(f"{server.url}/v1/boot/vmlinuz", lab["kernel"])
        fetch(f"{server.url}/v1/boot/initrd", lab["initrd"])
    return lab


def serve(lab, workdir: Path, *extra: str) -> ServeProcess:
    """A real `ais serve` over the module's cache with its own history (workdir/history.sqlite)."""
    workdir.mkdir(parents=True, exist_ok=True)
    return ServeProcess(lab["descriptors"], lab["repo"], lab["cache"], workdir / "history.sqlite",
                        "--advertise", "10.0.2.2", "--boot-target", "/dev/vda",
                        "--boot-append", "console=ttyS0 ais.final=poweroff", *extra)


def port_of(server: ServeProcess) -> int:
    return int(server.url.rsplit(":", 1)[1])


def kernel_args(server: ServeProcess, port: int | None = None) -> str:
    """db01's kernel command line as the server hands it out, naming the server as the VM reaches it
    (10.0.2.2, on `port` if given), with ais.reboot=firmware: after a reinstall QEMU ends."""
    status, _, script = request(server, "GET", f"/v1/boot/ipxe/{MAC}")
    assert status == 200, script
    own = port_of(server)
    return (kernel_args_of(script.decode()).replace(f"127.0.0.1:{own}", f"10.0.2.2:{port or own}")
            + " ais.reboot=firmware")


def boot(lab, workdir: Path, disk: Path, args: str, *, monitor: bool = False) -> Vm:
    return Vm(workdir, disk=disk, mac=MAC, kernel=lab["kernel"], initrd=lab["initrd"], append=args,
              timeout=BOOT_S, monitor=monitor)


def history(path: Path, host: str = "db01") -> list[tuple[str, dict]]:
    return stored_reports(path, host)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def finish(vm: Vm) -> str:
    """Wait for the VM to end by itself (power-off or firmware reboot); its console."""
    code = vm.wait(timeout=BOOT_S + 60)
    console = vm.console()
    assert code == 0, console[-3000:]
    return console


def assert_reinstalled_cleanly(lab, disk: Path, console: str, history_path: Path) -> dict:
    """The disk holds exactly db01's configuration, checked, and the history's last reports say so."""
    assert "reinstalled db01" in console and "leaving the boot environment (ais.reboot=firmware)" in console, \
        console[-3000:]
    site = lab["site"]
    hcd = next(h for h in site.hosts if h.name == "db01")
    facts = target_facts(str(disk), [f.path for f in hcd.files])
    assert facts["nevras"] == set(site.configuration(hcd.scd).nevras)
    assert facts["rpm_va"] == "" and facts["fsck_rc"] == 0 and not facts["staging_left"]
    for f in hcd.files:
        assert facts["files"][f.path][:2] == (f.content, f.mode)
    (ok, report), (rebooting, how) = history(history_path)[-2:]
    assert ok == "ok" and report["record"] == facts["record"] and facts["record"]["host"] == "db01"
    assert (rebooting, how["phase"]) == ("rebooting", "firmware")
    return report


def plan_requests(server: ServeProcess) -> int:
    return server.log().count("GET /v1/hosts/db01/plan")


# ------------------------------------------------------------------ resets

# On the kernel command line, words with "=" and no dot are the environment of /init and so of
# every `ais client` step: this pauses the image step after its first chunk (ais/faults.py),
# and the step says so on the console.
PAUSE_AFTER_FIRST_CHUNK = "AIS_TEST_PAUSE_AT=image-first-chunk"
PAUSED_IN_IMAGE = "pause point image-first-chunk: pid"
IN_RPM = "[ais] rpm: installing 3 packages in one transaction"


def reset_at(lab, workdir: Path, disk: Path, args: str, line: str) -> str:
    """Boot, press reset as soon as `line` shows on the console, return the console."""
    with boot(lab, workdir, disk, args, monitor=True) as vm:
        vm.wait_for_console(line, timeout=BOOT_S)
        vm.system_reset()
        assert vm.wait(timeout=60) == 0  # -no-reboot: QEMU ends at the reset
        return vm.console()


def test_a_reset_in_the_middle_of_the_image_is_reinstalled_cleanly_at_the_next_boot(lab, tmp_path):
    disk = blank_disk(tmp_path / "disk.img")
    history_path = tmp_path / "server" / "history.sqlite"
    with serve(lab, tmp_path / "server") as server:
        args = kernel_args(server)
        console = reset_at(lab, tmp_path / "vm1", disk, f"{args} {PAUSE_AFTER_FIRST_CHUNK}", PAUSED_IN_IMAGE)
        image_started = console.split("[ais] image: ", 1)[1]
        assert PAUSED_IN_IMAGE in image_started and " done in " not in image_started, console[-3000:]
        assert history(history_path) == [] and plan_requests(server) == 1  # it asked, and reported nothing

        with boot(lab, tmp_path / "vm2", disk, args) as vm:
            console = finish(vm)
        assert_reinstalled_cleanly(lab, disk, console, history_path)
        assert [status for status, _ in history(history_path)] == ["ok", "rebooting"]
        assert plan_requests(server) == 2


def test_a_reset_in_the_middle_of_the_rpm_transaction_is_reinstalled_cleanly_at_the_next_boot(lab, tmp_path):
    """db01 is served from its base image plus a remainder of 3 RPMs: the install step runs rpm. The reset
    comes as soon as the client says rpm starts; the console then shows the install step never finished."""
    disk = blank_disk(tmp_path / "disk.img")
    history_path = tmp_path / "server" / "history.sqlite"
    with serve(lab, tmp_path / "server") as server:
        args = kernel_args(server)
        console = reset_at(lab, tmp_path / "vm1", disk, args, IN_RPM)
        after = console.split(IN_RPM, 1)[1]
        assert "[ais] image: " in console and "install: 3 RPMs, one transaction done" not in after, console[-3000:]
        assert history(history_path) == [] and plan_requests(server) == 1

        with boot(lab, tmp_path / "vm2", disk, args) as vm:
            console = finish(vm)
        report = assert_reinstalled_cleanly(lab, disk, console, history_path)
        assert len(report["record"]["remainder"]) == 3
        assert [status for status, _ in history(history_path)] == ["ok", "rebooting"]


# ------------------------------------------------------------------ the server


def test_a_server_down_when_the_vm_boots_is_waited_for_and_the_reinstall_succeeds(lab, tmp_path):
    """The init's find_server retries (10 x 2 s); the server comes up on the port the VM was told once the
    first retry is on the console."""
    port = free_port()
    with serve(lab, tmp_path / "probe") as probe:
        args = kernel_args(probe, port)  # the command line of db01, naming a port where nothing listens yet
    disk = blank_disk(tmp_path / "disk.img")
    history_path = tmp_path / "server" / "history.sqlite"
    with boot(lab, tmp_path / "vm", disk, args) as vm:
        vm.wait_for_console(f"find_server: http://10.0.2.2:{port} does not answer yet (try 1 of 10)",
                            timeout=BOOT_S)
        with serve(lab, tmp_path / "server", "--listen", f"127.0.0.1:{port}") as server:
            assert port_of(server) == port
            console = finish(vm)
    assert f"find_server: http://10.0.2.2:{port} answers" in console
    assert_reinstalled_cleanly(lab, disk, console, history_path)


def test_a_server_that_stops_answering_mid_image_is_retried_and_the_reinstall_succeeds(lab, tmp_path):
    """SIGSTOP while the client holds its first chunk: its stream connection times out (30 s), it says so
    and reconnects with back-off; once that is on the console the server goes on (SIGCONT)."""
    disk = blank_disk(tmp_path / "disk.img")
    history_path = tmp_path / "server" / "history.sqlite"
    with serve(lab, tmp_path / "server") as server:
        args = f"{kernel_args(server)} {PAUSE_AFTER_FIRST_CHUNK} AIS_TEST_PAUSE_SECONDS=1"
        with boot(lab, tmp_path / "vm", disk, args) as vm:
            vm.wait_for_console(PAUSED_IN_IMAGE, timeout=BOOT_S)
            os.kill(server.proc.pid, signal.SIGSTOP)
            try:
                vm.wait_for_console("failed (timed out); retrying in", timeout=300)
            finally:
                os.kill(server.proc.pid, signal.SIGCONT)
            console = finish(vm)
    assert_reinstalled_cleanly(lab, disk, console, history_path)


def test_a_server_that_dies_mid_image_makes_the_client_give_up_and_nothing_is_reported_ok(lab, tmp_path):
    """SIGKILL while the client holds its first chunk, and no server again: the stream's bounded retries
    run out, the image step fails, the console says the machine is NOT reinstalled and that the server
    could not be told, and nothing is reported as a success."""
    disk = blank_disk(tmp_path / "disk.img")
    history_path = tmp_path / "server" / "history.sqlite"
    with serve(lab, tmp_path / "server") as server:
        args = f"{kernel_args(server)} {PAUSE_AFTER_FIRST_CHUNK} AIS_TEST_PAUSE_SECONDS=1"
        with boot(lab, tmp_path / "vm", disk, args) as vm:
            vm.wait_for_console(PAUSED_IN_IMAGE, timeout=BOOT_S)
            server.kill()
            console = finish(vm)  # ais.final=poweroff after the failure
    assert "gave up after 6 attempts" in console, console[-3000:]
    assert "REINSTALL FAILED in phase 'image'" in console and "could NOT tell the server" in console
    assert "this machine is NOT reinstalled" in console and "leaving the boot environment" not in console
    assert history(history_path) == []
