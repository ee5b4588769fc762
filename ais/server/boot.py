"""The boot routes of `ais serve`: the boot environment's kernel and initramfs, and an iPXE script per MAC.

What it does: `boot_file(cache, name)` finds the kernel ("vmlinuz") or the
initramfs ("initrd") of the boot environment CACHE/bootenv/current.json names
(`ais bootenv build` writes it; ais.contracts.BootEnvironment), with its
sha256 for the ETag. `ipxe_script(env, host, base_url, target, append)` writes
the iPXE script that boots a host into it: the kernel command line carries
the server, the target disk, the host's name and its token (docs/client.md,
"The boot environment", says who can read it).

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


def ipxe_script(env: BootEnvironment, host, base_url: str, target: str, append: str) -> str:
    args = " ".join(kernel_arguments(base_url, host, target, append))
    return (f"#!ipxe\n"
            f"# AIS: reinstall {host.name} from {base_url}, boot environment {env.key[:16]}\n"
            f"kernel {base_url}/v1/boot/vmlinuz initrd=initrd.img {args}\n"
            f"initrd --name initrd.img {base_url}/v1/boot/initrd\n"
            f"boot\n")
