"""The reinstall steps, one small function each, shared by `ais client <step>` and `reinstall`.

Order (ais-boot runs the same): identify -> plan -> check -> image (or mkfs)
-> grow -> mount -> install -> files -> verify -> bootloader -> record -> unmount
-> fsck -> report. Each step takes the `Session`, times itself as one phase, and in a
dry run prints what it would do instead of touching the target. `fail()` is
the one way out on an error: unmount if mounted, report "failed" with the
phase and message (best effort: an unreachable server is said, not hidden),
and leave a readable message on the console. A success report is only ever
sent by `report()` after every earlier step passed.

While a step runs, the server's live board hears of it (best effort, never
in a dry run: ais.client.notify, given to the session by `api_of`): each
phase as it starts, the image's bytes as they are written and the packages
as they are fetched (`counted`).

A multicast image that makes no progress falls back to unicast
(`stream_image`); the install record and report say which transport delivered
the image and why it fell back. A peer transport fetches the remainder's RPMs
from the same peers in the image step (`rpm_dir`); the install step uses those
that check and downloads the rest.

Reads: the session, the server, the target. Fails with `ClientError` and the
tools' and streamer's errors. Returns nothing; results go into the session.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from ais.client import disk
from ais.client.packages import check_signatures, install_remainder
from ais.client.reboot import write_firstboot
from ais.client.record import make_record, report_body, write_record
from ais.client.session import Session, say
from ais.errors import AisError, ClientError, TransportStalled
from ais.model import TRANSPORTS

if TYPE_CHECKING:
    from ais.client.api import Api

# Each `ais client <step>` is its own process at boot: a step imports what only it
# needs (HTTP, the streamer, rpm) where it needs it, so every process starts fast.

MiB = 1 << 20


def api_of(session: Session, retries: int = 5, retry_delay: float = 0.5, patience: float = 3600.0,
           site_key: str | None = None) -> "Api":
    """The session's control API (over TLS checked by the session's site CA for an https:// server);
    `site_key` (hex) pins the key its plan must be signed with. The
    session's `notify` posts progress through it (ais.client.notify) unless the session has one already."""
    from ais.client.api import Api
    from ais.client.notify import Notifier

    api = Api(session.server, session.token, retries=retries, retry_delay=retry_delay, patience=patience,
              site_key=site_key, site_ca=session.site_ca)
    if session.notify is None:
        session.notify = Notifier(session, api)
    return api


def counted(session: Session, phase: str):
    """A `progress(done, total)` callback telling the session's notify (best effort; None: no notify)."""
    notify = session.notify
    if notify is None:
        return None

    def told(done: int, total: int) -> None:
        try:
            notify(phase, done, total)
        except Exception:  # noqa: BLE001 - a progress post never fails the step
            pass

    return told


def mac_of(interface: str) -> str:
    """MAC address of a network interface (the boot interface)."""
    try:
        return Path("/sys/class/net", interface, "address").read_text().strip().lower()
    except OSError as err:
        raise ClientError(f"cannot read the MAC address of interface {interface}: {err.strerror}") from err


def identify(session: Session, interface: str | None = None) -> None:
    with session.phase("identify"):
        if not session.host:
            if not interface:
                raise ClientError("no host name and no boot interface given: cannot identify this machine")
            session.host = mac_of(interface)
        say(f"this machine is {session.host}")


def plan(session: Session, api: "Api") -> None:
    with session.phase("plan", f"asking {api.server}"):
        p = api.plan(session.host)
        checked = check_signatures(api, p, Path(session.state_dir, "rpm-headers"))  # before it is kept
        session.plan = p
    if p["image"]:
        session.transport = chosen_transport(session.transport, p["image"]["stream"])
    image = p["image"]["id"][:12] if p["image"] else "none (packages only)"
    say(f"plan: host {p['host']}, SCD {p['scd']}, image {image}, {len(p['packages'])} packages, "
        f"{len(p['files'])} host files, predicted {p['predicted_seconds']['total']:.2f}s")
    if api.site_key:
        say(f"plan: signed by the site key {api.site_key[:16]}... over this request's nonce: checked")
    if api.tls is not None:
        say(f"plan: over TLS, the server's certificate signed by the site CA ({api.site_ca}): checked")
    else:
        say(f"WARNING: plain HTTP to {api.server}: the host's token and files cross the network in clear "
            "(https:// and --site-ca turn TLS on)")
    if checked:
        say(f"rpm: the {checked} packages' header signatures are the site's RPM key's: checked before writing")
    if p.get("fallback"):
        say(f"fallback: {p['fallback']['reason']} -> {p['fallback']['chosen']}")


def chosen_transport(asked: str | None, stream: dict) -> str:
    """The transport of this session: the one asked for on this machine (--transport, ais.transport=),
    else the plan's (the host's HCD, else the server's default); said on the console."""
    if asked:
        say(f"transport {asked} (asked for here; the plan says {stream['transport']})")
        return asked
    note = f": {stream['transport_note']}" if stream.get("transport_note") else ""
    say(f"transport {stream['transport']} (the plan's{note})")
    return stream["transport"]


def needed_bytes(p: dict) -> int:
    if p["image"]:
        return int(p["image"]["fs_bytes"])
    installed = sum(int(x.get("installed_size") or x["size"] * 3) for x in p["packages"])
    return installed * 5 // 4 + 32 * MiB


def check(session: Session) -> None:
    from ais.client.target import check_target

    p = session.need_plan()
    with session.phase("check", f"target {session.target}"):
        size = check_target(session.target, needed_bytes(p))
        say(f"target {session.target}: {size // MiB} MiB, needs {needed_bytes(p) // MiB} MiB, not mounted")


def image(session: Session) -> None:
    p = session.need_plan()
    if session.dry_run:
        what = (f"stream image {p['image']['id'][:12]} ({p['image']['stored_bytes'] // MiB} MiB stored) by "
                f"{session.transport} onto {session.target}") if p["image"] else f"mkfs.ext4 {session.target}"
        return say(f"would {what}")
    if p["image"]:
        with session.phase("image", f"{p['image']['id'][:12]} by {session.transport}"):
            session.results["image"] = stream_image(session, p)
    else:
        with session.phase("image", "packages only: fresh filesystem"):
            disk.make_fresh_fs(session.target, f"ais-{p['host']}")


def stream_image(session: Session, p: dict) -> dict:
    """The plan's image onto the target by the session's transport; a multicast or peer session that
    makes no progress (nothing good arrives for the stall timeout: the path is blocked, the peers are
    gone, or a neighbour floods it with forged data) falls back to unicast, and the result says so."""
    try:
        result = disk.write_planned_image(p, session.target, transport=session.transport,
                                          interface=session.interface, api=api_of(session), host=p["host"],
                                          staging=os.path.join(session.state_dir, "swarm"),
                                          seed_seconds=session.seed_seconds, rpm_dir=rpm_dir(session),
                                          on_progress=counted(session, "image"))
        return {**result, "transport": session.transport, "transport_fallback": None}
    except TransportStalled as err:
        reason = f"{session.transport} made no progress ({err}); the image came by unicast"
        say(f"fallback: {reason}")
    result = disk.write_planned_image(p, session.target, transport="unicast", on_progress=counted(session, "image"))
    return {**result, "transport": "unicast", "transport_fallback": reason}


def rpm_dir(session: Session) -> str:
    """Where the image step puts the remainder's RPMs it fetched from the peers (ais.client.rpmpeers),
    and the install step looks first."""
    from ais.client.rpmpeers import RPM_DIR

    return os.path.join(session.state_dir, RPM_DIR)


def grow(session: Session) -> None:
    p = session.need_plan()
    if session.dry_run:
        return say(f"would resize2fs {session.target} and give it a new UUID" if p["image"] else "would not grow (fresh filesystem)")
    if p["image"]:
        with session.phase("grow"):
            disk.grow(session.target)
            disk.new_uuid(session.target)


def mount(session: Session) -> None:
    session.root = session.root or str(Path(session.state_dir, "root"))
    if session.dry_run:
        return say(f"would mount {session.target} on {session.root}")
    with session.phase("mount", session.root):
        disk.mount(session.target, session.root)
        session.mounted = True


def install(session: Session, api: "Api") -> None:
    p = session.need_plan()
    if session.dry_run:
        return say(f"would install {len(p['packages'])} RPMs in one transaction: "
                   + " ".join(x["filename"] for x in p["packages"]))
    with session.phase("install", f"{len(p['packages'])} RPMs, one transaction"):
        session.results["remainder"] = install_remainder(api, p, session.root, Path(rpm_dir(session)),
                                                         progress=counted(session, "install"))


def files(session: Session, api: "Api") -> None:
    from ais.client.hostfiles import write_host_files

    p = session.need_plan()
    if session.dry_run:
        return say("would write host files: " + " ".join(f"{f['path']}({f['mode']} {f['owner']}:{f['group']})"
                                                         for f in p["files"]))
    with session.phase("files", f"{len(p['files'])} host files"):
        write_host_files(api, p, session.root, Path(session.state_dir, "scratch"))


def verify(session: Session) -> None:
    if session.dry_run:
        return say("would verify: rpm -qa equals the configuration, rpm -Va, host files")
    from ais.client.verify import verify_target

    with session.phase("verify"):
        session.results["rpm_va_allowed"] = verify_target(session.need_plan(), session.root)


def bootloader(session: Session, cmdline_file: str = "/proc/cmdline") -> None:
    """EXTLINUX and its configuration on the target when it has a kernel (ais.client.bootloader)."""
    from ais.client.bootloader import describe, install_bootloader

    try:
        cmdline = Path(cmdline_file).read_text()
    except OSError as err:
        raise ClientError(f"cannot read the kernel command line {cmdline_file}: {err.strerror}") from err
    if session.dry_run:
        return say(describe(session.root or str(Path(session.state_dir, "root")), session.target, cmdline))
    with session.phase("bootloader", f"EXTLINUX on {session.target}"):
        done = install_bootloader(session.root, session.target, cmdline)
    session.results["bootloader"] = done
    if done is None:
        say("bootloader: the target has no /boot/vmlinuz-*: no bootloader installed (a system for chroot use)")
    else:
        say(f"bootloader: EXTLINUX boots {done['kernel']}{' + ' + done['initrd'] if done['initrd'] else ''} "
            f"({done['append']})")


def record(session: Session) -> None:
    if session.dry_run:
        return say("would write /var/lib/ais/install.json and the installed system's firstboot")
    with session.phase("record"):
        rec = make_record(session, remainder=session.results.get("remainder"),
                          allowed_va=session.results.get("rpm_va_allowed"))
        write_record(session.root, rec)
        write_firstboot(session.root, session)
        session.results["record"] = rec


def unmount(session: Session) -> None:
    if session.dry_run:
        return say(f"would unmount {session.root}")
    with session.phase("unmount"):
        disk.unmount(session.root)
        session.mounted = False


def fsck(session: Session) -> None:
    if session.dry_run:
        return say(f"would e2fsck -fn {session.target}")
    with session.phase("fsck"):
        disk.fsck(session.target)


def report(session: Session, api: "Api") -> None:
    if session.dry_run:
        return say("would report success to the server")
    with session.phase("report"):
        answer = api.report(session.need_plan()["host"], report_body(session, "ok", record=session.results.get("record")))
    session.results["report_id"] = answer.get("stored")
    say(f"reinstalled {session.plan['host']} in {sum(session.timings.values()):.2f}s "
        f"(predicted {session.plan['predicted_seconds']['total']:.2f}s); report stored as #{answer.get('stored')}")


def fail(session: Session, api: "Api | None", phase: str, err: BaseException) -> None:
    """The one failure path: unmount, tell the server, leave a readable message."""
    message = str(err) or type(err).__name__
    if session.mounted and session.root:
        try:
            disk.unmount(session.root)
            session.mounted = False
        except AisError as unmount_err:
            message += f"\n(also: could not unmount {session.root}: {unmount_err})"
    host = (session.plan or {}).get("host") or session.host
    told = "not told (no host known)"
    if api is not None and host and not session.dry_run:
        try:
            api.retries = min(api.retries, 2)
            answer = api.report(host, report_body(session, "failed", phase=phase, message=message[:4000]))
            told = f"told the server (report #{answer.get('stored')})"
        except AisError as report_err:
            told = f"could NOT tell the server: {report_err}"
    session.results["failed"] = {"phase": phase, "message": message}
    session.save()
    say("=" * 60)
    say(f"REINSTALL FAILED in phase '{phase}': {message}")
    say(f"{told}. The target is NOT a good installation; nothing was reported as success.")
    say("=" * 60)


def new_session(state_dir: str, server: str, host: str | None, token: str | None, target: str | None, *,
                transport: str | None = None, interface: str | None = None, root: str | None = None,
                dry_run: bool = False, seed_seconds: float = 60.0, site_ca: str | None = None) -> Session:
    Path(state_dir).mkdir(parents=True, exist_ok=True)
    os.chmod(state_dir, 0o700)
    if transport is not None and transport not in TRANSPORTS:
        raise ClientError(f"transport must be one of {', '.join(TRANSPORTS)}, not {transport!r}")
    return Session(state_dir=str(state_dir), server=server, host=host, token=token, target=target,
                   root=root, transport=transport, interface=interface, dry_run=dry_run,
                   seed_seconds=seed_seconds, site_ca=site_ca)
