"""The bootloader step: EXTLINUX on the installed disk, so the firmware can boot it too.

What it does: `install_bootloader(root, target, cmdline)` (the mounted target, the target
device, the boot environment's kernel command line), when the target has a kernel
(`ais.client.reboot.installed_kernel`: the newest /boot/vmlinuz-R and its initrd.img-R),
- runs `extlinux --install ROOT/boot/extlinux`: ldlinux.sys and ldlinux.c32 into that
  directory and EXTLINUX's boot code into the first sector of the filesystem. The demo's
  disk is one ext4 filesystem on the whole disk (no partition table), so that sector is
  the disk's first sector and the BIOS boots it as it is (no MBR needed; checked under
  QEMU's SeaBIOS by tests/integration/test_local_boot.py). A target that is a partition
  gets the partition's boot sector; its disk's MBR is not touched.
- writes ROOT/boot/extlinux/extlinux.conf (`extlinux_conf`): boot that kernel and initrd,
  at once, on the serial console too, with the command line the kexec path uses
  (`ais.client.reboot.kexec_cmdline`: `root=TARGET rw init=/usr/lib/ais/firstboot` plus
  the console=, ais.final=, ais.init=, earlyprintk= words of the boot environment's
  command line). The record step, which always follows, writes that firstboot.
A target without a kernel (a packages-only system for chroot use) gets nothing; the
answer says so. `describe(...)` is what a dry run prints.

Files written are not packaged, so `rpm -Va` does not see them. Host tool: extlinux
(Debian's extlinux; carried by the boot environment).
Reads: ROOT/boot, the command line given. Fails with `ToolError` when extlinux fails and
`ClientError` when the configuration cannot be written. Returns what was installed
(kernel, initrd, append) or None.
"""

from __future__ import annotations

from pathlib import Path

from ais.client.reboot import installed_kernel, kexec_cmdline
from ais.errors import ClientError
from ais.files import write_atomic
from ais.run import run

DIRECTORY = "/boot/extlinux"
CONF = f"{DIRECTORY}/extlinux.conf"


def kernel_of(root: Path) -> tuple[Path, Path | None] | None:
    """The kernel (and initrd) EXTLINUX boots: the one kexec would load; None when there is none."""
    try:
        return installed_kernel(root)
    except ClientError:
        return None


def extlinux_conf(kernel: str, initrd: str | None, append: str) -> str:
    """extlinux.conf booting /boot/KERNEL (+ /boot/INITRD) at once with APPEND."""
    lines = ["# Written by AIS (ais client bootloader): boot the installed system's newest kernel.",
             "SERIAL 0 115200", "DEFAULT ais", "PROMPT 0", "TIMEOUT 0", "", "LABEL ais",
             f"  LINUX /boot/{kernel}",
             *([f"  INITRD /boot/{initrd}"] if initrd else []),
             f"  APPEND {append}"]
    return "\n".join(lines) + "\n"


def describe(root: str, target: str, cmdline: str) -> str:
    """What the step would do (dry run: the target is not mounted, its kernel unknown)."""
    return (f"would install EXTLINUX into the boot sector of {target} (extlinux --install {root}{DIRECTORY}) "
            f"and write {root}{CONF} booting the newest /boot/vmlinuz-R with "
            f"'{kexec_cmdline(target, cmdline)}'; nothing when the target has no kernel")


def install_bootloader(root: str | Path, target: str, cmdline: str) -> dict | None:
    root = Path(root)
    found = kernel_of(root)
    if found is None:
        return None
    kernel, initrd = found
    append = kexec_cmdline(target, cmdline)
    directory = root / DIRECTORY.lstrip("/")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ClientError(f"cannot create {directory}: {err.strerror}") from err
    run(["extlinux", "--install", str(directory)], timeout=300)
    text = extlinux_conf(kernel.name, initrd.name if initrd else None, append)
    try:
        write_atomic(root / CONF.lstrip("/"), text.encode(), 0o644, 0, 0)
    except OSError as err:
        raise ClientError(f"cannot write {root / CONF.lstrip('/')}: {err.strerror}") from err
    return {"kernel": kernel.name, "initrd": initrd.name if initrd else None, "append": append}
