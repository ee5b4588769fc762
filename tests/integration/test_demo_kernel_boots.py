"""The demo site's kernel boots a root disk: QEMU (TCG) runs its vmlinuz and initramfs on a small ext4 disk.

The kernel and initramfs are aislab.demo_kernel's (what packages/kernel.spec ships
as /boot/vmlinuz-R and /boot/initrd.img-R). The disk is a real ext4 image made by
mke2fs -d from a tree holding the host's static busybox and init scripts that print
a marker read from the disk, the PID they run as and whether / is writable, then
power off. Faults: a root device that does not exist and an init the disk does not
hold end in the initramfs's `initrd: FAILED` banner and a power-off
(ais.final=poweroff). Every QEMU run is bounded by `timeout` and killed when the test ends.
"""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path

import pytest

from ais.run import run
from aislab.qemu import Vm

pytestmark = pytest.mark.root
BOOT_S = 240  # a TCG boot takes 10-20 s; the bound only ends a VM that hangs

INIT = """#!/bin/sh
PATH=/bin
if touch /written 2>/dev/null; then rw=yes; else rw=no; fi
echo "DEMO-ROOT-UP {name} $(cat /etc/marker) pid=$$ rw=$rw"
poweroff -f
"""


def root_disk(base: Path, marker: str) -> Path:
    """An ext4 image labelled demo-root: busybox, /sbin/init and /sbin/other-init, /etc/marker."""
    tree = base / "tree"
    for d in ("bin", "sbin", "etc", "dev", "proc", "sys"):
        (tree / d).mkdir(parents=True)
    shutil.copyfile("/bin/busybox", tree / "bin" / "busybox")
    os.chmod(tree / "bin" / "busybox", 0o755)
    for applet in ("sh", "echo", "cat", "touch", "poweroff"):
        os.symlink("busybox", tree / "bin" / applet)
    for name in ("init", "other-init"):
        (tree / "sbin" / name).write_text(INIT.format(name=name))
        os.chmod(tree / "sbin" / name, 0o755)
    (tree / "etc" / "marker").write_text(f"{marker}\n")
    disk = base / "disk.img"
    run(["mke2fs", "-q", "-t", "ext4", "-b", "4096", "-L", "demo-root", "-d", str(tree), str(disk), "32M"])
    return disk


def boot(demo_kernel, base: Path, disk: Path, append: str) -> str:
    """The console of one boot, which must end by the guest's power-off (QEMU exits 0)."""
    with Vm(base / "vm", disk=disk, kernel=demo_kernel.kernel, initrd=demo_kernel.initrd,
            append=f"console=ttyS0 ais.final=poweroff {append}", memory_mib=512, timeout=BOOT_S) as vm:
        code = vm.wait(timeout=BOOT_S + 30)
        console = vm.console()
    assert code == 0, console[-3000:]  # 124 would be `timeout` killing a VM that hung
    return console


BOOTS = {
    "root=/dev/vda rw, the default init": ("root=/dev/vda rw", "init", "yes"),
    "root=LABEL=, ro, init=": ("root=LABEL=demo-root ro init=/sbin/other-init", "other-init", "no"),
}


@pytest.mark.parametrize("case", list(BOOTS))
def test_the_initramfs_mounts_the_root_disk_and_runs_its_init(demo_kernel, tmp_path, case):
    append, init, rw = BOOTS[case]
    marker = secrets.token_hex(8)
    console = boot(demo_kernel, tmp_path, root_disk(tmp_path, marker), append)
    assert f"DEMO-ROOT-UP {init} {marker} pid=1 rw={rw}" in console, console[-3000:]
    assert f"initrd: kernel {demo_kernel.release}" in console
    assert "initrd: FAILED" not in console
    run(["e2fsck", "-fn", str(tmp_path / "disk.img")])  # the disk was left consistent


FAULTS = {
    "a root device that does not exist": ("root=/dev/vdz rw", "the root device /dev/vdz did not appear"),
    "no root= at all": ("rw", "no root= on the kernel command line"),
    "an init the disk does not hold": ("root=/dev/vda rw init=/sbin/nothing",
                                       "the root filesystem on /dev/vda has no /sbin/nothing"),
}


@pytest.mark.parametrize("case", list(FAULTS))
def test_a_failure_prints_the_banner_and_powers_off(demo_kernel, tmp_path, case):
    append, why = FAULTS[case]
    console = boot(demo_kernel, tmp_path, root_disk(tmp_path, "unused"), append)
    assert f"initrd: FAILED: {why}" in console, console[-3000:]
    assert "initrd: powering off (ais.final=poweroff)" in console
    assert "DEMO-ROOT-UP" not in console and "switch_root" not in console
