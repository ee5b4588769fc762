"""What each console page shows, as plain JSON-able data: the same dicts the pages draw and the data endpoints send.

What it does: one function per page, each from plain inputs:
  cache_view(manifest, generations)      published images, what each serves, disk against the budget, generations
  plan_view(manifest)                    the plan's images and configurations, predicted times, bound, gap, baselines
  hosts_view(site, reader, live)         every host: configuration, groups, last reinstall and update, agent, live state
  host_view(site, reader, name, live)    one host: the above, and its installs with their phases (ais.console.timeline)
  live_view(live, now)                   reinstalls in progress and just finished (ais.server.live snapshots)
The browser test (tests/integration/test_console.py) checks that the figures
on each page equal these dicts, so a page shows nothing computed elsewhere.

Reads: the published manifest (dict, `ais.cache.manifest.read`), the
generations log, the site (`ais.model.Site`, or None when the descriptors do
not load), a `HistoryReader`, the live board's snapshot as dicts. Fails with
`KeyError` only in `host_view` for an unknown host (the route answers 404);
what the history database raises (`WorldError`). Returns dicts.
"""

from __future__ import annotations

from ais.console.queries import HistoryReader
from ais.model import Site
from ais.console.timeline import as_dict, installs

FAILURES_SHOWN = 50
INSTALLS_SHOWN = 20


def cache_view(manifest: dict, generations: list[dict]) -> dict:
    plan = manifest.get("plan") or {}
    serves: dict[str, list[str]] = {}
    for conf, how in sorted(manifest.get("configurations", {}).items()):
        if how.get("image"):
            serves.setdefault(how["image"], []).append(conf)
    images = [{
        "id": iid, "packages": len(rec["packages"]), "stored_bytes": rec["stored_bytes"],
        "fs_bytes": rec["fs_bytes"], "build_seconds": rec.get("build_seconds"), "serves": serves.get(iid, []),
    } for iid, rec in sorted(manifest.get("images", {}).items(), key=lambda kv: -kv[1]["stored_bytes"])]
    used = sum(i["stored_bytes"] for i in images)
    return {
        "generation": manifest.get("generation", 0), "published_at": manifest.get("published_at"),
        "budget_bytes": plan.get("budget_bytes"), "used_bytes": used, "images": images,
        "packages_only": sorted(c for c, how in manifest.get("configurations", {}).items() if not how.get("image")),
        "generations": generations,
    }


def plan_view(manifest: dict) -> dict:
    """The plan, its images named by their published ids (the plan's own keys k0, k1... beside them)."""
    plan = manifest.get("plan")
    if not plan:
        return {"generation": manifest.get("generation", 0), "plan": None}
    ids = published_ids(manifest)
    configurations = [{
        "name": name, "image": ids.get(how["image"]), "image_key": how["image"], "remainder": len(how["remainder"]),
        "predicted_seconds": how["predicted_seconds"],
    } for name, how in sorted(plan["serve"].items())]
    return {
        "generation": manifest.get("generation", 0), "plan": {
            "objective": plan["objective"], "bound": plan["bound"], "gap": plan["gap"], "status": plan["status"],
            "solver": plan["solver"], "budget_bytes": plan["budget_bytes"],
            "size_bytes": sum(i["size_bytes"] for i in plan["images"]),
            "images": [{"id": ids.get(i["key"]), "key": i["key"], "packages": len(i["packages"]),
                        "size_bytes": i["size_bytes"]} for i in plan["images"]],
            "configurations": configurations, "baselines": plan["baselines"],
            "warnings": list(plan.get("warnings", ())),
        },
    }


def published_ids(manifest: dict) -> dict[str, str]:
    """The plan's image keys -> the published image ids, matched by package set."""
    by_set = {frozenset(rec["packages"]): iid for iid, rec in manifest.get("images", {}).items()}
    plan = manifest.get("plan") or {"images": ()}
    return {i["key"]: by_set[frozenset(i["packages"])] for i in plan["images"] if frozenset(i["packages"]) in by_set}


def hosts_view(site: Site | None, reader: HistoryReader, live: list[dict]) -> dict:
    installs_by_host, updates, agents = reader.last_installs(), reader.last_updates(), reader.agents()
    live_by_host = {e["host"]: e for e in live}
    names = sorted({h.name for h in site.hosts} if site else set(installs_by_host))
    known = {h.name: h for h in site.hosts} if site else {}
    rows = [_host_row(name, known.get(name), installs_by_host.get(name), updates.get(name), agents.get(name),
                      live_by_host.get(name)) for name in names]
    return {"hosts": rows, "counts": reader.counts(), "failures": reader.recent_failures(FAILURES_SHOWN),
            "described": site is not None}


def _host_row(name, host, last, update, agent, live) -> dict:
    return {
        "name": name, "scd": host.scd if host else None, "groups": list(host.groups) if host else [],
        "last_install": _last(last), "last_update": update,
        "agent": None if agent is None else ("online" if agent["online"] else "away"),
        "live": live["state"] if live else None,
    }


def _last(row: dict | None) -> dict | None:
    if row is None:
        return None
    return {k: row[k] for k in ("id", "received_at", "status", "phase", "image", "generation", "message")}


def host_view(site: Site | None, reader: HistoryReader, name: str, live: list[dict]) -> dict:
    host = next((h for h in site.hosts if h.name == name), None) if site else None
    rows = reader.host_rows(name)
    if host is None and not rows:
        raise KeyError(name)
    done = installs(rows)[::-1][:INSTALLS_SHOWN]
    update = reader.last_updates().get(name)
    return {
        "name": name, "scd": host.scd if host else None, "groups": list(host.groups) if host else [],
        "macs": list(host.macs) if host else [], "last_update": update,
        "live": next((e for e in live if e["host"] == name), None),
        "installs": [as_dict(i) for i in done],
    }


def live_view(live: list[dict], now: float) -> dict:
    return {"now": now, "installing": [e for e in live if e["state"] in ("installing", "silent")],
            "finished": [e for e in live if e["state"] not in ("installing", "silent")]}
