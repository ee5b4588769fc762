"""Leaving the boot environment after a reinstall: kexec into the installed system, else the firmware.

What it does:
- `write_firstboot(root, session)` (the record step) puts the installed system's first process
  into the target: /usr/lib/ais/firstboot (ais/client/firstboot.sh) and its settings
  /var/lib/ais/firstboot.conf (mode 0600: server URL, scheme, address and port, host, token,
  image, generation, the site CA's path). The settings are shell assignments, every value
  quoted. When the session pinned a site CA (--site-ca), a copy goes to
  /var/lib/ais/site-ca.pem (0644): firstboot's https:// report trusts it.
- `leave(session, api, mode)` (the reboot step), after the success report:
  - "kexec" (ais.reboot=kexec, the default): mount the target read-only, check that its install
    record is the one this session wrote (never kexec into a half-written disk), `kexec -l` its newest
    /boot/vmlinuz-R (with /boot/initrd.img-R when there is one) and the command line
    `root=TARGET rw init=/usr/lib/ais/firstboot` plus the boot environment's console= and
    ais.final= words; report "rebooting" (phase kexec, with the span kexec-load); `kexec -e`. When loading or executing
    fails (no kernel on the disk, kexec disabled by the kernel), the firmware reboot follows
    and the report says why.
  - "firmware": report "rebooting" (phase firmware), sync, `reboot -f`.
  - "no": nothing (the machine stays in the boot environment).
  Reports here are best effort: a server that cannot be told never keeps the machine from
  rebooting; the console says so.

Reads: the session, its site CA file, the target, /proc/cmdline. Fails with `ClientError` for an
unknown mode or a site CA file that cannot be read;
a failing reboot itself (`reboot -f` returned) is a `ToolError`. Returns nothing (on success
the process does not survive `kexec -e` or `reboot -f`).
"""

from __future__ import annotations

import json
import re
import shlex
import tempfile
from pathlib import Path
from urllib.parse import quote, urlsplit

from ais.client import disk
from ais.client.session import Session, say
from ais.errors import AisError, ClientError, ToolError, describe_os_error
from ais.files import write_atomic
from ais.run import run

FIRSTBOOT = "/usr/lib/ais/firstboot"
FIRSTBOOT_CONF = "/var/lib/ais/firstboot.conf"
FIRSTBOOT_CA = "/var/lib/ais/site-ca.pem"
MODES = ("kexec", "firmware", "no")
CARRIED_WORDS = ("console=", "ais.final=", "ais.init=", "earlyprintk=")


def write_firstboot(root: str, session: Session) -> None:
    plan = session.need_plan()
    url = urlsplit(session.server)
    scheme = "https" if url.scheme == "https" else "http"
    port = url.port or (443 if scheme == "https" else 80)
    image = (plan.get("image") or {}).get("id")
    ca = None
    if session.site_ca:
        try:
            ca = Path(session.site_ca).read_bytes()
        except OSError as err:
            raise ClientError(f"cannot copy the site CA {session.site_ca} into the installed system: "
                              f"{describe_os_error(err)}") from err
    settings = {
        "HOST": plan["host"],
        "HOST_PATH": quote(plan["host"], safe=""),
        "TOKEN": session.token or "",
        "SERVER_SCHEME": scheme,
        "SERVER_URL": f"{scheme}://{_url_host(url.hostname or '')}:{port}",
        "SERVER_ADDRESS": url.hostname or "",
        "SERVER_PORT": str(port),
        "SITE_CA": FIRSTBOOT_CA if ca is not None else "",
        "IMAGE_JSON": f'"{image}"' if image else "null",
        "GENERATION_JSON": str(plan["generation"]) if plan.get("generation") is not None else "null",
    }
    text = "".join(f"{key}={shlex.quote(value)}\n" for key, value in settings.items())
    script = Path(__file__).with_name("firstboot.sh").read_bytes()
    files = [(FIRSTBOOT_CONF, text.encode(), 0o600), (FIRSTBOOT, script, 0o755)]
    if ca is not None:
        files.append((FIRSTBOOT_CA, ca, 0o644))
    for path, data, mode in files:
        final = Path(root, path.lstrip("/"))
        final.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(final, data, mode, 0, 0)


def _url_host(hostname: str) -> str:
    """A host as a URL writes it: an IPv6 address in brackets."""
    return f"[{hostname}]" if ":" in hostname else hostname


def installed_kernel(root: Path) -> tuple[Path, Path | None]:
    """The newest /boot/vmlinuz-R of the installed system and its /boot/initrd.img-R (or None)."""
    kernels = sorted((root / "boot").glob("vmlinuz-*"), key=lambda p: _version_key(p.name[len("vmlinuz-"):]))
    if not kernels:
        raise ClientError(f"the installed system has no kernel: no /boot/vmlinuz-* on {root}")
    kernel = kernels[-1]
    initrd = root / "boot" / f"initrd.img-{kernel.name[len('vmlinuz-'):]}"
    return kernel, initrd if initrd.exists() else None


def _version_key(release: str) -> list:
    return [(0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"[.-]", release)]


def check_record(root: Path, session: Session) -> None:
    """kexec only into the disk this reinstall finished: its install record (written last, after
    verify) must be the one this session wrote."""
    from ais.client.record import RECORD_PATH

    try:
        found = json.loads(Path(root, RECORD_PATH.lstrip("/")).read_text())
    except (OSError, ValueError) as err:
        found = f"unreadable ({err})"
    if found != session.results.get("record"):
        raise ClientError(f"the disk's {RECORD_PATH} is not the record this reinstall wrote: not starting it")


def kexec_cmdline(target: str, current: str) -> str:
    """The installed system's command line: its root, firstboot as init, and the console and
    ais.final words of the boot environment's own command line."""
    carried = [w for w in current.split() if w.startswith(CARRIED_WORDS)]
    return " ".join([f"root={target}", "rw", f"init={FIRSTBOOT}", *carried])


def load_kexec(session: Session) -> None:
    """kexec -l the installed kernel (the target mounted read-only meanwhile)."""
    root = Path(tempfile.mkdtemp(prefix="kexec-", dir=session.state_dir))
    run(["mount", "-t", "ext4", "-o", "ro", session.target, str(root)])
    try:
        check_record(root, session)
        kernel, initrd = installed_kernel(root)
        cmdline = kexec_cmdline(session.target, Path("/proc/cmdline").read_text())
        say(f"kexec: loading {kernel.name}{' + ' + initrd.name if initrd else ''} ({cmdline})")
        run(["kexec", "-l", str(kernel), *([f"--initrd={initrd}"] if initrd else []), f"--append={cmdline}"])
    finally:
        disk.unmount(str(root))
        root.rmdir()


def tell(session: Session, api, phase: str, message: str, since: int) -> None:
    from ais.client.record import report_body

    try:
        api.retries = min(api.retries, 2)
        api.report(session.need_plan()["host"],
                   report_body(session, "rebooting", phase=phase, message=message, since=since))
    except AisError as err:
        say(f"could not tell the server that this machine reboots ({phase}): {err}")


def leave(session: Session, api, mode: str) -> None:
    if mode not in MODES:
        raise ClientError(f"ais.reboot must be one of {', '.join(MODES)}, not {mode!r}")
    if mode == "no":
        return say("reinstalled; staying in the boot environment (ais.reboot=no)")
    why, since = "ais.reboot=firmware", len(session.spans)  # the success report had the spans before
    if mode == "kexec":
        try:
            with session.phase("kexec-load"):
                load_kexec(session)
            tell(session, api, "kexec", "kexec into the installed system", since)
            run(["sync"])
            run(["kexec", "-e"])
            why = "kexec -e returned"
        except (AisError, OSError) as err:
            why = f"kexec failed: {err}"
        say(f"{why}; rebooting through the firmware")
    tell(session, api, "firmware", why, since)
    run(["sync"])
    run(["reboot", "-f"])
    raise ToolError("reboot -f returned: the machine did not reboot")
