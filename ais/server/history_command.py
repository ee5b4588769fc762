"""`ais history HOST`: a host's installs, each as a time chart of its phases.

What it does: `register(subparsers)` adds `history`; the handler reads the
host's reports from the history database (`--history FILE`, what `ais serve
--history` writes; opened read-only, never created), groups them into
installs (`ais.console.timeline`) and prints the newest `--limit` installs,
newest first: a header line (start, status, image, generation, boot-to-boot)
then one row per phase with its start offset, duration, share of the install
and a bar placed on a common time axis, like Kadeploy's time chart. The bar
width follows the terminal; 40 characters when stdout is not a terminal.
`--json` prints the installs as a JSON list instead.

Reads: parsed arguments, the SQLite file. Fails with `UsageError` (exit 2) for
a HOST that is not a host name or a `--limit` that is not 1..9999999 (argparse);
with `WorldError` (exit 1, from `read_reports`) when the file is missing, a
directory, not a SQLite database or not a history: what is (or is not) at the
path is the world's state (the server may simply not have run there yet), not
a malformed command line. A host without reports is not an error: a line
saying so (`[]` with `--json`), exit 0.
Returns exit code 0.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

from ais.errors import UsageError
from ais.server.history import read_reports
from ais.console.timeline import Install, Phase, as_dict, newest

HOST = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")  # the server's host-name rule (routes.NAME)
PIPE_WIDTH = 40  # bar characters when stdout is not a terminal
LABELS_WIDTH = 44  # what a chart row takes besides its bar

EPILOG = """\
The chart: one row per phase, in order. start is seconds from the install's
first phase (the boot environment's kernel start), seconds its duration, share
its part of the whole; the bar sits on one time axis from 0 to the end of the
last phase, so gaps and overlaps show. Phases: bootenv (kernel start to the
first step), identify, plan, check, image, grow, mount, install, files, verify,
record, unmount, fsck, report (the client's steps), kexec or firmware (from the
boot environment's last step to the installed kernel's start: the reboot, by
kexec or through the firmware), up (installed kernel start to its report).
'?' marks an unknown time (a clock jumped; or a report from an older client,
which gives durations only). Example:

  $ ais history mail01 --limit 1
  2026-11-30 02:53:20 +0000  up  image 3f2a9c41d07e  generation 8  boot-to-boot 61.1 s
    phase        start  seconds  share
    bootenv        0.0      9.8  16.0%  |######                                  |
    plan           9.8      0.4   0.7%  |      #                                 |
    image         10.4     21.5  35.2%  |       ##############                   |
    ...
    report        48.0      0.2   0.3%  |                               #        |
    kexec         48.5      3.8   6.2%  |                                ##      |
    up            52.3      8.8  14.4%  |                                  ######|
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "history", help="a host's installs: each phase's start and duration, boot to boot",
        description="Show a host's installs from the history database `ais serve` writes, newest\n"
                    "first: when, status (failed, installed, rebooted, up), image, generation,\n"
                    "boot-to-boot seconds, and a time chart of the phases.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("host", metavar="HOST", help="the host's name, as in its HCD")
    p.add_argument("--history", type=Path, default=Path("build/history.sqlite"), metavar="FILE",
                   help="SQLite database of install reports (`ais serve --history`) [%(default)s]")
    p.add_argument("--limit", type=_limit, default=10, metavar="N", help="newest N installs [%(default)s]")
    p.add_argument("--json", action="store_true", help="print the installs as a JSON list")
    p.set_defaults(handler=cmd_history)


def _limit(text: str) -> int:
    if not text.isdigit() or len(text) > 7 or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number from 1 to 9999999, got {text[:20]!r}")
    return int(text)


def cmd_history(args) -> int:
    if not HOST.fullmatch(args.host):
        raise UsageError(f"HOST: expected a host name (letters, digits, '.', '_', '-'), got {args.host[:70]!r}")
    found = newest(read_reports(args.history, args.host), args.limit)
    if args.json:
        print(json.dumps([as_dict(i) for i in found], indent=1))
    elif not found:
        print(f"no reports for {args.host} in {args.history}")
    else:
        print("\n\n".join(render(i, _bar_width()) for i in found))
    return 0


def _bar_width() -> int:
    if not sys.stdout.isatty():
        return PIPE_WIDTH
    return max(10, os.get_terminal_size(sys.stdout.fileno()).columns - LABELS_WIDTH)


def render(install: Install, width: int) -> str:
    """The header line and the chart of one install."""
    total = _total(install.phases)
    rows = [f"  {'phase':<10} {'start':>7} {'seconds':>8} {'share':>6}"]
    rows += [_row(p, total, width) for p in install.phases]
    return "\n".join([header(install), *rows])


def header(install: Install) -> str:
    when = time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(install.started_at))
    words = [when, install.status]
    if install.failed_phase:
        words.append(f"in {install.failed_phase}")
    words += [f"image {_short(install.image)}", f"generation {_or_dash(install.generation)}"]
    if install.boot_to_boot is not None:
        words.append(f"boot-to-boot {install.boot_to_boot:.1f} s")
    line = "  ".join(words)
    return f"{line}\n  {install.message}" if install.message else line


def _total(phases: list[Phase]) -> float:
    """The chart's time axis: the last known end, else the sum of the durations."""
    ends = [p.start + p.seconds for p in phases if p.start is not None and p.seconds is not None]
    return max(ends, default=0.0) or sum(p.seconds or 0.0 for p in phases)


def _row(phase: Phase, total: float, width: int) -> str:
    share = f"{100 * phase.seconds / total:5.1f}%" if phase.seconds is not None and total > 0 else "     ?"
    return (f"  {phase.name[:10]:<10} {_seconds(phase.start):>7} {_seconds(phase.seconds):>8} {share:>6}"
            f"  |{bar(phase, total, width)}|")


def bar(phase: Phase, total: float, width: int) -> str:
    """width characters: blanks up to the phase's start, '#' for its duration ('?' where unknown)."""
    if total <= 0:
        return " " * width
    left = 0 if phase.start is None else min(width - 1, round(phase.start / total * width))
    if phase.seconds is None:
        return (" " * left + "?").ljust(width)
    length = max(1, round(phase.seconds / total * width))
    return (" " * left + "#" * min(length, width - left)).ljust(width)


def _seconds(value: float | None) -> str:
    return "?" if value is None else f"{value:.1f}"


def _short(image: str | None) -> str:
    """An image id (64 hex digits) by its first 12, as `--json` gives it whole."""
    if image is None:
        return "-"
    return image[:12] if re.fullmatch(r"[0-9a-f]{64}", image) else image


def _or_dash(value) -> str:
    return "-" if value is None else str(value)
