"""`ais client ...`: the reinstall steps as subcommands, and `reinstall` running them all.

What it does: `register(subparsers)` adds `client` with
- `plan --server URL (--host NAME | --interface IFACE) --target DEV --state DIR`:
  start a session (state directory) and fetch the plan;
- `check | image | grow | mount | install | files | verify | bootloader | record |
  unmount | fsck | report --state DIR`: one step each, on the session (ais-boot runs them);
- `reboot --state DIR --mode kexec|firmware|no`: after the report, leave the
  boot environment (ais.client.reboot);
- `fail --state DIR --phase P --message M`: the report-and-stop path for
  failures the shell sees itself;
- `reinstall --server URL --target DEV --host NAME`: all steps in one process.
Every step honours `--dry-run` (print what would be done, write nothing to the
target). A failing step goes through `ais.client.steps.fail` (unmount, report
"failed", console message) before the error reaches `ais.cli` (exit 1).

`--site-key HEX|FILE` (plan, reinstall) pins the site's public key: a plan not
signed with it over this request is refused before anything is written.
`--site-ca FILE` pins the site CA: an https:// server must present a certificate it
signed (checked at every request; kept in the session for the later steps).

Reads: parsed arguments; the token from --token, --token-file or $AIS_TOKEN.
Fails with `UsageError` for contradictory options, otherwise what the steps raise.
Returns 0.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from ais.client import steps
from ais.client.reinstall import reinstall
from ais.client.session import Session, say
from ais.errors import ClientError, UsageError
from ais.model import TRANSPORTS

STEP_NAMES = ("check", "image", "grow", "mount", "install", "files", "verify", "bootloader", "record", "unmount",
              "fsck", "report")
NEEDS_API = ("install", "files", "report")


def register(subparsers) -> None:
    client = subparsers.add_parser("client", help="reinstall this machine from an AIS server (steps or all at once)",
                                   description="The client side of AIS. `reinstall` runs every step; the other "
                                               "subcommands are the single steps ais-boot runs in order.")
    sub = client.add_subparsers(dest="client_command", metavar="STEP", required=True)

    p = sub.add_parser("reinstall", help="run every step: plan, image, grow, install, files, verify, report",
                       description="Reinstall TARGET as host NAME from the server at URL, all steps in one process.")
    _server_options(p)
    p.add_argument("--state", default=None, metavar="DIR", help="session directory [a new temporary directory]")
    p.set_defaults(handler=cmd_reinstall)

    p = sub.add_parser("plan", help="start a session: identify this host and fetch its install plan")
    _server_options(p)
    p.add_argument("--state", required=True, metavar="DIR", help="session directory the later steps read")
    p.add_argument("--since-boot", action="store_true",
                   help="record the time from this machine's kernel start to now as the phase bootenv "
                        "(ais-boot passes it in the boot environment)")
    p.set_defaults(handler=cmd_plan)

    for name in STEP_NAMES:
        p = sub.add_parser(name, help=f"the {name} step of a session started by `ais client plan`")
        p.add_argument("--state", required=True, metavar="DIR", help="session directory")
        p.add_argument("--dry-run", action="store_true", help="print what would be done; write nothing")
        p.set_defaults(handler=cmd_step, step=name)

    p = sub.add_parser("reboot", help="after the report: kexec into the installed system, else reboot",
                       description="Leave the boot environment: `kexec` loads the installed disk's newest "
                                   "/boot/vmlinuz-R (and initrd.img-R) and executes it with "
                                   "init=/usr/lib/ais/firstboot, which reports \"up\"; when that fails, and "
                                   "with `firmware`, the machine reboots through its firmware. The server is "
                                   "told which, and why (status \"rebooting\").")
    p.add_argument("--state", required=True, metavar="DIR", help="session directory")
    p.add_argument("--mode", choices=("kexec", "firmware", "no"), default="kexec",
                   help="how to leave the boot environment (ais.reboot=) [%(default)s]")
    p.set_defaults(handler=cmd_reboot)

    p = sub.add_parser("fail", help="report a failure the shell detected, unmount, print the reason")
    p.add_argument("--state", required=True, metavar="DIR")
    p.add_argument("--phase", required=True)
    p.add_argument("--message", required=True)
    p.set_defaults(handler=cmd_fail)


def _server_options(p) -> None:
    p.add_argument("--server", required=True, metavar="URL",
                   help="the AIS server, https://HOST:PORT (http:// only to a server run with --plain-http)")
    p.add_argument("--site-ca", default=None, metavar="FILE",
                   help="the site CA (CACHE/site/ca.pem): an https:// server must show a certificate it signed, "
                        "for the name in --server, else nothing is written")
    p.add_argument("--host", default=None, metavar="NAME", help="this machine's host name or MAC (as in its HCD)")
    p.add_argument("--interface", default=None, metavar="IFACE",
                   help="identify by the MAC of this network interface when --host is not given")
    p.add_argument("--target", required=True, metavar="DEV", help="the disk to reinstall (never guessed)")
    p.add_argument("--token", default=None, help="the host's token [--token-file, else $AIS_TOKEN]")
    p.add_argument("--token-file", default=None, metavar="FILE", help="read the token from FILE")
    p.add_argument("--transport", choices=TRANSPORTS, default=None,
                   help="how image chunks arrive: unicast (TCP from the server), multicast, bittorrent "
                        "(peers and the server's web seed), chain (each client forwards to the next) "
                        "[the plan's: the host's HCD, else the server's --transport]")
    p.add_argument("--local-address", "--mcast-interface", dest="mcast_interface", default=None,
                   metavar="ADDRESS",
                   help="this machine's address on the provisioning network: multicast joins there, peer "
                        "transports listen there [the local address that routes to the server's stream "
                        "address]")
    p.add_argument("--seed-seconds", type=patience, default=60.0, metavar="SECONDS",
                   help="BitTorrent: after the image is written, seed on until every peer is done, at most "
                        "this long (the next steps wait) [%(default)s]")
    p.add_argument("--root", default=None, metavar="DIR", help="where to mount the target [STATE/root]")
    p.add_argument("--retries", type=int, default=5, help="attempts per request to the server [%(default)s]")
    p.add_argument("--retry-delay", type=float, default=0.5, metavar="SECONDS",
                   help="first back-off between attempts, doubling [%(default)s]")
    p.add_argument("--window-patience", type=patience, default=3600.0, metavar="SECONDS",
                   help="while the server's reboot window is full (503 with Retry-After) ask for the plan "
                        "again when it says, for up to this long; 0: do not wait [%(default)s]")
    p.add_argument("--site-key", default=None, metavar="HEX|FILE",
                   help="the site's public key (64 hex digits, or a file holding them: CACHE/site/site-key.pub, "
                        "`ais site show`): the plan must be signed with it, else nothing is written "
                        "[none: the plan is not verified]")
    p.add_argument("--dry-run", action="store_true", help="fetch the plan and check the target, then print "
                                                          "every step without writing anything")


def patience(text: str) -> float:
    try:
        value = float(text)
    except (ValueError, OverflowError):
        value = -1.0
    if not 0 <= value <= 1e7:
        raise argparse.ArgumentTypeError(f"expected seconds from 0 to 10000000, got {text[:20]!r}")
    return value


def _token(args) -> str | None:
    if args.token and args.token_file:
        raise UsageError("give --token or --token-file, not both")
    if args.token_file:
        try:
            return Path(args.token_file).read_text().strip()
        except OSError as err:
            raise UsageError(f"cannot read --token-file {args.token_file}: {err.strerror}") from err
    return args.token or os.environ.get("AIS_TOKEN") or None


def _site_key(args) -> str | None:
    """The pinned site key (hex) from --site-key HEX|FILE; UsageError when it is not one."""
    if args.site_key is None:
        return None
    from ais.sitekey import parse_public

    return parse_public(args.site_key)


def _session(args, state: str) -> Session:
    if not args.host and not args.interface:
        raise UsageError("name this machine: --host NAME (or MAC), or --interface IFACE to use its MAC")
    return steps.new_session(state, args.server, args.host, _token(args), os.path.abspath(args.target) if
                             not args.target.startswith("/dev/") else args.target,
                             transport=args.transport, interface=args.mcast_interface, root=args.root,
                             dry_run=args.dry_run, seed_seconds=args.seed_seconds,
                             site_ca=os.path.abspath(args.site_ca) if args.site_ca else None)


def cmd_reinstall(args) -> int:
    site_key = _site_key(args)
    state = args.state or tempfile.mkdtemp(prefix="ais-client-")
    session = _session(args, state)
    if args.dry_run:
        return _dry_run(session, args, site_key)
    reinstall(session, interface=args.interface, retries=args.retries, retry_delay=args.retry_delay,
              patience=args.window_patience, site_key=site_key)
    return 0


def _dry_run(session: Session, args, site_key: str | None) -> int:
    api = steps.api_of(session, args.retries, args.retry_delay, args.window_patience, site_key)
    steps.identify(session, args.interface)
    steps.plan(session, api)
    steps.check(session)
    for name in STEP_NAMES[1:]:
        step = getattr(steps, name)
        step(session, api) if name in NEEDS_API else step(session)
    say("dry run: nothing was written")
    return 0


def cmd_plan(args) -> int:
    site_key = _site_key(args)
    session = _session(args, args.state)
    session.save()
    api = steps.api_of(session, args.retries, args.retry_delay, args.window_patience, site_key)
    if args.since_boot:
        session.since_boot()
    _guarded(session, api, "identify", lambda: steps.identify(session, args.interface))
    _guarded(session, api, "plan", lambda: steps.plan(session, api))
    session.save()
    return 0


def cmd_reboot(args) -> int:
    from ais.client.reboot import leave

    session = Session.load(args.state)
    leave(session, steps.api_of(session, retries=2), args.mode)
    return 0


def cmd_step(args) -> int:
    session = Session.load(args.state)
    session.dry_run = args.dry_run
    api = steps.api_of(session)
    step = getattr(steps, args.step)
    _guarded(session, api, args.step, lambda: step(session, api) if args.step in NEEDS_API else step(session))
    session.save()
    return 0


def cmd_fail(args) -> int:
    try:
        session = Session.load(args.state)
    except ClientError:
        say(f"REINSTALL FAILED in phase '{args.phase}': {args.message} (no session: the server was not told)")
        return 1
    if "failed" not in session.results:
        steps.fail(session, steps.api_of(session, retries=2, retry_delay=0.5), args.phase, ClientError(args.message))
    return 1


def _guarded(session: Session, api, phase: str, action) -> None:
    try:
        action()
    except BaseException as err:
        steps.fail(session, api, phase, err)
        raise
