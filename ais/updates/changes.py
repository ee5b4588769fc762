"""Updates from descriptors: an SCD that changed becomes an update for the hosts running it.

What it does: `configuration_nevras(manifest, name)` is the package set a published
manifest serves a configuration (its image's packages plus its remainder).
`configuration_updates(previous, site)` compares it with what the descriptors resolve
to now, for every SCD whose `on-change` is `update`, and gives the operations that take
a host from the old set to the new one (install or up/downgrade each NEVRA that is new,
erase each name that is gone). `record(store, key, planned)` stores each as a signed
update for the SCD's own group `scd:NAME` (every host running it is in it,
`host_groups`), once: the update's origin names the new set's digest, so a rebuild that
runs again, or that crashed after recording and before publishing, records nothing twice.
`update_seconds(ops, packages, cost)` predicts the update's rpm transaction for
`ais plan --explain`.

Reads: manifests (dicts), the resolved `Site`, the cost model. Fails with `WorldError`
(the update database). Returns `PlannedUpdate`s and `Update`s.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from ais.updates.records import NEVRA, Op, Update


@dataclass(frozen=True)
class PlannedUpdate:
    configuration: str
    group: str
    ops: tuple[Op, ...]
    origin: str  # "rebuild NAME DIGEST": what makes it recorded once


def scd_group(scd: str) -> str:
    return f"scd:{scd}"


def host_groups(host) -> tuple[str, ...]:
    """The groups whose updates a host applies: its declared groups, `all`, and its SCD's."""
    return (*host.groups, scd_group(host.scd))


def configuration_nevras(manifest: dict, name: str) -> frozenset[str] | None:
    conf = manifest.get("configurations", {}).get(name)
    if conf is None:
        return None
    image = manifest.get("images", {}).get(conf.get("image") or "", {})
    return frozenset(image.get("packages", ())) | frozenset(conf.get("remainder", ()))


def delta_ops(old: frozenset[str], new: frozenset[str], packages: dict) -> tuple[Op, ...]:
    """Ops from set old to set new; packages: {nevra: Package} of the repository."""
    new_names = {packages[n].name for n in new}
    installs = tuple(_install(packages[n]) for n in sorted(new - old))
    erases = tuple(Op(action="erase", name=name) for name in sorted(_names(old) - new_names))
    return installs + erases


def _names(nevras) -> set[str]:
    return {m["name"] for m in (NEVRA.fullmatch(n) for n in nevras) if m}


def _install(p) -> Op:
    return Op(action="install", name=p.name, nevra=p.nevra, file=p.filename.rsplit("/", 1)[-1], size=p.size,
              sha256=p.digest)


def configuration_updates(previous: dict, site) -> list[PlannedUpdate]:
    """An update for each `on-change="update"` configuration whose package set changed since `previous`."""
    packages = {p.nevra: p for p in site.packages}
    planned = []
    for conf in site.configurations:
        if conf.on_change != "update":
            continue
        old = configuration_nevras(previous, conf.name)
        if old is None or old == conf.nevras:
            continue
        digest = hashlib.sha256("\n".join(sorted(conf.nevras)).encode()).hexdigest()[:16]
        ops = delta_ops(old, conf.nevras, packages)
        if ops:
            planned.append(PlannedUpdate(conf.name, scd_group(conf.name), ops, f"rebuild {conf.name} {digest}"))
    return planned


def record(store, key, planned: list[PlannedUpdate]) -> list[Update]:
    """Store the planned updates not stored before (by origin); returns those stored now."""
    seen = {u.origin for u in store.updates()}
    return [store.submit(p.group, p.ops, key, origin=p.origin) for p in planned if p.origin not in seen]


def update_seconds(ops, packages: dict, cost) -> float:
    """Predicted seconds of the update's one rpm transaction on a running host."""
    rpm = sum(cost.rpm_seconds(packages[op.nevra].installed_size, packages[op.nevra].file_count,
                               packages[op.nevra].scriptlets) if op.action == "install" else cost.rpm_per_package_s
              for op in ops)
    return cost.transaction_s + rpm


def published_manifest(cache_dir) -> dict:
    """CACHE/manifest.json as a dict ({} when nothing is published or it cannot be read): for
    `ais plan --explain`, which compares with what is published but never touches the cache."""
    try:
        return json.loads((Path(cache_dir) / "manifest.json").read_text())
    except (OSError, ValueError):
        return {}


def explain_change(published: dict, site, name: str, cost, reinstall_seconds: float) -> str:
    """Both ways to bring the hosts of configuration `name` to its new package set, and which applies."""
    old = configuration_nevras(published, name)
    conf = site.configuration(name)
    if old is None:
        return f"  {name} is not in the published manifest yet: its hosts get it by a reinstall"
    generation = published.get("generation", "?")
    if old == conf.nevras:
        return f"  its package set is the one generation {generation} serves: nothing to update in place"
    packages = {p.nevra: p for p in site.packages}
    ops = delta_ops(old, conf.nevras, packages)
    way = ("updated in place by their agents" if conf.on_change == "update"
           else "reinstalled at their next boot")
    return (f"  since generation {generation}: {describe(ops)}; in place {update_seconds(ops, packages, cost):.1f} s "
            f"(one rpm transaction) or a reinstall {reinstall_seconds:.1f} s; on-change=\"{conf.on_change}\": "
            f"its hosts are {way}")


def describe(ops) -> str:
    installs = sum(op.action == "install" for op in ops)
    return f"{installs} to install or up/downgrade, {len(ops) - installs} to erase"
