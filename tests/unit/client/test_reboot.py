"""ais.client.reboot: which kernel kexec loads, its command line, and the firstboot settings."""

import shlex
import subprocess
from pathlib import Path

import pytest

from ais.client import reboot
from ais.client.reboot import (
    FIRSTBOOT,
    FIRSTBOOT_CA,
    FIRSTBOOT_CONF,
    check_record,
    installed_kernel,
    kexec_cmdline,
    leave,
    write_firstboot,
)
from ais.client.session import Session
from ais.errors import ClientError
from ais.run import run

KERNELS = [  # (files in /boot, the kernel chosen, its initrd or None)
    (["vmlinuz-6.1.0-9-amd64", "vmlinuz-6.1.0-28-amd64", "initrd.img-6.1.0-28-amd64"],
     "vmlinuz-6.1.0-28-amd64", "initrd.img-6.1.0-28-amd64"),
    (["vmlinuz-5.10.0-1", "vmlinuz-6.1.0-1", "initrd.img-5.10.0-1"], "vmlinuz-6.1.0-1", None),
    (["vmlinuz-6.1.0-rc2", "vmlinuz-6.1.0-1"], "vmlinuz-6.1.0-rc2", None),
    (["System.map-6.1.0-1", "vmlinuz-6.1.0-1"], "vmlinuz-6.1.0-1", None),
]


@pytest.mark.parametrize("files, kernel, initrd", KERNELS)
def test_the_newest_kernel_and_its_own_initrd(tmp_path, files, kernel, initrd):
    (tmp_path / "boot").mkdir()
    for name in files:
        (tmp_path / "boot" / name).write_bytes(b"x")
    got_kernel, got_initrd = installed_kernel(tmp_path)
    assert got_kernel.name == kernel
    assert (got_initrd.name if got_initrd else None) == initrd


def test_no_kernel_on_the_disk_is_said(tmp_path):
    (tmp_path / "boot").mkdir()
    with pytest.raises(ClientError, match="the installed system has no kernel"):
        installed_kernel(tmp_path)


CMDLINES = [
    ("initrd=initrd.img ais.server=http://10.0.2.2:8 ais.token=SECRET console=ttyS0 ais.final=poweroff quiet",
     f"root=/dev/vda rw init={FIRSTBOOT} console=ttyS0 ais.final=poweroff"),
    ("BOOT_IMAGE=/vmlinuz console=tty0 console=ttyS0,115200 ais.init=/bin/sh",
     f"root=/dev/vda rw init={FIRSTBOOT} console=tty0 console=ttyS0,115200 ais.init=/bin/sh"),
    ("", f"root=/dev/vda rw init={FIRSTBOOT}"),
]


@pytest.mark.parametrize("current, expected", CMDLINES)
def test_the_installed_system_gets_its_root_firstboot_and_console_but_never_the_token(current, expected):
    assert kexec_cmdline("/dev/vda", current) == expected
    assert "SECRET" not in kexec_cmdline("/dev/vda", current)


def session(tmp_path, **plan) -> Session:
    return Session(state_dir=str(tmp_path / "state"), server="http://10.0.2.2:8080", token="t0k'en",
                   target="/dev/vda", plan={"host": "db 01", "generation": 7, "image": {"id": "img-1"}, **plan})


@pytest.mark.parametrize("plan, image, generation", [({}, '"img-1"', "7"),
                                                      ({"image": None, "generation": None}, "null", "null")])
def test_firstboot_settings_are_quoted_shell_and_private(tmp_path, plan, image, generation):
    root = tmp_path / "root"
    write_firstboot(str(root), session(tmp_path, **plan))
    conf = root / FIRSTBOOT_CONF.lstrip("/")
    assert conf.stat().st_mode & 0o777 == 0o600
    assert (root / FIRSTBOOT.lstrip("/")).stat().st_mode & 0o777 == 0o755
    assert settings(conf) == f"db 01|db%2001|t0k'en|http|http://10.0.2.2:8080|10.0.2.2|8080||{image}|{generation}|"
    assert not (root / FIRSTBOOT_CA.lstrip("/")).exists()  # no site CA in this session: none to copy


def settings(conf) -> str:
    script = f". {shlex.quote(str(conf))}; printf '%s|' \"$HOST\" \"$HOST_PATH\" \"$TOKEN\" \"$SERVER_SCHEME\" " \
             "\"$SERVER_URL\" \"$SERVER_ADDRESS\" \"$SERVER_PORT\" \"$SITE_CA\" \"$IMAGE_JSON\" \"$GENERATION_JSON\""
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True).stdout


@pytest.mark.parametrize("server, url, port", [("https://10.0.2.2:8443", "https://10.0.2.2:8443", "8443"),
                                               ("https://ais.example", "https://ais.example:443", "443")])
def test_an_https_session_gives_the_installed_system_its_site_ca(tmp_path, server, url, port):
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nthe site CA\n-----END CERTIFICATE-----\n")
    s = session(tmp_path)
    s.server, s.site_ca = server, str(ca)
    root = tmp_path / "root"
    write_firstboot(str(root), s)
    copied = root / FIRSTBOOT_CA.lstrip("/")
    assert copied.read_bytes() == ca.read_bytes() and copied.stat().st_mode & 0o777 == 0o644
    conf = root / FIRSTBOOT_CONF.lstrip("/")
    assert conf.stat().st_mode & 0o777 == 0o600  # the token stays private
    host = url.split("://")[1].rsplit(":", 1)[0]
    assert settings(conf) == f"db 01|db%2001|t0k'en|https|{url}|{host}|{port}|{FIRSTBOOT_CA}|\"img-1\"|7|"


def test_a_site_ca_that_cannot_be_read_fails_the_record_step_by_name(tmp_path):
    s = session(tmp_path)
    s.server, s.site_ca = "https://10.0.2.2:8443", str(tmp_path / "gone.pem")
    with pytest.raises(ClientError, match="cannot copy the site CA .*gone.pem into the installed system"):
        write_firstboot(str(tmp_path / "root"), s)


def test_the_firstboot_script_is_posix_sh_and_shellcheck_clean():
    run(["shellcheck", "-s", "sh", str(Path(reboot.__file__).with_name("firstboot.sh"))])


def test_an_unknown_mode_is_refused_before_anything(tmp_path):
    with pytest.raises(ClientError, match="ais.reboot must be one of kexec, firmware, no"):
        leave(session(tmp_path), None, "halt")


RECORDS = {  # what the disk holds at /var/lib/ais/install.json -> refused?
    "the record this reinstall wrote": ('{"host": "db01", "written_at": 1.5}', False),
    "no record (a reinstall cut short before the record step)": (None, True),
    "another reinstall's record (the disk's previous system)": ('{"host": "db01", "written_at": 0.5}', True),
    "a torn record": ('{"host": "db0', True),
}


@pytest.mark.parametrize("case", list(RECORDS))
def test_kexec_starts_only_the_disk_whose_record_this_reinstall_wrote(tmp_path, case):
    text, refused = RECORDS[case]
    if text is not None:
        (tmp_path / "var/lib/ais").mkdir(parents=True)
        (tmp_path / "var/lib/ais/install.json").write_text(text)
    s = session(tmp_path)
    s.results["record"] = {"host": "db01", "written_at": 1.5}
    if refused:
        with pytest.raises(ClientError, match="is not the record this reinstall wrote: not starting it"):
            check_record(tmp_path, s)
    else:
        check_record(tmp_path, s)
