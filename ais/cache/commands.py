"""`ais rebuild` (for cron) and `ais cache status`.

Reads: the parsed arguments (.descriptors, .repo, .cache, .verbose shared by
every command; --budget, --dry-run, --wait/--no-wait, --time-limit, --json).
Fails by raising AisError subclasses (ais.cli maps them: 2 bad descriptors or
arguments, 1 failure, including LockBusy under --no-wait). Returns 0.
"""

from __future__ import annotations

import json
from pathlib import Path

from ais.cache.rebuild import BUDGET_FILE, DEFAULT_BUDGET, Options, budget_of, rebuild
from ais.cache.report import Reporter
from ais.sizes import human, size_arg
from ais.cache.status import render, status
from ais.cache.store import Store


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "rebuild", help="rebuild the image cache from the descriptors (run by cron)",
        description="Validate the descriptors, plan, build the missing images, publish the "
                    "manifest atomically, then remove images no longer planned. A bad "
                    "descriptor stops it before the cache is touched (exit 2); any failure "
                    "leaves the published cache serving (exit 1).")
    _common(p)
    p.add_argument("--dry-run", action="store_true",
                   help="print what would be built and removed, with sizes; change nothing")
    p.add_argument("--wait", dest="wait", action="store_true", default=True,
                   help="wait for another rebuild holding the lock (default)")
    p.add_argument("--no-wait", dest="wait", action="store_false",
                   help="exit 1 at once if another rebuild holds the lock")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--history", type=Path, default=Path("build/history.sqlite"), metavar="FILE",
                   help="the server's history database: a changed SCD with on-change=\"update\" becomes an "
                        "in-place update for its hosts there (docs/updates.md) [%(default)s]")
    p.add_argument("--update-key", type=Path, default=None, metavar="FILE",
                   help="the key that signs those updates [update-key.pem beside --history]")
    p.set_defaults(handler=cmd_rebuild)

    cache = subparsers.add_parser("cache", help="inspect the image cache")
    sub = cache.add_subparsers(dest="cache_command", metavar="SUBCOMMAND", required=True)
    st = sub.add_parser("status", help="published images, disk use, what a rebuild would change",
                        description="Show the published images and the configurations each "
                                    "serves, verify their hashes, disk used against the "
                                    "budget, and what `ais rebuild` would change.")
    _common(st)
    st.add_argument("--json", action="store_true", help="machine-readable output")
    st.set_defaults(handler=cmd_status)


def _common(p) -> None:
    p.add_argument("--budget", type=size_arg, default=None, metavar="SIZE",
                   help=f"disk budget for images, e.g. 20G or 500M [descriptors/{BUDGET_FILE} "
                        f"if present, else {DEFAULT_BUDGET}]")
    p.add_argument("--time-limit", type=float, default=60.0, metavar="SECONDS",
                   help="planner time limit [%(default)s]")
    p.add_argument("--cost", type=Path, default=None, metavar="FILE",
                   help="cost model from `ais calibrate` [CACHE/cost.json if present, else built-in defaults]")


def _options(args) -> Options:
    return Options(descriptors=Path(args.descriptors), repo=Path(args.repo), cache=Path(args.cache),
                   budget=args.budget, dry_run=getattr(args, "dry_run", False),
                   wait=getattr(args, "wait", True), time_limit=args.time_limit,
                   cost=args.cost, history=getattr(args, "history", None),
                   update_key=getattr(args, "update_key", None))


def cmd_rebuild(args) -> int:
    opts = _options(args)
    result = rebuild(opts, Reporter())
    changes = result.changes
    if args.json:
        print(json.dumps({"dry_run": opts.dry_run, "generation": result.generation,
                          "budget_bytes": result.budget, **changes.to_json(),
                          "built": result.built, "freed_bytes": result.freed_bytes,
                          "seconds": {k: round(v, 3) for k, v in result.durations.items()}},
                         indent=1, sort_keys=True))
        return 0
    verb = "would" if opts.dry_run else "did"
    for w in changes.build:
        size = (result.built.get(w.iid, {}).get("stored_bytes") if not opts.dry_run
                else w.predicted_bytes)
        print(f"{verb} build  {w.key:<6} {w.iid[:12]}  {len(w.packages):>3} packages  "
              f"{'~' if opts.dry_run else ''}{human(size or 0)}"
              f"{'  (corrupt copy replaced)' if w.iid in changes.corrupt else ''}")
    for iid, size in sorted(changes.remove.items()):
        print(f"{verb} remove        {iid[:12]}                {human(size)}")
    if changes.empty:
        print("nothing to build or remove: the cache matches the plan")
    return 0


def cmd_status(args) -> int:
    opts = _options(args)
    data = status(Store(opts.cache), opts, budget_of(opts))
    print(json.dumps(data, indent=1, sort_keys=True) if args.json else render(data))
    return 0
