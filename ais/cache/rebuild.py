"""`ais rebuild`: make the cache hold exactly the images the current plan keeps.

Steps, each one line in the log: validate (load_site: a bad descriptor raises
`DescriptorError` before the cache is touched at all) -> lock (flock on
cache/lock; wait, or LockBusy) -> clean (tmp/ leftovers of a crashed run) ->
plan (make_plan with the measured sizes of published images) -> verify (hashes
of every stored image the plan keeps; corrupt ones are rebuilt) -> build (what
is missing, one image at a time: rpm, mke2fs, e2fsck, pack, rename into
images/) -> plan, verify and build again (up to 3 rounds) while a built
image's real size differed from its estimate, so one run converges -> torrents (an
image stored before BitTorrent gets its .torrent) -> publish (manifest.json replaced atomically) -> gc (images no
longer planned are removed, only after publishing).

A crash (kill -9) at any point leaves the last published manifest and all its
images in place: images enter images/ only complete (by rename), the manifest
changes only by rename, and nothing the old manifest lists is removed before
the new one is published. The next run cleans tmp/ and finishes the work.

Reads: descriptors, repository, cache. Fails with `DescriptorError` (exit 2,
cache untouched), `LockBusy`, `BuildError`, `ToolError` (exit 1; the published
cache still serves). Returns a `Result` (what was built and removed, timings).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

from ais.cache import manifest as manifests
from ais.cache.build import build_image
from ais.cache.changes import Changes, configurations, diff, plan_obj, wanted_images
from ais.faults import pause_point
from ais.cache.lock import locked
from ais.cache.report import Reporter
from ais.sizes import human, parse_size
from ais.cache.store import Store
from ais.cache.verify import check_store, header_record
from ais.model import Site
from ais.updates.changes import configuration_updates, describe, record
from ais.updates.signing import load_or_make_key, update_key_path
from ais.updates.store import UpdateStore

log = logging.getLogger("ais.cache.rebuild")

DEFAULT_BUDGET = "4G"
BUDGET_FILE = "cache-budget"  # in the descriptors directory: one size, e.g. "20G"


@dataclass
class Options:
    descriptors: Path
    repo: Path
    cache: Path
    budget: int | None = None  # bytes; None: from the descriptors' budget file, else 4G
    dry_run: bool = False
    wait: bool = True
    time_limit: float = 60.0
    cost: Path | None = None  # calibration JSON (ais.cost); None: the planner's defaults
    history: Path | None = None  # the server's history database: updates of on-change="update" SCDs go there
    update_key: Path | None = None  # their signing key; None: update-key.pem beside the history


@dataclass
class Result:
    changes: Changes
    built: dict[str, dict] = field(default_factory=dict)
    freed_bytes: int = 0
    generation: int = 0
    budget: int = 0
    durations: dict[str, float] = field(default_factory=dict)


def budget_of(opts: Options) -> int:
    """--budget, else the descriptors' `cache-budget` file, else 4G."""
    if opts.budget is not None:
        return opts.budget
    path = Path(opts.descriptors, BUDGET_FILE)
    return parse_size(path.read_text().strip() if path.is_file() else DEFAULT_BUDGET)


def make_plan_for(site: Site, budget: int, published: dict, opts: Options) -> tuple[dict, dict]:
    """The planner's plan as a JSON object, fed the measured sizes of published images,
    and the cost model it used (the manifest records it, so the server predicts alike)."""
    from ais.cost import cost_for, cost_to_obj
    from ais.planner.plan import make_plan

    cost, source = cost_for(opts.cache, opts.cost)
    log.info("cost model: %s", source)
    plan = make_plan(site, budget, cost=cost, known_sizes=manifests.known_sizes(published),
                     time_limit=opts.time_limit)
    return plan_obj(plan), cost_to_obj(cost)


def rebuild(opts: Options, reporter: Reporter | None = None) -> Result:
    """Run the rebuild steps; see the module docstring."""
    rep = reporter or Reporter()
    budget = budget_of(opts)
    with rep.step("validate") as info:
        from ais.descriptors import load_site

        site = load_site(opts.descriptors, opts.repo)
        info["summary"] = f"{len(site.configurations)} configurations, {len(site.hosts)} hosts"
    store = Store(opts.cache)
    if opts.dry_run:
        return _dry_run(site, store, budget, opts, rep)
    store.ensure()
    with contextlib.ExitStack() as stack:
        with rep.step("lock"):
            stack.enter_context(locked(store.lock_path, wait=opts.wait))
        pause_point("locked")
        return _locked_rebuild(site, store, budget, opts, rep)


def _dry_run(site: Site, store: Store, budget: int, opts: Options, rep: Reporter) -> Result:
    published = manifests.read(store) if store.root.exists() else manifests.empty()
    with rep.step("plan") as info:
        plan, _ = make_plan_for(site, budget, published, opts)
        info["summary"] = f"{len(plan.get('images', []))} images"
    wanted = wanted_images(site, plan)
    with rep.step("verify"):
        corrupt = check_store(store, published, set(wanted) & store.stored_ids())
    changes = diff(wanted, store, corrupt)
    return Result(changes, budget=budget, generation=int(published.get("generation", 0)),
                  durations=rep.durations)


PLAN_ROUNDS = 3  # plan again with the sizes just measured, so one run converges


def _locked_rebuild(site: Site, store: Store, budget: int, opts: Options, rep: Reporter) -> Result:
    with rep.step("clean") as info:
        info["summary"] = f"{store.clean_tmp()} leftovers removed from tmp/"
    published = manifests.read(store)
    result = Result(Changes(), budget=budget)
    corrupt: dict[str, str] = {}
    verified: set[str] = set()
    for round_no in range(1, PLAN_ROUNDS + 1):
        # The first plan estimates the sizes of images never built; once built,
        # their real sizes may favour another plan (or break the budget): plan again.
        measured = {"images": {**published.get("images", {}), **result.built}}
        with rep.step("plan") as info:
            plan, cost = make_plan_for(site, budget, measured, opts)
            info["summary"] = f"{len(plan.get('images', []))} images, budget {human(budget)}"
        wanted = wanted_images(site, plan)
        unchecked = (set(wanted) & store.stored_ids()) - verified - set(result.built)
        with rep.step("verify") as info:
            corrupt.update(check_store(store, published, unchecked))
            verified |= unchecked
            info["summary"] = f"{len(corrupt)} corrupt" if corrupt else "all hashes match"
        changes = diff(wanted, store, {i: why for i, why in corrupt.items() if i not in result.built})
        try:
            _build_all(changes, store, opts, rep, result)
        finally:
            store.drain()
        if not _sizes_moved(changes, result.built):
            break
    result.changes = _whole_run(changes, result.built, corrupt)
    records = {w.iid: result.built[w.iid] for w in result.changes.build}
    records.update(_kept_records(result.changes, store, published))
    with rep.step("torrents") as info:
        added = [iid for iid in sorted(records) if store.ensure_torrent(iid)]
        info["summary"] = f"{len(added)} images given the .torrent they lacked" if added else "every image has its .torrent"
    new = manifests.make(previous=published, plan_json=plan, images=records,
                         configurations=configurations(plan, wanted), cost=cost)
    with rep.step("updates") as info:  # before publishing: a crash in between records nothing twice
        info["summary"] = _record_updates(site, published, opts)
    with rep.step("publish") as info:
        manifests.publish(store, new)
        manifests.log_generation(store, new)
        used = sum(r["stored_bytes"] for r in records.values())
        info["summary"] = (f"generation {new['generation']}: {len(records)} images, "
                           f"{human(used)} of {human(budget)}")
    if used > budget:
        log.warning("published images use %s, over the %s budget: the sizes measured in the "
                    "last round exceeded their estimates; the next rebuild corrects it", human(used), human(budget))
    result.generation = new["generation"]
    pause_point("gc")
    with rep.step("gc") as info:
        result.freed_bytes = store.remove(result.changes.remove)
        info["summary"] = f"{len(result.changes.remove)} images removed, {human(result.freed_bytes)} freed"
    result.durations = rep.durations
    return result


def _record_updates(site: Site, published: dict, opts: Options) -> str:
    """In-place updates for the hosts of each on-change="update" SCD whose package set changed."""
    planned = configuration_updates(published, site)
    if not planned:
        return "no SCD with on-change=\"update\" changed"
    if opts.history is None:
        return f"{len(planned)} SCDs with on-change=\"update\" changed, but no history database to record updates in"
    stored = record(UpdateStore(opts.history), load_or_make_key(opts.update_key or update_key_path(opts.history)),
                    planned)
    for u in stored:
        log.info("update %d for group %s: %s", u.seq, u.group, describe(u.ops))
    return (f"{len(stored)} updates recorded for the hosts of {', '.join(p.configuration for p in planned)}"
            if stored else "the changed SCDs' updates were recorded by an earlier run")


def _sizes_moved(changes: Changes, built: dict[str, dict]) -> bool:
    """Did this round build an image whose real size differs from the plan's estimate?"""
    return any(built[w.iid]["stored_bytes"] != w.predicted_bytes for w in changes.build)


def _whole_run(last: Changes, built: dict[str, dict], corrupt: dict[str, str]) -> Changes:
    """The last round's changes, with everything this run built counted as built."""
    wanted = last.build + last.keep
    return Changes(build=[w for w in wanted if w.iid in built],
                   keep=[w for w in wanted if w.iid not in built],
                   remove=last.remove, corrupt=corrupt)


def _build_all(changes: Changes, store: Store, opts: Options, rep: Reporter, result: Result) -> None:
    """Build what changes.build lists; records land in result.built."""
    total = len(changes.build)
    if not total:
        return
    with rep.images(total) as bar:
        for n, want in enumerate(changes.build, 1):
            detail = f"{n}/{total} {want.key} {want.iid[:12]} ({len(want.packages)} packages)"
            with rep.step("build", detail) as info:
                record = build_image(store, list(want.packages), opts.repo, key=want.key, doing=rep.doing)
                info["summary"] = (f"{detail}: {human(record['stored_bytes'])} stored, "
                                   f"{human(record['fs_bytes'])} filesystem")
            result.built[want.iid] = record
            bar.advance()


def _kept_records(changes: Changes, store: Store, published: dict) -> dict[str, dict]:
    """Manifest records of kept images: the published one, or rebuilt from the header
    (an image a crashed run renamed into images/ but never published)."""
    from ais.stream.format import read_header

    out = {}
    for want in changes.keep:
        record = dict(published.get("images", {}).get(want.iid) or {})
        if not record:
            header = read_header(store.image_path(want.iid))
            record = header_record(store, want.iid, header)
            record.update(fs_bytes=header.fs_bytes, build_seconds=None)
        record.update(key=want.key, packages=want.nevras)
        out[want.iid] = record
    return out
