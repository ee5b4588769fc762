"""A host's install plan: which image, which packages in which order, which files.

What it does: `host_plan(snapshot, host, ...)` answers GET /v1/hosts/<h>/plan.
The image is the one the published manifest assigns to the host's SCD, if it
is published, passes its check (`ImageChecker`) and is still a subset of the
configuration the descriptors resolve to now. Otherwise the plan falls back to
the published, checked image with the lowest predicted install time that is a
subset of the configuration, or to a packages-only install onto a fresh
filesystem (image null), whichever the cost model predicts faster, and says
why in `fallback`. The remainder (configuration minus image) is listed in
install order (`ais.server.order`), each RPM with its URL and sha256; host
files with path, mode, owner, group, size, sha256 and URL; when the site signs
its RPMs, `rpm_keys` carries the site's OpenPGP public key (the client installs
only RPMs it signed). docs/server.md shows the JSON.

Reads: a `Snapshot`, the `Host`, a `CostModel` (for fallback predictions), the
stream endpoints to advertise. Fails on nothing a client can cause (the host
was looked up by the caller). Returns a JSON-ready dict.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from urllib.parse import quote

from ais.contracts import HostPlan, conform
from ais.errors import BadInput
from ais.model import Configuration, Host, Package
from ais.cost import CostModel, cost_from_obj
from ais.server.images import ImageChecker
from ais.server.order import install_order
from ais.server.state import Snapshot

log = logging.getLogger("ais.server.plans")

PLAN_FORMAT = 1  # ais.contracts.HostPlan


@dataclass(frozen=True)
class Endpoints:
    """Where clients stream images from (as they must dial it)."""

    tcp: str  # "host:port"
    multicast: str | None  # "group:port"
    transport: str = "unicast"  # the server's default (ais serve --transport)


@dataclass(frozen=True)
class Choice:
    image: str | None
    header: object | None  # ImageHeader
    fallback: dict | None
    predicted_seconds: float


def manifest_cost(manifest: dict) -> CostModel:
    """The cost model the rebuild planned with (recorded in the manifest), so that
    fallback choices and predictions agree with the plan; defaults if absent."""
    recorded = manifest.get("cost")
    if recorded is None:
        return CostModel()
    try:
        return cost_from_obj(recorded, "manifest cost")
    except BadInput as err:
        log.warning("%s; predicting with the built-in defaults", err)
        return CostModel()


def rpm_seconds(cost: CostModel, packages: list[Package]) -> float:
    """RPM seconds of packages, without the transaction's fixed cost."""
    return sum(cost.rpm_seconds(p.installed_size, p.file_count, p.scriptlets) for p in packages)


def predict(cost: CostModel, stored_bytes: int | None, remainder: list[Package], conf: Configuration) -> float:
    """The planner's formula (CostModel.reinstall_seconds) for this image and remainder."""
    left = {p.nevra for p in remainder}
    return cost.reinstall_seconds(stored_bytes=stored_bytes, remainder_rpm_s=rpm_seconds(cost, remainder),
                                  config_files=sum(p.file_count for p in conf.packages),
                                  image_installed_bytes=sum(p.installed_size for p in conf.packages
                                                            if p.nevra not in left))


def _remainder(conf: Configuration, image_nevras: set[str]) -> list[Package]:
    return [p for p in conf.packages if p.nevra not in image_nevras]


def choose_image(snapshot: Snapshot, conf: Configuration, checker: ImageChecker, cost: CostModel) -> Choice:
    """The planned image if it can serve, else the best published one (see module doc)."""
    images = snapshot.manifest.get("images", {})
    entry = snapshot.manifest.get("configurations", {}).get(conf.name)
    conf_set = conf.nevras
    reason = None
    planned = entry.get("image") if isinstance(entry, dict) else None
    if not isinstance(entry, dict):
        reason = (f"configuration {conf.name} is not in the published manifest "
                  f"(generation {snapshot.generation}): the cache has not been rebuilt since it was added")
    elif planned is None:
        remainder = _remainder(conf, set())
        return Choice(None, None, None, _planned_seconds(entry, cost, None, remainder, conf))
    elif not set(images.get(planned, {}).get("packages", [])) <= conf_set:
        reason = f"planned image {planned[:12]} is no longer a subset of {conf.name} (descriptors changed since the rebuild)"
    else:
        header, why = checker.check(snapshot, planned)
        if header is not None:
            remainder = _remainder(conf, set(header.packages))
            return Choice(planned, header, None,
                          _planned_seconds(entry, cost, images[planned].get("stored_bytes"), remainder, conf))
        reason = why
    return _fallback(snapshot, conf, checker, cost, reason, planned)


def _planned_seconds(entry: dict, cost: CostModel, stored: int | None, remainder: list[Package],
                     conf: Configuration) -> float:
    value = entry.get("predicted_seconds")
    return float(value) if isinstance(value, (int, float)) else predict(cost, stored, remainder, conf)



def _fallback(snapshot: Snapshot, conf: Configuration, checker: ImageChecker, cost: CostModel,
              reason: str, planned: str | None) -> Choice:
    best = Choice(None, None, None, predict(cost, None, list(conf.packages), conf))
    for iid, record in sorted(snapshot.manifest.get("images", {}).items()):
        if iid == planned or not set(record.get("packages", [])) <= conf.nevras:
            continue
        seconds = predict(cost, int(record.get("stored_bytes") or 0), _remainder(conf, set(record["packages"])), conf)
        if seconds >= best.predicted_seconds:
            continue
        header, _ = checker.check(snapshot, iid)
        if header is not None:
            best = Choice(iid, header, None, seconds)
    what = f"image {best.image[:12]}" if best.image else "a packages-only install onto a fresh filesystem"
    fallback = {"reason": reason, "planned_image": planned, "chosen": what}
    return Choice(best.image, best.header, fallback, best.predicted_seconds)


def _package_entry(pkg: Package) -> dict:
    name = pkg.filename.rsplit("/", 1)[-1]
    return {"nevra": pkg.nevra, "filename": name, "size": pkg.size, "installed_size": pkg.installed_size,
            "file_count": pkg.file_count,             "sha256": pkg.digest, "url": f"/v1/packages/{quote(name)}"}


def _file_entries(host: Host) -> list[dict]:
    return [
        {"index": n, "path": f.path, "mode": f"{f.mode:04o}", "owner": f.owner, "group": f.group,
         "size": len(f.content), "sha256": hashlib.sha256(f.content).hexdigest(),
         "url": f"/v1/hosts/{quote(host.name)}/files/{n}"}
        for n, f in enumerate(host.files)
    ]


def host_transport(host: Host, endpoints: Endpoints) -> dict:
    """The transport of the host's plan: its HCD's, else the server's default; multicast only where the
    server multicasts (else unicast, and the note says why)."""
    asked = host.transport or endpoints.transport
    if asked == "multicast" and not endpoints.multicast:
        return {"transport": "unicast",
                "transport_note": f"{host.source} asks for multicast; this server has no --multicast"}
    return {"transport": asked, "transport_note": None}


def host_plan(snapshot: Snapshot, host: Host, checker: ImageChecker, cost: CostModel,
              endpoints: Endpoints) -> dict:
    """The JSON plan for one host (docs/server.md)."""
    conf = snapshot.site.configuration(host.scd)
    choice = choose_image(snapshot, conf, checker, cost)
    image = None
    image_nevras: set[str] = set()
    if choice.image is not None:
        record = snapshot.manifest["images"][choice.image]
        header = choice.header
        image_nevras = set(header.packages)
        image = {
            "id": choice.image, "key": record.get("key"), "packages": sorted(image_nevras),
            "stored_bytes": int(record.get("stored_bytes") or 0), "fs_bytes": header.fs_bytes,
            "chunks": len(header.chunks), "header_sha256": header.sha256(), "header": header.to_obj(),
            "header_url": f"/v1/images/{choice.image}/header",
            "stream": {"tcp": endpoints.tcp, "multicast": endpoints.multicast,
                       **host_transport(host, endpoints)},
        }
    ordered, cycles = install_order(_remainder(conf, image_nevras))
    stored = image["stored_bytes"] if image else None
    plan = conform({
        "format": PLAN_FORMAT,
        "host": host.name,
        "scd": conf.name,
        "generation": snapshot.generation,
        "configuration": sorted(conf.nevras),
        "image": image,
        "fallback": choice.fallback,
        "packages": [_package_entry(p) for p in ordered],
        "order_cycles": cycles,
        "files": _file_entries(host),
        "rpm_keys": list(snapshot.rpm_keys),
        "predicted_seconds": {
            "total": round(choice.predicted_seconds, 6),
            "source": "server cost model" if choice.fallback else "manifest",
            "image": round(cost.image_seconds(stored), 6) if stored is not None else cost.fresh_fs_s,
            "rpm": round(cost.transaction_s + rpm_seconds(cost, ordered), 6),
            "host_files": cost.host_files_s,
            "finish": round(cost.finish_s + cost.finish_per_file_s * sum(p.file_count for p in conf.packages)
                            + cost.finish_per_image_byte_s * sum(p.installed_size for p in conf.packages
                                                                 if p.nevra in image_nevras), 6),
        },
    }, HostPlan)
    if not plan["rpm_keys"]:
        del plan["rpm_keys"]  # a site that does not sign its RPMs: plans older clients still accept
    return plan
