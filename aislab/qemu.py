"""Virtual machines for tests: QEMU under TCG booting a kernel + initramfs, bounded and cleaned up.

What it does: `Vm(workdir, disk=, mac=, kernel=, initrd=, append=)` starts
`timeout -k 5 T qemu-system-x86_64 -accel tcg` (this machine has no usable
KVM) with no default devices, one virtio disk (a raw image file), one virtio
NIC on QEMU's user network (the guest gets 10.0.2.15 by DHCP and reaches the
host's 127.0.0.1 at 10.0.2.2), the serial console into a log file, and
-no-reboot (a guest reboot or power-off ends QEMU). It boots the kernel and
initramfs given, or, with `netboot=URL` instead, boots from the network as a
machine does: the firmware's PXE ROM (iPXE, Debian's ipxe-qemu) asks QEMU's
DHCP, which hands out URL as the boot file, and iPXE fetches and runs the
script there (`ais serve`'s /v1/boot/ipxe/<mac>). With `tap=(namespace, device)`
(NetLab.add_tap) the NIC is that tap on a lab bridge instead, QEMU runs in that
namespace, and without a kernel the VM PXE-boots from whatever DHCP server the
segment has (`dhcp_server`: dnsmasq, as a site would run it). `wait()` waits for QEMU
to end (the guest powered off or rebooted; or `timeout` killed it: exit 124);
`wait_for_console(text)` waits for a line on the console; `close()` kills
QEMU's process group if it still runs. Use it as a context manager.
With `monitor=True` QEMU listens for QMP on the unix socket `qmp.sock` in the
workdir, and `system_reset()` presses the reset button through it. Because of
-no-reboot, QEMU turns that reset into a shutdown and ends (exit 0, without the
guest syncing anything: what the guest wrote to the disk so far stays, what it
still held in its own cache is lost, as at a power cut); the "next boot" is a new
`Vm` on the same disk.
`fetch(url, path)` saves what a server answers (the boot environment from
`ais serve`), `kernel_args_of(ipxe)` the kernel command line of an iPXE script.

Host tools: qemu-system-x86_64 (Debian qemu-system-x86), timeout (coreutils).
Fails with `WorldError` when QEMU cannot start or a wait runs out (with the
console's tail). Returns exit codes and console text.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

from ais.errors import WorldError
from ais.run import run, start

QEMU = "qemu-system-x86_64"
TEST_BOOTENV = Path(__file__).resolve().parents[1] / "build" / "test-bootenv"  # kept: rebuilt when inputs change


def build_bootenv(cache: Path) -> dict:
    """`ais bootenv build --cache CACHE --json`, run as the real command; its JSON answer."""
    import json

    from aislab.net import ais_command

    proc = run([*ais_command("bootenv", "build", "--cache", str(cache), "--json")], check=False, timeout=1200)
    if proc.returncode != 0:
        raise WorldError(f"ais bootenv build failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout)


class Vm:
    def __init__(self, workdir: Path, *, disk: Path, mac: str = "52:54:00:12:34:56", kernel: Path | None = None,
                 initrd: Path | None = None, append: str = "", netboot: str | None = None,
                 memory_mib: int = 1024, timeout: float = 300.0, machine: str = "pc",
                 tap: tuple[str, str] | None = None, monitor: bool = False):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.console_path = self.workdir / "console.log"
        self.console_path.write_bytes(b"")
        self.qmp_path = self.workdir / "qmp.sock" if monitor else None
        if self.qmp_path and len(os.fsencode(self.qmp_path)) > 107:
            raise WorldError(f"the QMP socket path {self.qmp_path} is too long for a unix socket")
        inside = ["ip", "netns", "exec", tap[0]] if tap else []
        self.argv = [*inside, "timeout", "-k", "5", str(int(timeout)), QEMU, "-accel", "tcg", "-M", machine,
                     "-m", str(memory_mib), "-smp", "1", "-nodefaults", "-no-reboot", "-display", "none",
                     "-monitor", "none", "-serial", f"file:{self.console_path}",
                     *(["-qmp", f"unix:{self.qmp_path},server=on,wait=off"] if self.qmp_path else []),
                     *self._boot(kernel, initrd, append, netboot, tap),
                     "-drive", f"file={disk},format=raw,if=virtio",
                     "-device", f"virtio-net-pci,netdev=n0,mac={mac}"]
        self._log = open(self.workdir / "qemu.log", "wb")
        self.started = time.monotonic()
        self.proc = start(self.argv, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
                          start_new_session=True)

    @staticmethod
    def _boot(kernel, initrd, append: str, netboot: str | None, tap: tuple[str, str] | None) -> list[str]:
        netdev = ["-netdev", f"tap,id=n0,ifname={tap[1]},script=no,downscript=no"] if tap else []
        if netboot is not None:
            if "," in netboot or kernel or initrd or tap:
                raise WorldError("netboot= is a URL without commas, on QEMU's user network: no kernel=, "
                                 "initrd= or tap=")
            return ["-boot", "n", "-netdev", f"user,id=n0,bootfile={netboot}"]
        if tap and not (kernel or initrd):
            return ["-boot", "n", *netdev]  # PXE: the segment's DHCP server names the boot file
        if not (kernel and initrd):
            raise WorldError("a VM boots a kernel and an initramfs, or from the network (netboot=URL, or tap=)")
        return ["-kernel", str(kernel), "-initrd", str(initrd), "-append", append, *(netdev or ["-netdev", "user,id=n0"])]

    def console(self) -> str:
        return self.console_path.read_text(errors="replace")

    def wait(self, timeout: float) -> int:
        """QEMU's exit code (0 after a guest power-off or reboot; 124 when `timeout` killed it)."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired as err:
            raise WorldError(f"the VM still runs after {timeout:.0f} s; console:\n{self.console()[-3000:]}") from err

    def wait_for_console(self, text: str, timeout: float) -> float:
        """Seconds since start when `text` appeared on the console; WorldError if QEMU ended or time ran out."""
        deadline = time.monotonic() + timeout
        while text not in self.console():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise WorldError(f"{text!r} did not appear on the VM's console (QEMU exit {self.proc.poll()}); "
                                 f"console:\n{self.console()[-3000:]}")
            time.sleep(0.2)
        return time.monotonic() - self.started

    def system_reset(self, timeout: float = 30.0) -> None:
        """The reset button, by QMP (needs monitor=True). With -no-reboot QEMU then ends (see above)."""
        if self.qmp_path is None:
            raise WorldError("system_reset needs a VM started with monitor=True")
        try:
            answer = self._qmp("system_reset", timeout)
        except (WorldError, OSError):
            if self.proc.poll() is None:
                raise
            return  # QEMU ended before its answer reached us: the reset happened
        if "return" not in answer:
            raise WorldError(f"QEMU refused system_reset: {answer}")

    def _qmp(self, command: str, timeout: float) -> dict:
        """One QMP command on a fresh connection: greeting, qmp_capabilities, the command; its answer."""
        deadline = time.monotonic() + timeout
        while not self.qmp_path.exists():  # QEMU makes the socket while it starts
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise WorldError(f"QEMU's QMP socket {self.qmp_path} did not appear (QEMU exit {self.proc.poll()})")
            time.sleep(0.05)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(self.qmp_path))
            replies = sock.makefile("rb")
            self._qmp_answer(replies, greeting=True)
            for name in ("qmp_capabilities", command):
                sock.sendall(json.dumps({"execute": name}).encode() + b"\n")
                answer = self._qmp_answer(replies)
            return answer

    @staticmethod
    def _qmp_answer(replies, greeting: bool = False) -> dict:
        """The next QMP message that is not an event (the greeting, or a command's answer)."""
        while line := replies.readline():
            message = json.loads(line)
            if "event" not in message and (greeting or "QMP" not in message):
                return message
        raise WorldError("QEMU closed its QMP socket")

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=30)
        self._log.close()

    def __enter__(self) -> "Vm":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def blank_disk(path: Path, mib: int = 1024) -> Path:
    """A new sparse raw disk of mib MiB at path (all zeros; an old file there is replaced)."""
    Path(path).unlink(missing_ok=True)
    with open(path, "wb") as f:
        f.truncate(mib << 20)
    return Path(path)


def boot_site(base: Path, repo: Path, scds: list[str], hosts: list[str]) -> dict:
    """A demo site for booting VMs under base/: these SCDs and hosts of descriptors/, a cache serving
    each configuration from its base image plus remainder (a fixed cost model), and the boot
    environment of TEST_BOOTENV linked in, as `ais serve --boot-target` serves it. Returns
    {descriptors, cache, manifest, site}."""
    from ais.cost import CostModel, save_calibration
    from ais.descriptors import load_site
    from aislab.site import ROOT, publish_base_cache, subset_descriptors

    descriptors = subset_descriptors(ROOT / "descriptors", base / "descriptors", scds, hosts)
    cost = base / "cost.json"
    save_calibration(CostModel(image_fixed_s=0.1, stream_bytes_per_s=300e6), cost)
    cache = base / "cache"
    manifest = publish_base_cache(descriptors, repo, cache, cost=cost)
    (cache / "bootenv").symlink_to(TEST_BOOTENV / "bootenv")  # the server serves what the build published
    return {"descriptors": descriptors, "cache": cache, "manifest": manifest, "site": load_site(descriptors, repo)}


def dhcp_server(lab, i: int, boot_url: str, leases: Path, first: int = 100, last: int = 199):
    """dnsmasq in host i of a NetLab: DHCP only (no DNS), addresses .first-.last of the lab's subnet,
    and for iPXE clients (DHCP option 175) the boot file boot_url (iPXE expands ${mac} in it).
    Its log (every DHCP exchange) goes to its stderr; the lab stops it on close."""
    from aislab.net import SUBNET

    argv = ["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--port=0", "--no-resolv", "--no-hosts",
            "--user=root", "--group=root", "--pid-file=", "--log-facility=-", "--log-dhcp",
            "--interface=eth0", "--bind-interfaces", f"--dhcp-leasefile={leases}",
            f"--dhcp-range={SUBNET}.{first},{SUBNET}.{last},255.255.255.0,1h",
            "--dhcp-match=set:ipxe,175", f"--dhcp-boot=tag:ipxe,{boot_url}"]
    return lab.spawn(i, argv)


def fetch(url: str, path: Path, timeout: float = 60.0) -> Path:
    with urllib.request.urlopen(url, timeout=timeout) as answer, open(path, "wb") as out:
        while chunk := answer.read(1 << 20):
            out.write(chunk)
    return path


def kernel_args_of(ipxe: str) -> str:
    """The kernel command line of an iPXE script's `kernel URL ARGS...` line, without iPXE's initrd=."""
    for line in ipxe.splitlines():
        words = line.split()
        if words[:1] == ["kernel"]:
            return " ".join(w for w in words[2:] if not w.startswith("initrd="))
    raise WorldError(f"no kernel line in the iPXE script:\n{ipxe}")
