"""`ais validate` and `ais show`: check descriptors, print a resolved SCD or host.

`ais show` of an SCD gives its on-change policy and packages; of a host, also
its groups (with `all`), MACs and files.

Reads: the descriptors directory and the RPM repository (via `load_site`).
Fails with `DescriptorError` (exit 2) listing every problem. Returns 0 and
prints a human table, or JSON with `--json`.
"""

from __future__ import annotations

import json

from ais.descriptors import load_site
from ais.errors import UsageError
from ais.model import ALL_GROUP, Configuration, Host, Site


def register(subparsers) -> None:
    validate = subparsers.add_parser(
        "validate", help="check every SCD and HCD, print a summary",
        description="Parse, schema-check and resolve every descriptor. Prints every problem "
                    "at once (file:line: what to do) and exits 2 if there is any.")
    validate.add_argument("--json", action="store_true", help="machine-readable summary")
    validate.set_defaults(handler=cmd_validate)
    show = subparsers.add_parser(
        "show", help="show a resolved SCD or a host",
        description="Print the resolved package set of an SCD, or a host's SCD and files.")
    show.add_argument("name", help="SCD name or host name")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.set_defaults(handler=cmd_show)


def cmd_validate(args) -> int:
    site = load_site(args.descriptors, args.repo)
    if args.json:
        print(json.dumps(summary(site), indent=2))
        return 0
    weights = site.weights()
    print(f"{'SCD':<16} {'kind':<7} {'base':<10} {'packages':>8} {'installed MiB':>13} {'hosts':>5} {'weight':>6}"
          f"  on change")
    for conf in site.configurations:
        hosts = sum(1 for h in site.hosts if h.scd == conf.name)
        size = sum(p.installed_size for p in conf.packages) / 2**20
        print(f"{conf.name:<16} {conf.kind:<7} {conf.base:<10} {len(conf.packages):>8} {size:>13.1f} {hosts:>5} "
              f"{weights[conf.name]:>6g}  {conf.on_change}")
    for group in site.groups:
        print(f"group {group.name:<16} {len(group.hosts):>3} hosts  {group.description}")
    print(f"ok: {len(site.configurations)} SCDs, {len(site.hosts)} hosts, "
          f"{len(site.groups)} groups (with {ALL_GROUP}), {len(site.packages)} packages in the repository")
    return 0


def summary(site: Site) -> dict:
    return {
        "configurations": {c.name: {"kind": c.kind, "base": c.base, "packages": len(c.packages),
                                    "on_change": c.on_change}
                           for c in site.configurations},
        "hosts": {h.name: h.scd for h in site.hosts},
        "groups": {g.name: list(g.hosts) for g in site.groups},
        "repository_packages": len(site.packages),
    }


def cmd_show(args) -> int:
    site = load_site(args.descriptors, args.repo)
    conf = next((c for c in site.configurations if c.name == args.name), None)
    host = next((h for h in site.hosts if h.name == args.name), None)
    if conf is None and host is None:
        raise UsageError(f"no SCD or host called {args.name!r}; `ais validate` lists them")
    if host is not None:
        conf = site.configuration(host.scd)
    data = show_data(conf, host)
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        print_show(data)
    return 0


def show_data(conf: Configuration, host: Host | None) -> dict:
    data = {
        "scd": conf.name, "kind": conf.kind, "base": conf.base, "on_change": conf.on_change,
        "source": conf.source,
        "packages": [{"nevra": p.nevra, "size": p.size, "installed_size": p.installed_size,
                      "files": p.file_count, "scriptlets": p.scriptlets, "digest": p.digest}
                     for p in conf.packages],
    }
    if host is not None:
        data["host"] = {
            "name": host.name, "macs": list(host.macs), "reinstalls": host.reinstalls,
            "groups": list(host.groups), "source": host.source,
            "files": [{"path": f.path, "mode": f"{f.mode:04o}", "owner": f.owner,
                       "group": f.group, "bytes": len(f.content)} for f in host.files],
        }
    return data


def print_show(data: dict) -> None:
    if "host" in data:
        host = data["host"]
        print(f"host {host['name']} ({', '.join(host['macs'])}) runs {data['scd']}, "
              f"{host['reinstalls']:g} reinstalls/period  [{host['source']}]")
        print(f"  groups {', '.join(host['groups'])}")
        for f in host["files"]:
            print(f"  file {f['path']:<36} {f['mode']} {f['owner']}:{f['group']} {f['bytes']} bytes")
    print(f"SCD {data['scd']} ({data['kind']}, base {data['base']}, on change: {data['on_change']})  [{data['source']}]")
    print(f"  {'package':<44} {'rpm KiB':>8} {'inst KiB':>9} {'files':>6} {'scripts':>7}")
    for p in data["packages"]:
        print(f"  {p['nevra']:<44} {p['size'] // 1024:>8} {p['installed_size'] // 1024:>9} "
              f"{p['files']:>6} {p['scriptlets']:>7}")
    total = sum(p["installed_size"] for p in data["packages"]) / 2**20
    print(f"  {len(data['packages'])} packages, {total:.1f} MiB installed")
