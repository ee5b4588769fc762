"""`ais agent run|transaction`: keep this installed host current with its groups' updates (ais.agent.service).

What it does: `register(subparsers)` adds `agent run`, which runs the agent until
SIGTERM/SIGINT (or `--seconds`), and `agent transaction ROOT`, the child that runs one rpm
transaction for it (ais.agent.transaction). It is started by the installed system's init
(docs/updates.md) and, in tests and benchmarks, once per network namespace.

Reads: options; the host's token from --token-file (default /etc/ais/token) or
$AIS_TOKEN. Fails with `UsageError` (exit 2) for a bad option, a missing token or
root; with `WorldError` (exit 1) when its port or state cannot be used. Returns 0.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from ais.errors import UsageError


def register(subparsers) -> None:
    agent = subparsers.add_parser("agent", help="keep this host current: its groups' updates, installed when idle "
                                                "(urgent ones at once), shared with peers")
    sub = agent.add_subparsers(dest="agent_command", metavar="SUBCOMMAND", required=True)
    t = sub.add_parser("transaction", help="one rpm transaction on ROOT: {\"install\": [rpm files], \"erase\": "
                                           "[names]} on stdin, the answer as JSON (what `agent run` runs as its child)")
    t.add_argument("root", type=Path, metavar="ROOT", help="the installed system")
    t.set_defaults(handler=cmd_transaction)
    p = sub.add_parser(
        "run", help="run the agent until SIGTERM/SIGINT",
        description="Run the update agent of an installed host (Clumpt's protocols, docs/updates.md). Updates are "
                    "signed by the server's update key and checked before anything is kept; packages come from "
                    "peers first, the server last, each checked against its sha256 before rpm sees it.",
        epilog="Example: ais agent run --server https://10.0.0.1:8470 --site-ca /etc/ais/site-ca.pem --host web01 "
               "--listen 10.0.0.21:8472 --update-key /etc/ais/update-key.pub")
    p.add_argument("--server", required=True, metavar="URL",
                   help="the AIS server (https://HOST:PORT; http:// only to a server run with --plain-http)")
    p.add_argument("--site-ca", type=Path, default=None, metavar="FILE",
                   help="the site CA (CACHE/site/ca.pem): an https:// server must show a certificate it signed")
    p.add_argument("--host", required=True, metavar="NAME", help="this host's name (its HCD)")
    p.add_argument("--token-file", type=Path, default=Path("/etc/ais/token"), metavar="FILE",
                   help="the host's token [%(default)s, else $AIS_TOKEN]")
    p.add_argument("--listen", required=True, metavar="ADDRESS:PORT",
                   help="where peers reach this agent (its provisioning address)")
    p.add_argument("--root", type=Path, default=Path("/"), metavar="DIR",
                   help="the installed system whose packages are updated [%(default)s]")
    p.add_argument("--state", type=Path, default=Path("/var/lib/ais-agent"), metavar="DIR",
                   help="installation database and local package repository [%(default)s]")
    p.add_argument("--update-key", default=None, metavar="HEX|FILE",
                   help="the server's update key (ed25519 public key, hex, as in the server's update-key.pem.pub) "
                        "[trust the server's on first contact]")
    p.add_argument("--cgroup", default="", metavar="PATH",
                   help="the cgroup whose CPU and memory decide idleness, e.g. system.slice/batch "
                        "[the whole machine]")
    p.add_argument("--idle-cpu", type=_non_negative, default=0.5, metavar="CPUS",
                   help="busy above this many CPUs in use [%(default)s]")
    p.add_argument("--idle-memory", type=_non_negative, default=0.9, metavar="FRACTION",
                   help="busy above this fraction of memory in use [%(default)s]")
    p.add_argument("--idle-net", type=_non_negative, default=10.0, metavar="MB/S",
                   help="busy above this network traffic [%(default)s]")
    p.add_argument("--idle-seconds", type=_non_negative, default=10.0, metavar="SECONDS",
                   help="idle once under every threshold this long [%(default)s]")
    p.add_argument("--fanout", type=_count, default=3, metavar="N",
                   help="peers told about an update after installing it [%(default)s]")
    p.add_argument("--sync-seconds", type=_positive, default=10.0, metavar="SECONDS",
                   help="how often a random peer of each group is asked what this host missed [%(default)s]")
    p.add_argument("--refresh-seconds", type=_positive, default=30.0, metavar="SECONDS",
                   help="how often the group layout is read again from the server [%(default)s]")
    p.add_argument("--sample-seconds", type=_positive, default=1.0, metavar="SECONDS",
                   help="how often the load is sampled [%(default)s]")
    p.add_argument("--seconds", type=_positive, default=None, metavar="SECONDS",
                   help="stop after this long [until SIGTERM/SIGINT]")
    p.set_defaults(handler=cmd_agent)


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < 1e7:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text[:20]!r}")
    return value


def _count(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or len(text) > 4:
        raise argparse.ArgumentTypeError(f"expected a whole number from 0 to 9999, got {text[:20]!r}")
    return int(text)


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < 1e9:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text[:20]!r}")
    return value


def _listen(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--listen {text[:60]!r}: expected ADDRESS:PORT")
    return host, int(port)


def _token(path: Path) -> str:
    if os.environ.get("AIS_TOKEN"):
        return os.environ["AIS_TOKEN"]
    try:
        return path.read_text().strip()
    except OSError as err:
        raise UsageError(f"no token: cannot read --token-file {path} ({err.strerror}) and $AIS_TOKEN is unset") \
            from err


def cmd_transaction(args) -> int:
    from ais.agent.transaction import main

    return main(str(args.root))


def _server(url: str, site_ca: Path | None) -> str:
    """The server URL: https:// needs the site CA, and a pinned CA needs https://."""
    if url.startswith("https://") and site_ca is None:
        raise UsageError(f"--server {url}: HTTPS needs the site CA to check the server by (--site-ca FILE)")
    if url.startswith("http://") and site_ca is not None:
        raise UsageError(f"--server {url}: the site CA is pinned (--site-ca), so the server must be https://")
    if not url.startswith(("http://", "https://")):
        raise UsageError(f"--server {url[:60]!r}: expected https://HOST:PORT (or http:// with a --plain-http server)")
    return url


def cmd_agent(args) -> int:
    import asyncio  # here, not above: `agent transaction`, a child per update, should start fast

    from ais.agent.idle import Thresholds
    from ais.agent.service import Agent, AgentConfig
    from ais.updates.records import HOST_NAME
    from ais.updates.signing import read_public

    if not HOST_NAME.fullmatch(args.host):
        raise UsageError(f"--host {args.host[:60]!r} is not a host name")
    if not (args.root / "var/lib/rpm").is_dir():
        raise UsageError(f"--root {args.root}: no rpm database at var/lib/rpm (not an installed system)")
    config = AgentConfig(
        host=args.host, server=_server(args.server, args.site_ca), token=_token(args.token_file),
        root=args.root.resolve(), site_ca=args.site_ca,
        state=Path(args.state).resolve(),
        listen=_listen(args.listen), update_key=read_public(args.update_key) if args.update_key else None,
        cgroup=args.cgroup, fanout=args.fanout, sync_seconds=args.sync_seconds,
        refresh_seconds=args.refresh_seconds, sample_seconds=args.sample_seconds,
        thresholds=Thresholds(cpu=args.idle_cpu, memory=args.idle_memory, net=args.idle_net * 1e6,
                              idle_seconds=args.idle_seconds))
    agent = Agent(config)
    asyncio.run(_run(agent, args.seconds))
    return 0


async def _run(agent, seconds: float | None) -> None:
    import asyncio
    import signal

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, agent.stop)
    if seconds:
        loop.call_later(seconds, agent.stop)
    logging.getLogger("ais.agent").setLevel(logging.INFO)
    await agent.run()
