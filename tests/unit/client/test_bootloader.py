"""ais.client.bootloader: which kernel EXTLINUX boots, the extlinux.conf text, a target without a kernel."""

import pytest

from ais.client.bootloader import CONF, describe, extlinux_conf, install_bootloader, kernel_of
from ais.client.reboot import FIRSTBOOT

KERNELS = [  # (files in /boot, the kernel EXTLINUX boots, its initrd), or None: no bootloader
    (["vmlinuz-6.1.0-9-amd64", "vmlinuz-6.1.0-28-amd64", "initrd.img-6.1.0-28-amd64", "initrd.img-6.1.0-9-amd64"],
     ("vmlinuz-6.1.0-28-amd64", "initrd.img-6.1.0-28-amd64")),
    (["vmlinuz-5.10.0-1", "vmlinuz-6.1.0-1", "initrd.img-5.10.0-1"], ("vmlinuz-6.1.0-1", None)),
    (["vmlinuz-6.1.0-57-amd64", "initrd.img-6.1.0-57-amd64", "config-6.1.0-57-amd64"],
     ("vmlinuz-6.1.0-57-amd64", "initrd.img-6.1.0-57-amd64")),
    (["System.map-6.1.0-1", "initrd.img-6.1.0-1"], None),
    ([], None),
]


@pytest.mark.parametrize("files, chosen", KERNELS)
def test_the_kernel_extlinux_boots_is_the_one_kexec_loads(tmp_path, files, chosen):
    (tmp_path / "boot").mkdir()
    for name in files:
        (tmp_path / "boot" / name).write_bytes(b"x")
    found = kernel_of(tmp_path)
    assert (None if found is None else (found[0].name, found[1].name if found[1] else None)) == chosen


def test_a_target_without_boot_gets_no_bootloader_and_nothing_is_written(tmp_path):
    (tmp_path / "usr").mkdir()
    assert install_bootloader(tmp_path, "/dev/vda", "console=ttyS0") is None
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["usr"]


CONFS = [  # (kernel, initrd, append, the lines of extlinux.conf that say what boots)
    ("vmlinuz-6.1.0-57-amd64", "initrd.img-6.1.0-57-amd64", f"root=/dev/vda rw init={FIRSTBOOT} console=ttyS0",
     ["DEFAULT ais", "LABEL ais", "  LINUX /boot/vmlinuz-6.1.0-57-amd64", "  INITRD /boot/initrd.img-6.1.0-57-amd64",
      f"  APPEND root=/dev/vda rw init={FIRSTBOOT} console=ttyS0"]),
    ("vmlinuz-6.1.0-1", None, "root=/dev/sda rw",
     ["DEFAULT ais", "LABEL ais", "  LINUX /boot/vmlinuz-6.1.0-1", "  APPEND root=/dev/sda rw"]),
]


@pytest.mark.parametrize("kernel, initrd, append, lines", CONFS)
def test_extlinux_conf_boots_the_kernel_at_once(kernel, initrd, append, lines):
    text = extlinux_conf(kernel, initrd, append)
    got = text.splitlines()
    assert [line for line in got if line.startswith(("DEFAULT", "LABEL", "  "))] == lines
    assert "TIMEOUT 0" in got and "PROMPT 0" in got and "SERIAL 0 115200" in got  # no menu, no wait
    assert text.endswith("\n") and ("INITRD" in text) == (initrd is not None)


DESCRIPTIONS = [  # (boot environment's command line, words the dry run names)
    ("initrd=initrd.img ais.server=http://10.0.2.2:8 ais.token=SECRET console=ttyS0 ais.final=poweroff",
     f"'root=/dev/vda rw init={FIRSTBOOT} console=ttyS0 ais.final=poweroff'"),
    ("quiet", f"'root=/dev/vda rw init={FIRSTBOOT}'"),
]


@pytest.mark.parametrize("cmdline, words", DESCRIPTIONS)
def test_a_dry_run_says_what_it_would_do_and_never_the_token(tmp_path, cmdline, words):
    text = describe("/run/ais/root", "/dev/vda", cmdline)
    assert "extlinux --install /run/ais/root/boot/extlinux" in text and f"/run/ais/root{CONF}" in text
    assert words in text and "SECRET" not in text
