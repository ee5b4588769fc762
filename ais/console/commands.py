"""`ais report`: the console's cache, plan and hosts pages as one static HTML file.

What it does: `register(subparsers)` adds `report`; the handler reads the
published manifest, the generations log, the descriptors and the history
database (read-only: nothing is created or changed) and writes the same
views, charts and templates as the console (`ais.console.render`) into one
self-contained file: no script, no link out, so it reads in a mail from cron
or in an audit. `--out FILE` is replaced atomically (a reader never sees half
a report); without it the HTML goes to stdout.

Reads: parsed arguments, the cache, the descriptors and repository, the
history. Fails with `BuildError` (exit 1) for an unreadable manifest,
`WorldError` (exit 1) for an unreadable history or an unwritable --out. A
descriptors directory that does not load is reported, not fatal: the report
then lists the hosts of the history and says why on stderr and in the page.
Returns exit code 0.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ais.errors import AisError, WorldError

EPILOG = """\
Examples:
  ais report --out /srv/www/ais/report.html      # for a web server or an audit
  ais report | mail -a 'Content-Type: text/html' -s 'AIS nightly' admins   # from cron
The live console is `ais serve`'s /console/ (docs/console.md)."""


def register(subparsers) -> None:
    import argparse

    p = subparsers.add_parser(
        "report", help="the cache, the plan and the hosts as one static HTML file",
        description="Write the web console's cache, plan and hosts pages as one static HTML file\n"
                    "(no script, nothing fetched): for a mail from cron or an audit.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=None, metavar="FILE",
                   help="write the report here (replaced atomically) [stdout]")
    p.add_argument("--history", type=Path, default=Path("build/history.sqlite"), metavar="FILE",
                   help="the server's history database (`ais serve --history`) [%(default)s]")
    p.set_defaults(handler=cmd_report)


def cmd_report(args) -> int:
    from ais.cache.manifest import read, read_generations
    from ais.cache.store import Store
    from ais.console.queries import HistoryReader
    from ais.console.render import Sources, report_html
    from ais.descriptors import load_site
    from ais.files import write_atomic

    try:
        site = load_site(args.descriptors, args.repo)
    except AisError as err:
        print(f"ais report: the descriptors do not load, the report shows the history's hosts: {err}",
              file=sys.stderr)
        site = None
    manifest = read(Store(args.cache))
    text = report_html(Sources(manifest, read_generations(args.cache), site, HistoryReader(args.history)))
    if args.out is None:
        sys.stdout.write(text)
        return 0
    try:
        write_atomic(args.out, text.encode())
    except OSError as err:
        raise WorldError(f"cannot write the report {args.out}: {err.strerror or err}") from err
    print(f"report: {args.out} (generation {manifest.get('generation', 0)})", file=sys.stderr)
    return 0
