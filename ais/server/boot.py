"""The boot routes of `ais serve`: the boot environment's kernel and initramfs, and an iPXE script per MAC.

What it does: `boot_file(cache, name)` finds the kernel ("vmlinuz") or the
initramfs ("initrd") of the boot environment CACHE/bootenv/current.json names
(`ais bootenv build` writes it; ais.contracts.BootEnvironment), with its
sha256 for the ETag. `ipxe_script(env, host, boot_url, server_url, target, append)` writes
the iPXE script that boots a host into it: the kernel command line carries
the server, the target disk, the host's name and its token (docs/client.md,
"The boot environment", says who can read it).

After a reinstall that left the boot environment through the firmware (the host's
newest report is "rebooting" with phase "firmware"), the host's next network boot must
not reinstall it again (an endless loop): `local_boot_report(reports, answered)` finds
that report when it has not been answered yet (one-shot: reports up to the id
`answered` are answered; the server starts with the newest id of its history, so a report
from before it started is never answered: after a restart it cannot know whether a
reinstall began since), and `local_boot_script(host, report)`
is the iPXE script that boots the first BIOS disk instead (its EXTLINUX, written by the
client's bootloader step). A later report ("up" from the installed system, or any
other) or a second request after the same report gets the reinstall script again: AIS
reinstalls on every boot but the one right after a firmware reboot.

Reads: CACHE/bootenv/current.json and the files it names. Fails with
`LookupError` (no boot environment built, or a file of it missing: the
route answers 404 saying so). Returns paths and text.
"""

from __future__ import annotations

from pathlib import Path

from ais.contracts import BootEnvironment, decode
from ais.errors import WorldError

CURRENT = Path("bootenv") / "current.json"
FILES = {"vmlinuz": "kernel", "initrd": "initrd"}


def current(cache: Path) -> BootEnvironment:
    path = Path(cache) / CURRENT
    try:
        data = path.read_bytes()
    except FileNotFoundError as err:
        raise LookupError("no boot environment is built: run `ais bootenv build` on the server") from err
    try:
        return decode(data, BootEnvironment, str(path), WorldError)
    except WorldError as err:
        raise LookupError(str(err)) from err


def boot_file(cache: Path, name: str) -> tuple[Path, str]:
    """(path, sha256) of the boot environment's "vmlinuz" or "initrd"."""
    env = current(cache)
    field = FILES[name]
    path = Path(cache) / "bootenv" / getattr(env, field)
    if not path.is_file():
        raise LookupError(f"the boot environment {env.key[:16]} lists {path.name} but it is missing on the server")
    return path, getattr(env, f"{field}_sha256")


def kernel_arguments(base_url: str, host, target: str, append: str) -> list[str]:
    args = [f"ais.server={base_url}", f"ais.target={target}", f"ais.host={host.name}"]
    if host.token:
        args.append(f"ais.token={host.token}")
    return [*args, *append.split()]


def ipxe_script(env: BootEnvironment, host, boot_url: str, server_url: str, target: str, append: str) -> str:
    """The script: the kernel and initrd from `boot_url` (where the script was asked for), the client
    then talks to `server_url` (the API: https:// when the server has TLS)."""
    args = " ".join(kernel_arguments(server_url, host, target, append))
    return (f"#!ipxe\n"
            f"# AIS: reinstall {host.name} from {server_url}, boot environment {env.key[:16]}\n"
            f"kernel {boot_url}/v1/boot/vmlinuz initrd=initrd.img {args}\n"
            f"initrd --name initrd.img {boot_url}/v1/boot/initrd\n"
            f"boot\n")


def local_boot_report(reports: list[dict], answered: int) -> dict | None:
    """The host's newest report (reports newest first) when it is a firmware reboot with an id
    above `answered` (not answered with a local boot yet); else None (reinstall)."""
    if not reports:
        return None
    newest = reports[0]
    if (newest.get("status"), newest.get("phase")) != ("rebooting", "firmware") or newest["id"] <= answered:
        return None
    return newest


def local_boot_script(host, report: dict) -> str:
    """Boot the first BIOS disk (drive 0x80) as it is; iPXE describes no SAN to the OS.
    Only the report's id goes into the comment: its message could hold a newline."""
    return (f"#!ipxe\n"
            f"# AIS: {host.name} finished its reinstall and rebooted through the firmware "
            f"(report #{int(report['id'])}: rebooting, firmware): boot the local disk, once\n"
            f"sanboot --no-describe --drive 0x80\n")
