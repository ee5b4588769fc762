"""`ais cache status`: what is published, its health, and what a rebuild would change.

Reads: the cache (manifest.json, images/), and, to say what a rebuild would do,
the descriptors and repository (validate + plan, read-only: no lock, nothing
written). Every published image's hashes are verified, so a corrupted file is
reported (and `ais rebuild` replaces it); so is the manifest's signature by the
site key (ais.sitekey): signed, by which key, or why `ais serve` would refuse it; and the
server's TLS certificate (ais.siteca): its names, its expiry, and whether the site CA signed it.
Fails: never because the descriptors
are bad (that is reported as part of the status); `BuildError` only if the
manifest itself is unreadable. Returns a JSON-able dict; `render` prints it.
"""

from __future__ import annotations

from ais import siteca, sitekey
from ais.cache import manifest as manifests
from ais.cache.changes import diff, wanted_images
from ais.sizes import human
from ais.cache.store import Store
from ais.cache.verify import check_store
from ais.errors import AisError, DescriptorError


def published_status(store: Store, published: dict, budget: int) -> dict:
    """Published images with the configurations each serves, their health, disk use."""
    corrupt = check_store(store, published)
    serves: dict[str | None, list[str]] = {}
    for name, entry in published.get("configurations", {}).items():
        serves.setdefault(entry.get("image"), []).append(name)
    images = {}
    for iid, rec in sorted(published.get("images", {}).items(), key=lambda kv: kv[1].get("key", "")):
        images[iid] = {"key": rec.get("key"), "packages": len(rec.get("packages", [])),
                       "stored_bytes": rec.get("stored_bytes"), "fs_bytes": rec.get("fs_bytes"),
                       "serves": sorted(serves.get(iid, [])),
                       "ok": iid not in corrupt, "problem": corrupt.get(iid)}
    used = store.disk_bytes()
    return {"cache": str(store.root), "generation": published.get("generation", 0),
            "published_at": published.get("published_at"), "signature": signature_status(store, published),
            "tls": siteca.certificate_status(store.root),
            "images": images,
            "packages_only": sorted(serves.get(None, [])),
            "disk_bytes": used, "budget_bytes": budget,
            "over_budget": used > budget, "corrupt": corrupt,
            "leftovers_in_tmp": len(list(store.tmp.iterdir())) if store.tmp.is_dir() else 0}


def signature_status(store: Store, published: dict) -> dict:
    """Whether the manifest is signed, by which key, and whether `ais serve` would take it."""
    signer = sitekey.manifest_signer(published)
    try:
        site = sitekey.read_public(store.root)
    except AisError as err:
        return {"signed": signer is not None, "key": signer, "site_key": None, "ok": False, "problem": str(err)}
    problem = None
    if site is not None and (published.get("generation") or published.get("images")):
        try:
            sitekey.verify_manifest(published, site)
        except AisError as err:
            problem = str(err)
    return {"signed": signer is not None, "key": signer, "site_key": site, "ok": problem is None,
            "problem": problem}


def pending_changes(store: Store, published: dict, opts) -> dict:
    """What `ais rebuild` would do now, or why it would stop."""
    from ais.cache.rebuild import budget_of, make_plan_for
    from ais.descriptors import load_site

    try:
        site = load_site(opts.descriptors, opts.repo)
        plan, _ = make_plan_for(site, budget_of(opts), published, opts)
        wanted = wanted_images(site, plan)
    except DescriptorError as err:
        return {"error": f"descriptors invalid ({len(err.problems)} problems): rebuild would "
                         "stop and keep the published cache", "problems": [str(p) for p in err.problems]}
    except AisError as err:
        return {"error": str(err)}
    corrupt = check_store(store, published, set(wanted) & store.stored_ids())
    return diff(wanted, store, corrupt).to_json()


def status(store: Store, opts, budget: int) -> dict:
    published = manifests.read(store)
    data = published_status(store, published, budget)
    data["rebuild_would"] = pending_changes(store, published, opts)
    return data


def render(data: dict) -> str:
    """Human-readable status."""
    lines = [f"cache {data['cache']}: generation {data['generation']}, "
             f"published {data['published_at'] or 'never'}"]
    lines.append(signature_line(data["signature"]))
    lines.append(tls_line(data["tls"]))
    lines.append(f"{'image':<14} {'key':<6} {'pkgs':>4} {'stored':>8} {'fs':>8}  serves")
    for iid, img in data["images"].items():
        flag = "" if img["ok"] else f"  CORRUPT: {img['problem']}"
        lines.append(f"{iid[:12]:<14} {img['key'] or '-':<6} {img['packages']:>4} "
                     f"{human(img['stored_bytes'] or 0):>8} {human(img['fs_bytes'] or 0):>8}  "
                     f"{', '.join(img['serves']) or '-'}{flag}")
    if data["packages_only"]:
        lines.append(f"packages only (no image): {', '.join(data['packages_only'])}")
    lines.append(f"disk: {human(data['disk_bytes'])} of {human(data['budget_bytes'])} budget"
                 f"{' (OVER BUDGET)' if data['over_budget'] else ''}")
    if data["leftovers_in_tmp"]:
        lines.append(f"tmp/: {data['leftovers_in_tmp']} leftovers of an interrupted run")
    would = data["rebuild_would"]
    if "error" in would:
        lines.append(f"rebuild: {would['error']}")
        lines += [f"  {p}" for p in would.get("problems", [])[:20]]
    elif not (would["build"] or would["remove"]):
        lines.append("rebuild: nothing to do (the cache matches the plan)")
    else:
        for b in would["build"]:
            why = " (replaces a corrupt copy)" if b["rebuild_corrupt"] else ""
            lines.append(f"rebuild would build {b['key']} {b['id'][:12]}: {b['packages']} packages, "
                         f"~{human(b['predicted_bytes'])}{why}")
        for r in would["remove"]:
            lines.append(f"rebuild would remove {r['id'][:12]}: {human(r['stored_bytes'])}")
    return "\n".join(lines)


def signature_line(sig: dict) -> str:
    if sig["problem"]:
        return f"signature: REFUSED by ais serve: {sig['problem']}"
    if sig["signed"]:
        return f"signature: signed by the site key {sig['key']}"
    if sig["site_key"]:
        return "signature: nothing published yet (the site key will sign it)"
    return "signature: not signed (the site has no key: `ais site init`)"


def tls_line(tls: dict) -> str:
    if tls["certificate"] is None:
        return f"tls: {tls['problem']}"
    where = f"server certificate for {', '.join(tls['names']) or '?'}"
    if tls["not_after"]:
        where += f", valid until {tls['not_after']} UTC"
    return f"tls: {where}" + (f": {tls['problem']}" if tls["problem"] else "")
