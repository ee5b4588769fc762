"""`ais serve`: run the control API, package/file server and block streamer.

What it does: `register(subparsers)` adds `serve`; the handler builds a
`ais.server.service.Config` from the options (plus the shared --descriptors,
--repo, --cache), starts the server, prints one JSON line with the addresses
it listens on (tests and scripts read it; ports 0 pick free ports), then runs
until SIGTERM or SIGINT (or --seconds). It serves HTTPS with the certificate `ais site cert`
made (CACHE/site/tls/, or --tls-cert/--tls-key), and plain HTTP only with --plain-http,
which it logs as a warning.

Reads: parsed arguments. Fails with `UsageError` (exit 2) for a malformed
HOST:PORT or address, a missing or expired TLS certificate, and with what `Server` raises (exit 1/2).
Returns exit code 0 after a clean stop.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import signal
import threading
from pathlib import Path

from ais.errors import UsageError
from ais.model import TRANSPORTS
from ais.server.http import Limits
from ais.server.service import Config, Server
from ais.siteca import server_paths

log = logging.getLogger("ais.server")


def host_port(text: str, what: str, *, allow_zero: bool = True) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not (0 if allow_zero else 1) <= int(port) < 65536:
        raise UsageError(f"{what}: expected HOST:PORT, got {text!r}")
    return host, int(port)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "serve", help="serve install plans, packages, host files and images to reinstalling hosts",
        description="Answer clients at boot: GET /v1/hosts/<name-or-mac>/plan (install plan), "
                    "/v1/packages/<file>.rpm, /v1/hosts/<name>/files/<n> (Range supported), "
                    "/v1/images/<id>/header, POST /v1/hosts/<name>/report; stream images over TCP "
                    "(and multicast). Re-reads the published cache manifest and the descriptors "
                    "when they change: no restart after `ais rebuild`. Plain HTTP with per-host "
                    "bearer tokens: run it on the provisioning network only (docs/server.md).")
    p.add_argument("--listen", default="127.0.0.1:8470", metavar="HOST:PORT",
                   help="control API address; port 0 picks a free port [%(default)s]")
    p.add_argument("--stream-listen", default="127.0.0.1:8471", metavar="HOST:PORT",
                   help="TCP block-streamer address; port 0 picks a free port [%(default)s]")
    p.add_argument("--multicast", default=None, metavar="GROUP:PORT",
                   help="also stream images by multicast to GROUP:PORT (requests on PORT+1) [off]")
    p.add_argument("--multicast-interface", default="127.0.0.1", metavar="ADDRESS",
                   help="local address multicast is sent from [%(default)s]")
    p.add_argument("--multicast-rate", type=float, default=100.0, metavar="MB/S",
                   help="multicast send cap in MB/s [%(default)s]")
    p.add_argument("--transport", choices=TRANSPORTS, default="unicast",
                   help="how images travel to hosts whose HCD names no transport: unicast (TCP from this "
                        "server), multicast (needs --multicast), bittorrent (clients share pieces; this "
                        "server is the web seed), chain (each client forwards to the next) [%(default)s]")
    p.add_argument("--advertise", default=None, metavar="ADDRESS",
                   help="address clients dial for the stream, put in plans "
                        "[the --stream-listen address; required when that is 0.0.0.0]")
    p.add_argument("--history", type=Path, default=Path("build/history.sqlite"), metavar="FILE",
                   help="SQLite database of install reports [%(default)s]")
    p.add_argument("--update-key", type=Path, default=None, metavar="FILE",
                   help="the key that signs in-place updates (`ais update submit`); its public half is given to "
                        "agents [update-key.pem beside --history, made when missing]")
    p.add_argument("--admin-token-file", type=Path, default=None, metavar="FILE",
                   help="a file holding the admin token (one line, 16 to 256 printable characters, readable "
                        "by the server's user only) that opens the web console (/console/) to the network; "
                        "without it the console answers only connections to a loopback address")
    p.add_argument("--max-report-bytes", type=int, default=1 << 20, metavar="BYTES",
                   help="largest report body accepted; larger gets 413 [%(default)s]")
    p.add_argument("--header-timeout", type=positive, default=Limits.header_timeout, metavar="SECONDS",
                   help="a request's line and headers must be complete this long after the connection "
                        "opens or the previous answer ends; else the connection is closed (also the "
                        "idle keep-alive time) [%(default)s]")
    p.add_argument("--body-timeout", type=positive, default=Limits.body_timeout, metavar="SECONDS",
                   help="a report body must be complete this long after its headers; else 408 [%(default)s]")
    p.add_argument("--max-connections", type=positive_int, default=Limits.max_connections, metavar="N",
                   help="open client connections at most; one more closes the oldest connection with no "
                        "request in progress [%(default)s]")
    p.add_argument("--workers", type=positive_int, default=Limits.workers, metavar="N",
                   help="threads for plans, image checks, file stats and history writes; the event loop "
                        "only moves bytes [%(default)s]")
    p.add_argument("--poll", type=float, default=1.0, metavar="SECONDS",
                   help="how often the descriptors are checked for changes; the manifest is "
                        "checked on every request [%(default)s]")
    p.add_argument("--boot-target", default=None, metavar="DEV",
                   help="the disk the iPXE scripts at /v1/boot/ipxe/<mac> tell hosts to reinstall "
                        "(ais.target=); without it no boot scripts are served [off]. A boot script carries "
                        "the host's token in clear to whoever asks by its MAC: only on an isolated "
                        "provisioning network (docs/client.md)")
    p.add_argument("--boot-append", default="", metavar="ARGS",
                   help="more kernel arguments for the iPXE scripts, e.g. 'console=ttyS0' [none]")
    p.add_argument("--reboot-window", type=window_size, default=0, metavar="N",
                   help="at most N hosts reinstall at once (from their plan to their ok or failed report); "
                        "another host's plan request gets 503 with Retry-After and waits its turn, so a rack "
                        "powering on at once does not flood the server. E.g. --reboot-window 50 "
                        "[%(default)s: no limit]")
    p.add_argument("--window-retry", type=positive_int, default=10, metavar="SECONDS",
                   help="Retry-After told to a host the window refuses, plus a per-host share of up to half "
                        "of it so a refused rack does not come back all at once [%(default)s]")
    p.add_argument("--window-lease", type=positive, default=1800.0, metavar="SECONDS",
                   help="a host that sent no ok or failed report this long after its plan (it died "
                        "mid-install) loses its place in the window [%(default)s]")
    p.add_argument("--chain-gather", type=gather_seconds, default=2.0, metavar="SECONDS",
                   help="a new chain (transport chain) waits this long after its first host joins before "
                        "answering, so hosts booting together form one chain [%(default)s]")
    add_tls_options(p)
    p.add_argument("--seconds", type=float, default=None, metavar="SECONDS",
                   help="stop after this long [run until SIGTERM/SIGINT]")
    p.set_defaults(handler=cmd_serve)


def add_tls_options(p) -> None:
    """HTTPS with the site CA's certificate (ais.siteca), the plain boot listener, or --plain-http."""
    p.add_argument("--tls-cert", type=Path, default=None, metavar="FILE",
                   help="the server's TLS certificate, signed by the site CA [CACHE/site/tls/server.pem, made by "
                        "`ais site cert`]")
    p.add_argument("--tls-key", type=Path, default=None, metavar="FILE",
                   help="its private key [CACHE/site/tls/server-key.pem]")
    p.add_argument("--boot-listen", default=None, metavar="HOST:PORT",
                   help="also serve the boot files and iPXE scripts (/v1/boot/ only) in plain HTTP here, for "
                        "firmware that cannot check the site CA; the scripts point the client at the API's "
                        "https:// address [off]")
    p.add_argument("--plain-http", action="store_true",
                   help="serve plain HTTP, without TLS: hosts' tokens, plans and host files cross the network in "
                        "clear (logged as a warning at start); for a lab, or behind a TLS proxy")


def positive(text: str) -> float:
    try:
        value = float(text)
    except (ValueError, OverflowError):
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text[:20]!r}")
    return value


def positive_int(text: str) -> int:
    if not text.isdigit() or len(text) > 7 or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number from 1 to 9999999, got {text[:20]!r}")
    return int(text)


def gather_seconds(text: str) -> float:
    try:
        value = float(text)
    except (ValueError, OverflowError):
        value = -1.0
    if not 0 <= value <= 600:
        raise argparse.ArgumentTypeError(f"expected seconds from 0 to 600, got {text[:20]!r}")
    return value


def window_size(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or len(text) > 7:
        raise argparse.ArgumentTypeError(f"expected a whole number of hosts from 0 (no limit) to 9999999, "
                                         f"got {text[:20]!r}")
    return int(text)


def boot_target(text: str | None) -> str | None:
    if text is not None and not re.fullmatch(r"/dev/[A-Za-z0-9._/-]{1,100}", text):
        raise UsageError(f"--boot-target: expected a device path like /dev/sda, got {text[:60]!r}")
    return text


def boot_append(text: str) -> str:
    """Kernel arguments (printable, no quotes); the server, target, host and token are the server's to set."""
    if not re.fullmatch(r"[!#-&(-\[\]-~ ]{0,1000}", text):
        raise UsageError("--boot-append: printable kernel arguments without quotes or backslashes, at most 1000")
    own = [w for w in text.split() if w.split("=", 1)[0] in ("ais.server", "ais.target", "ais.host", "ais.token")]
    if own:
        raise UsageError(f"--boot-append: {own[0].split('=', 1)[0]}= is set by the server itself")
    return text


def admin_token(path: Path | None) -> str | None:
    """The admin token in FILE; UsageError for a file that is missing, shared with others or malformed."""
    if path is None:
        return None
    try:
        mode, text = path.stat().st_mode, path.read_text(errors="replace").strip()
    except OSError as err:
        raise UsageError(f"--admin-token-file {path}: {err.strerror or err}") from err
    if mode & 0o077:
        raise UsageError(f"--admin-token-file {path}: readable by others (mode {mode & 0o777:o}); chmod 600 it")
    if not re.fullmatch(r"[!-~]{16,256}", text):
        raise UsageError(f"--admin-token-file {path}: expected one line of 16 to 256 printable characters "
                         "without spaces (e.g. `openssl rand -hex 32`)")
    return text


def default_transport(transport: str, multicast: str | None) -> str:
    if transport == "multicast" and not multicast:
        raise UsageError("--transport multicast needs --multicast GROUP:PORT")
    return transport


def tls_files(args) -> tuple[Path | None, Path | None]:
    """(certificate, key) to serve with; (None, None) with --plain-http."""
    if args.plain_http:
        if args.tls_cert or args.tls_key:
            raise UsageError("--plain-http serves without TLS: leave out --tls-cert and --tls-key")
        return None, None
    default_cert, default_key = server_paths(args.cache)
    return args.tls_cert or default_cert, args.tls_key or default_key


def config_from_args(args) -> Config:
    tls_cert, tls_key = tls_files(args)
    return Config(
        descriptors=Path(args.descriptors), repo=Path(args.repo), cache=Path(args.cache),
        listen=host_port(args.listen, "--listen"),
        stream_listen=host_port(args.stream_listen, "--stream-listen"),
        multicast=host_port(args.multicast, "--multicast", allow_zero=False) if args.multicast else None,
        multicast_interface=args.multicast_interface, multicast_rate=args.multicast_rate * 1e6,
        transport=default_transport(args.transport, args.multicast),
        advertise=args.advertise, history=args.history, update_key=args.update_key,
        max_report_bytes=args.max_report_bytes, poll_seconds=args.poll,
        boot_target=boot_target(args.boot_target), boot_append=boot_append(args.boot_append),
        reboot_window=args.reboot_window, window_retry=args.window_retry, window_lease=args.window_lease,
        chain_gather=args.chain_gather, admin_token=admin_token(args.admin_token_file),
        tls_cert=tls_cert, tls_key=tls_key,
        boot_listen=host_port(args.boot_listen, "--boot-listen") if args.boot_listen else None,
        limits=Limits(header_timeout=args.header_timeout, body_timeout=args.body_timeout,
                      max_connections=args.max_connections, workers=args.workers),
    )


def cmd_serve(args) -> int:
    config = config_from_args(args)
    if config.boot_target:
        log.warning("boot scripts are on (--boot-target): each carries its host's token in clear to anyone "
                    "who asks by that host's MAC; serve them only on an isolated provisioning network")
    if config.tls_cert is None:
        log.warning("serving PLAIN HTTP (--plain-http): hosts' tokens, plans and host files cross the network in "
                    "clear, and anyone on it can read them; `ais site cert` and a restart without --plain-http "
                    "turn TLS on")
    server = Server(config)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    with server:
        print(json.dumps({"listening": server.addresses()}), flush=True)
        stop.wait(args.seconds)
    return 0
