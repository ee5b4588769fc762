"""From a plan to the images the cache must hold, and what differs from the store.

`wanted_images` maps the plan's images to content ids (ais.cache.store.image_id
of the Package records the site resolves their NEVRAs to); `diff` compares
them with the published manifest and the files in images/: what to build, what
to keep, what to remove (with sizes, for `--dry-run` and `ais cache status`).

Reads: a `Site`, the plan as its JSON object (docs/interfaces.md "The plan"),
the manifest, the store. Fails with `BuildError` when the plan names a package
the site does not know (the plan is stale: re-plan). Returns plain data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from ais.cache.store import Store, image_id
from ais.errors import BuildError
from ais.model import Package, Site


@dataclass(frozen=True)
class Wanted:
    """One image the plan keeps."""

    iid: str
    key: str
    packages: tuple[Package, ...]
    predicted_bytes: int

    @property
    def nevras(self) -> list[str]:
        return sorted(p.nevra for p in self.packages)


@dataclass
class Changes:
    """What a rebuild does to the store."""

    build: list[Wanted] = field(default_factory=list)
    keep: list[Wanted] = field(default_factory=list)
    remove: dict[str, int] = field(default_factory=dict)  # image id -> stored bytes
    corrupt: dict[str, str] = field(default_factory=dict)  # image id -> why

    def to_json(self) -> dict:
        return {
            "build": [{"id": w.iid, "key": w.key, "packages": len(w.packages),
                       "predicted_bytes": w.predicted_bytes,
                       "rebuild_corrupt": w.iid in self.corrupt} for w in self.build],
            "keep": [{"id": w.iid, "key": w.key} for w in self.keep],
            "remove": [{"id": iid, "stored_bytes": n} for iid, n in sorted(self.remove.items())],
            "corrupt": dict(self.corrupt),
        }

    @property
    def empty(self) -> bool:
        return not (self.build or self.remove)


def plan_obj(plan) -> dict:
    """The plan as its JSON object, whether given as Plan, JSON text or dict."""
    if isinstance(plan, dict):
        return plan
    text = plan.to_json() if hasattr(plan, "to_json") else plan
    return json.loads(text) if isinstance(text, (str, bytes)) else dict(text)


def wanted_images(site: Site, plan: dict) -> dict[str, Wanted]:
    """{image id: Wanted} for every non-empty image the plan keeps."""
    by_nevra = {p.nevra: p for p in site.packages}
    for conf in site.configurations:
        by_nevra.update({p.nevra: p for p in conf.packages})
    out: dict[str, Wanted] = {}
    for image in plan.get("images", []):
        unknown = [n for n in image["packages"] if n not in by_nevra]
        if unknown:
            raise BuildError(f"plan image {image['key']} names packages the repository lacks: "
                             f"{unknown[:5]}; re-plan")
        if not image["packages"]:
            continue  # the empty image: install everything by RPM, nothing to store
        packages = tuple(sorted(by_nevra[n] for n in image["packages"]))
        iid = image_id(packages)
        out[iid] = Wanted(iid, image["key"], packages, int(image.get("size_bytes", 0)))
    return out


def diff(wanted: dict[str, Wanted], store: Store, corrupt: dict[str, str]) -> Changes:
    """Build what is missing or corrupt, keep the rest, remove what the plan dropped."""
    stored = store.stored_ids()
    changes = Changes(corrupt=dict(corrupt))
    for iid, w in sorted(wanted.items(), key=lambda kv: kv[1].key):
        (changes.keep if iid in stored and iid not in corrupt else changes.build).append(w)
    for iid in sorted(stored - set(wanted)):
        changes.remove[iid] = store.image_path(iid).stat().st_size
    return changes


def configurations(plan: dict, wanted: dict[str, Wanted]) -> dict[str, dict]:
    """The manifest's per-configuration entries: image id (or None), remainder, prediction."""
    by_key = {w.key: w.iid for w in wanted.values()}
    out = {}
    for name, serve in sorted(plan.get("serve", {}).items()):
        out[name] = {"image": by_key.get(serve.get("image")) if serve.get("image") else None,
                     "remainder": list(serve.get("remainder", [])),
                     "predicted_seconds": serve.get("predicted_seconds")}
    return out
