"""`ais update submit|status|list` and `ais hosts`: what an admin does and sees of in-place updates.

What it does:
- `update submit --group G [--urgent] --install PKG... --erase NAME...`: an update of
  packages of the site's repository (PKG: a NEVRA, a file name or a name, the newest
  version then) for a declared group, stored with the next site-wide sequence number
  and signed with the update key; then a few online agents of the group are told
  (urgent: the root of a distribution tree over the group's online agents), like
  Clumpt's `clumpt` command. Agents that are not told learn it from their peers or
  from the server at their next sync.
- `update status N`: who applied it (and when), who waits for idle, who failed and why,
  who has not said.
- `update list`: every update, newest last.
- `hosts`: each host's groups, configuration, last update applied, updates pending,
  agent online or not.

Reads: the descriptors and repository (groups, packages), the server's history
database (`--history`), the update key. Fails with `UsageError`/`DescriptorError`
(exit 2: an unknown group or package, an empty update) and `WorldError` (exit 1: the
database or key cannot be used). Returns 0.
"""

from __future__ import annotations

import json
import random
import time
import urllib.error
import urllib.request
from pathlib import Path

from ais.descriptors import load_site
from ais.errors import UsageError
from ais.updates.changes import host_groups
from ais.updates.records import Op, Update, as_dict
from ais.updates.signing import load_or_make_key, update_key_path
from ais.updates.store import UpdateStore

HISTORY = (("--history",), dict(type=Path, default=Path("build/history.sqlite"), metavar="FILE",
                                help="the server's history database [%(default)s]"))


def register(subparsers) -> None:
    update = subparsers.add_parser("update", help="submit in-place updates to groups of hosts; see who has them",
                                   description="In-place updates delivered by the hosts' agents (`ais agent`), "
                                               "peer to peer (docs/updates.md).")
    sub = update.add_subparsers(dest="update_command", metavar="SUBCOMMAND", required=True)
    p = sub.add_parser("submit", help="a new update for a group: packages to install or upgrade, names to erase",
                       epilog="Example: ais update submit --group rack-a --install openssl-3.0.2-1.x86_64.rpm "
                              "--erase telnet --urgent")
    p.add_argument("--group", required=True,
                   help="the group it is for: a group of groups.xml, `all` (every host) or `scd:NAME` (the hosts "
                        "running SCD NAME)")
    p.add_argument("--install", action="append", default=[], metavar="PKG",
                   help="a package of the repository: NEVRA, file name, or name (its newest version); repeatable")
    p.add_argument("--erase", action="append", default=[], metavar="NAME", help="a package name to erase; repeatable")
    p.add_argument("--urgent", action="store_true",
                   help="install at once, busy or not, along a distribution tree [when each host is idle]")
    p.add_argument("--notify", type=int, default=3, metavar="N",
                   help="online agents told at once (non-urgent); the rest learn it from peers [%(default)s]")
    p.add_argument("--key", type=Path, default=None, metavar="FILE",
                   help="the update signing key [update-key.pem beside --history; made when missing]")
    p.add_argument(*HISTORY[0], **HISTORY[1])
    p.add_argument("--json", action="store_true", help="print the stored update as JSON")
    p.set_defaults(handler=cmd_submit)
    p = sub.add_parser("status", help="one update: who applied it, who waits for idle, who failed and why")
    p.add_argument("seq", type=int, help="the update's sequence number")
    p.add_argument(*HISTORY[0], **HISTORY[1])
    p.add_argument("--json", action="store_true", help="as JSON")
    p.set_defaults(handler=cmd_status)
    p = sub.add_parser("list", help="every update, oldest first")
    p.add_argument(*HISTORY[0], **HISTORY[1])
    p.set_defaults(handler=cmd_list)
    p = subparsers.add_parser("hosts", help="hosts: groups, configuration, last update, pending updates, online")
    p.add_argument(*HISTORY[0], **HISTORY[1])
    p.add_argument("--json", action="store_true", help="as JSON")
    p.set_defaults(handler=cmd_hosts)


# ---------------------------------------------------------------------------- submit

def cmd_submit(args) -> int:
    site = load_site(args.descriptors, args.repo)
    groups = {g for h in site.hosts for g in host_groups(h)}
    if args.group not in groups:
        raise UsageError(f"--group {args.group}: no host is in it (groups with hosts: {', '.join(sorted(groups))})")
    if not args.install and not args.erase:
        raise UsageError("an update needs at least one --install or --erase")
    ops = tuple(install_op(site.packages, text) for text in args.install)
    ops += tuple(Op(action="erase", name=name) for name in args.erase)
    key = load_or_make_key(args.key or update_key_path(args.history))
    store = UpdateStore(args.history)
    update = store.submit(args.group, ops, key, urgent=args.urgent, origin="admin")
    members = [h.name for h in site.hosts if args.group in host_groups(h)]
    told = announce(update, members, store.agents(), args.notify)
    if args.json:
        print(json.dumps(as_dict(update), indent=2))
    else:
        print(f"update {update.seq} for group {update.group}{' (urgent)' if update.urgent else ''}: "
              f"{describe(update)}")
        print(f"told {len(told)} agent(s): {', '.join(told) or 'none online; agents learn it at their next sync'}")
    return 0


def install_op(packages, text: str) -> Op:
    """The install op of a repository package named by NEVRA, file name or name (newest)."""
    found = [p for p in packages if text in (p.nevra, Path(p.filename).name)]
    if not found:
        named = [p for p in packages if p.name == text]
        found = sorted(named, key=_version_key)[-1:]
    if not found:
        raise UsageError(f"--install {text}: no such package in the repository (give a NEVRA, file name or name)")
    p = found[0]
    return Op(action="install", name=p.name, nevra=p.nevra, file=Path(p.filename).name, size=p.size, sha256=p.digest)


def _version_key(p):
    import rpm  # rpm's own version comparison

    return rpm.ver(f"{p.epoch}:{p.version}-{p.release}")


def describe(update: Update) -> str:
    return ", ".join(f"{op.action} {op.nevra or op.name}" for op in update.ops)


def announce(update: Update, members: list[str], agents: dict, fanout: int) -> list[str]:
    """Tell online agents of the group: `fanout` random ones, or an urgent update's tree root."""
    online = [h for h in members if agents.get(h, {}).get("online") and agents[h].get("address")]
    random.shuffle(online)
    body = {"updates": [as_dict(update)], "from": "server", "tree": online if update.urgent else None}
    told = []
    for host in online if update.urgent else online[:fanout]:
        if _post(f"http://{agents[host]['address']}/v1/agent/notify", body):
            told.append(host)
            if update.urgent:
                break  # the root tells the rest of the tree
    return told


def _post(url: str, body: dict) -> bool:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=3) as resp:
            return resp.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


# ---------------------------------------------------------------------------- status

def cmd_status(args) -> int:
    store = UpdateStore(args.history)
    update = store.update(args.seq)
    if update is None:
        raise UsageError(f"no update {args.seq} (`ais update list` lists them)")
    site = load_site(args.descriptors, args.repo)
    results = {r["host"]: r for r in store.results(seq=args.seq)}
    rows = []
    for host in sorted(h.name for h in site.hosts if update.group in host_groups(h)):
        r = results.get(host, {})
        rows.append({"host": host, "state": r.get("state", "not heard"),
                     "after_seconds": round(r["at"] - update.submitted_at, 2) if r else None,
                     "message": r.get("message", "")})
    if args.json:
        print(json.dumps({"update": as_dict(update), "hosts": rows}, indent=2))
        return 0
    print(f"update {update.seq} for group {update.group}{' (urgent)' if update.urgent else ''}, submitted "
          f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(update.submitted_at))}: {describe(update)}")
    counts = {}
    for r in rows:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    print("  " + ", ".join(f"{n} {state}" for state, n in sorted(counts.items())))
    for r in rows:
        after = f"+{r['after_seconds']:.1f} s" if r["after_seconds"] is not None else ""
        print(f"  {r['host']:<20} {r['state']:<10} {after:>10}  {r['message'][:100]}")
    return 0


def cmd_list(args) -> int:
    for u in UpdateStore(args.history).updates():
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(u.submitted_at))
        print(f"{u.seq:>6}  {when}  {u.group:<16} {'urgent' if u.urgent else '      '}  {describe(u)}")
    return 0


# ---------------------------------------------------------------------------- hosts

def cmd_hosts(args) -> int:
    site = load_site(args.descriptors, args.repo)
    store = UpdateStore(args.history)
    agents, updates, results = store.agents(), store.updates(), store.results()
    applied: dict[str, set[int]] = {}
    for r in results:
        if r["state"] == "applied":
            applied.setdefault(r["host"], set()).add(r["seq"])
    rows = []
    for h in site.hosts:
        mine = [u.seq for u in updates if u.group in host_groups(h)]
        done = applied.get(h.name, set())
        rows.append({"host": h.name, "groups": list(h.groups), "configuration": h.scd,
                     "last_applied": max(done, default=None), "pending": len([s for s in mine if s not in done]),
                     "online": agents.get(h.name, {}).get("online", False),
                     "address": agents.get(h.name, {}).get("address")})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'host':<16} {'configuration':<14} {'groups':<28} {'last':>6} {'pending':>7}  agent")
    for r in rows:
        state = ("online " + r["address"]) if r["online"] else ("offline" if r["address"] else "never seen")
        print(f"{r['host']:<16} {r['configuration']:<14} {','.join(r['groups']):<28} "
              f"{r['last_applied'] if r['last_applied'] is not None else '-':>6} {r['pending']:>7}  {state}")
    return 0
