"""Reinstall demo hosts three ways onto loop devices and compare (run by `make bench-install`).

(a) packages only: a fresh filesystem and every RPM in one transaction (Kickstart-like);
(b) the full image of each host's exact configuration (built with the cache builder);
(c) AIS: the planned image plus the remainder, from the real `ais rebuild` under a budget
    of 1/3 of (b)'s image bytes.
The cost model is calibrated first, in the same run (`ais calibrate`'s code), and all
three caches record it, so every prediction comes from the same measured model.
Each way: a real `ais serve` subprocess, a real `ais client reinstall` subprocess per host
onto a sparse loop device (1 GiB, or about 3x the largest configuration's installed size
if that is more), three runs per host (median). Prints wall time per phase, server disk
per approach, AIS's predicted vs measured time, and the goals.

`--scale N` (default 8) uses the demo repository built at size scale N
(`python -m aislab.demo_repo --scale N`, incremental, into build/repo-xN; scale 1 is
build/repo): the same descriptors, names and versions, N times the bytes and tree
files, so a configuration is 0.1-0.3 GB instead of 15-36 MiB. Everything (calibration,
the three caches, the server, the reinstalls) uses that repository. About 7 minutes at
scale 8 on 2 cores (plus a cold repository build of about 1.5 minutes), 1.5 at scale 1.

Outside loopback (`--links`, or `--links-only` to skip the three ways on loopback): AIS's
cache (c) served by `ais serve` in one network namespace to `ais client reinstall` in
another, over links shaped with tc tbf (100 Mbit/s and 1 Gbit/s, bounded queues), and over
1 Gbit/s onto a slow disk (`SlowDisk`, --disk-rate MB/s of writes), one run per host. Each
row prints the measured span against two predictions: the server's (this machine's
calibrated model, which knows nothing of the link) and the same with the model's image
stream term at the link's (or disk's) rate when that is slower; target: measured within
1.25x of the latter.

`--site real` uses the real site instead (Debian bookworm's own packages as RPMs,
`make real-site`: descriptors-real/ and build/real-repo; hosts REAL_HOSTS), writing
build/bench-install-real/; `--runs N` reinstalls each host N times (default 3) and the
spread (min, median, max) over the runs is printed.

Run: `make bench-install` (scale 8), `make bench-install SITE=real`, or
`.venv/bin/python bench/install.py --scale 1`.
Reads: descriptors/, packages/ (or descriptors-real/, build/real-repo). Writes build/repo[-xN]
and build/bench-install[-xN|-real]/. Needs root (losetup, mount).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ais.cache import manifest as manifests  # noqa: E402
from ais.cache.build import build_image  # noqa: E402
from ais.cache.store import Store, image_id  # noqa: E402
from aislab.disks import LoopDisk, SlowDisk, reinstall_argv, serve_in  # noqa: E402
from ais.descriptors import load_site  # noqa: E402
from ais.calibrate.measure import calibrate  # noqa: E402
from ais.cost import cost_to_obj, load_calibration, save_calibration  # noqa: E402
from aislab.demo_repo import build_repo, default_out  # noqa: E402
from ais.run import run  # noqa: E402
from aislab.site import ServeProcess, lab_plan, rebuild_cache  # noqa: E402
from aislab.net import NetLab, rate_bits  # noqa: E402

HOSTS = ["mail01", "db01", "web01", "mon01"]
REAL_HOSTS = ["ssh01", "web01", "db01", "mail01"]
RUNS = 3
PHASES = ["plan", "image", "grow", "mount", "install", "files", "verify", "record", "unmount", "fsck"]
SPAN = PHASES[1:]  # what the planner predicts: imaging through a checked filesystem
DEFAULT_SCALE = 8
DESCRIPTORS, SPECS = ROOT / "descriptors", ROOT / "packages"
# set by configure() for the chosen scale
REPO = ROOT / "build" / "repo"
WORK = ROOT / "build" / "bench-install"
COST = WORK / "cost.json"
DISK_MIB = 1024


def configure(scale: int, site: str = "demo") -> None:
    """Point the benchmark at the repository and work directory of this scale, or of the real site."""
    global REPO, WORK, COST, DESCRIPTORS, HOSTS
    if site == "real":
        DESCRIPTORS, REPO, WORK, HOSTS = (ROOT / "descriptors-real", ROOT / "build" / "real-repo",
                                          ROOT / "build" / "bench-install-real", REAL_HOSTS)
    else:
        REPO = default_out(ROOT / "build" / "repo", scale)
        WORK = default_out(ROOT / "build" / "bench-install", scale)
    COST = WORK / "cost.json"


def disk_mib_for(site) -> int:
    """Loop device size: 1 GiB, or 3x the largest configuration's installed size (rounded up
    to 256 MiB) when that is more: room for the image filesystem (+25%, inode tables,
    journal), the downloaded RPMs of a packages-only install, and ext4's reserve."""
    largest = max(sum(p.installed_size for p in c.packages) for c in site.configurations)
    return max(1024, math.ceil(3 * largest / 2**20 / 256) * 256)


def publish(store: Store, plan_note: str, images: dict, confs: dict, site) -> dict:
    """Publish a manifest serving confs (name -> image id or None, remainder NEVRAs), with the
    server's own predictions from the calibrated model and a lab Plan that says what it is."""
    from ais.server.plans import predict

    model = load_calibration(COST)
    for name, c in confs.items():
        conf = site.configuration(name)
        left = set(c["remainder"])
        stored = images[c["image"]]["stored_bytes"] if c["image"] else None
        c["predicted_seconds"] = round(predict(model, stored, [p for p in conf.packages if p.nevra in left], conf), 6)
    plan = lab_plan(images, confs, plan_note)
    manifests.publish(store, manifests.make(previous=manifests.read(store), plan_json=plan,
                                            images=images, configurations=confs,
                                            cost=cost_to_obj(model)))
    return manifests.read(store)


def packages_only_cache(site, cache: Path) -> dict:
    store = Store(cache)
    store.ensure()
    confs = {c.name: {"image": None, "remainder": sorted(c.nevras), "predicted_seconds": None}
             for c in site.configurations}
    return publish(store, "packages only (bench/install.py)", {}, confs, site)


def full_image_cache(site, cache: Path) -> dict:
    store = Store(cache)
    store.ensure()
    images, confs = {}, {}
    for conf in site.configurations:
        iid = image_id(conf.packages)
        images[iid] = build_image(store, list(conf.packages), REPO, key=conf.name)
        confs[conf.name] = {"image": iid, "remainder": [], "predicted_seconds": None}
    store.drain()
    return publish(store, "one image per configuration (bench/install.py)", images, confs, site)


def ais_cache(cache: Path, budget: int) -> tuple[dict, str]:
    return rebuild_cache(DESCRIPTORS, REPO, cache, budget=budget, cost=COST), f"ais rebuild, budget {budget >> 20} MiB"


def reinstall_once(server, site, host: str, state: Path) -> dict:
    token = next(h.token for h in site.hosts if h.name == host)
    with LoopDisk(WORK / "disk.img", DISK_MIB) as disk:
        started = time.monotonic()
        proc = run(reinstall_argv(server.url, host, token, disk.device, state), check=False, timeout=600)
        wall = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"reinstall of {host} failed:\n{proc.stderr[-3000:]}")
    session = json.loads((state / "session.json").read_text())
    timings = session["timings"]
    return {"timings": timings, "span": sum(timings.get(p, 0.0) for p in SPAN), "wall": wall,
            "predicted": session["plan"]["predicted_seconds"]["total"],
            "predicted_parts": session["plan"]["predicted_seconds"],
            "remainder": len(session["plan"]["packages"]), "image": bool(session["plan"]["image"])}


def phase_comparison(r: dict) -> str:
    """The server's predicted parts against the client's measured phases, for one reinstall."""
    parts, t = r["predicted_parts"], r["timings"]
    measured = {"image": t.get("image", 0.0) + t.get("grow", 0.0),
                "rpm": t.get("install", 0.0), "host_files": t.get("files", 0.0),
                "finish": sum(t.get(p, 0.0) for p in ("mount", "verify", "record", "unmount", "fsck"))}
    return "  ".join(f"{k} {parts.get(k, 0.0):.2f}/{measured[k]:.2f}" for k in measured) + "  (predicted/measured s)"


def run_way(name: str, site, cache: Path) -> dict[str, dict]:
    results = {}
    with ServeProcess(DESCRIPTORS, REPO, cache, WORK / f"history-{name}.sqlite") as server:
        for host in HOSTS:
            runs = [reinstall_once(server, site, host, WORK / f"state-{name}-{host}-{i}") for i in range(RUNS)]
            ordered = sorted(runs, key=lambda r: r["span"])
            best = dict(ordered[len(runs) // 2])  # the median run
            best["spread"] = [ordered[0]["span"], best["span"], ordered[-1]["span"]]
            results[host] = best
    return results


def disk_bytes(site, manifest: dict, with_repo: bool) -> int:
    images = sum(int(r["stored_bytes"]) for r in manifest["images"].values())
    used = {p.filename for c in site.configurations for p in c.packages}
    repo = sum((REPO / f).stat().st_size for f in used) if with_repo else 0
    return images + repo


def link_conditions(disk_rate: float) -> list[tuple[str, str, float | None]]:
    """(name, tc rate, slow disk write rate in bytes/s or None)."""
    return [("100 Mbit/s", "100mbit", None), ("1 Gbit/s", "1gbit", None),
            (f"1 Gbit/s, {disk_rate:g} MB/s disk", "1gbit", disk_rate * 1e6)]


def reinstall_in_lab(lab, url: str, site, host: str, disk, state: Path) -> dict:
    token = next(h.token for h in site.hosts if h.name == host)
    started = time.monotonic()
    proc = lab.spawn(1, reinstall_argv(url, host, token, disk.device, state))
    _, err = proc.communicate(timeout=900)
    wall = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"reinstall of {host} in the lab failed:\n{err[-3000:]}")
    session = json.loads((state / "session.json").read_text())
    timings = session["timings"]
    image = session["plan"]["image"]
    return {"span": sum(timings.get(p, 0.0) for p in SPAN), "wall": wall, "timings": timings,
            "predicted": session["plan"]["predicted_seconds"]["total"],
            "predicted_image": session["plan"]["predicted_seconds"]["image"],
            "stored": image["stored_bytes"] if image else None}


def run_links(site, cache: Path, disk_rate: float) -> list[dict]:
    """AIS reinstalls of every host over each shaped link / onto the slow disk; one run each."""
    model = load_calibration(COST)
    rows = []
    for n, (name, rate, disk_bytes_s) in enumerate(link_conditions(disk_rate)):
        limit = min(rate_bits(rate) / 8, disk_bytes_s or math.inf)
        with NetLab(2, tag=f"aisi{n}", rate=rate) as lab, open(WORK / f"serve-links-{n}.log", "w") as log:
            url = serve_in(lab, 0, DESCRIPTORS, REPO, cache, WORK / f"history-links-{n}.sqlite", log)
            for host in HOSTS:
                disk = (SlowDisk(WORK / "slow", DISK_MIB, disk_bytes_s) if disk_bytes_s
                        else LoopDisk(WORK / "disk.img", DISK_MIB))
                with disk:
                    r = reinstall_in_lab(lab, url, site, host, disk, WORK / f"state-links-{n}-{host}")
                adjusted = r["predicted"]
                if r["stored"] is not None and limit < model.stream_bytes_per_s:
                    adjusted += r["stored"] / limit - r["stored"] / model.stream_bytes_per_s
                rows.append({"condition": name, "host": host, **r, "adjusted": adjusted})
    return rows


def print_links(rows: list[dict]) -> None:
    print("\nAIS outside loopback (one run per host; span image..fsck):")
    print(f"{'condition':28} {'host':8} {'stored MB':>9} {'predicted':>9} {'for link':>9} {'measured':>9} "
          f"{'image s':>8} {'ratio':>6} {'goal':>6}")
    for r in rows:
        ratio = r["span"] / r["adjusted"]
        met = "met" if max(ratio, 1 / ratio) <= 1.25 else "MISSED"
        stored = f"{r['stored'] / 1e6:9.1f}" if r["stored"] is not None else f"{'-':>9}"
        print(f"{r['condition']:28} {r['host']:8} {stored} {r['predicted']:9.2f} {r['adjusted']:9.2f} "
              f"{r['span']:9.2f} {r['timings'].get('image', 0.0):8.2f} {ratio:6.2f} {met:>6}")
    print("(predicted: the server's, from this machine's calibration; for link: the same with the image stream "
          "term at the link's or disk's rate where that is slower; ratio: measured / for link, goal within 1.25x)")


def main(argv: list[str] | None = None) -> int:
    global DISK_MIB, RUNS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=DEFAULT_SCALE,
                        help=f"size scale of the demo repository (default {DEFAULT_SCALE}; 1 = build/repo)")
    parser.add_argument("--links", action="store_true", help="also AIS over shaped links and onto a slow disk")
    parser.add_argument("--links-only", action="store_true",
                        help="only those rows (caches b and c are still built: c's budget comes from b)")
    parser.add_argument("--disk-rate", type=float, default=40.0, help="the slow disk's write rate, MB/s")
    parser.add_argument("--site", choices=("demo", "real"), default="demo",
                        help="the demo repository (default) or the real site (make real-site)")
    parser.add_argument("--runs", type=int, default=RUNS, help=f"reinstalls per host and way (default {RUNS})")
    args = parser.parse_args(argv)
    RUNS = args.runs
    configure(args.scale, args.site)
    if args.site == "real":
        if not (REPO / "repodata" / "repomd.xml").is_file():
            raise SystemExit("no real site: run `make real-site` first")
        print(f"real site {REPO.relative_to(ROOT)}: {len(list(REPO.glob('RPMS/*/*.rpm')))} RPMs")
    else:
        t0 = time.monotonic()
        built = build_repo(SPECS, REPO, scale=args.scale, echo=lambda line: None)
        print(f"repository {REPO.relative_to(ROOT)} (scale {args.scale}): {len(built.rpms)} RPMs, "
              f"{len(built.built)} built in {time.monotonic() - t0:.1f}s")
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    site = load_site(DESCRIPTORS, REPO)
    DISK_MIB = disk_mib_for(site)
    for host in HOSTS:
        conf = next(c for c in site.configurations if c.name == next(h.scd for h in site.hosts if h.name == host))
        print(f"  {host}: {conf.name}, {len(conf.packages)} RPMs, "
              f"{sum(p.installed_size for p in conf.packages) / 2**20:.0f} MiB installed, "
              f"{sum(p.file_count for p in conf.packages)} files")
    t0 = time.monotonic()
    model, _, _ = calibrate(site, REPO, disk_bytes=DISK_MIB << 20, echo=lambda line: None,
                            max_sets=6 if args.site == "real" else 24)
    save_calibration(model, COST)
    print(f"calibrated in {time.monotonic() - t0:.1f}s")
    t0 = time.monotonic()
    caches = {"a": packages_only_cache(site, WORK / "cache-a"), "b": full_image_cache(site, WORK / "cache-b")}
    b_images = disk_bytes(site, caches["b"], with_repo=False)
    caches["c"], variant = ais_cache(WORK / "cache-c", b_images // 3)
    print(f"caches built in {time.monotonic() - t0:.1f}s; AIS plan: {variant}")
    if args.links_only:
        print_links(run_links(site, WORK / "cache-c", args.disk_rate))
        return 0
    results = {way: run_way(way, site, WORK / f"cache-{way}") for way in "abc"}

    names = {"a": "packages only", "b": "full image", "c": "AIS"}
    what = "real site" if args.site == "real" else f"scale {args.scale}"
    print(f"\n{what}: wall seconds per phase, median of {RUNS} runs, {DISK_MIB} MiB loop device, "
          f"hosts {', '.join(HOSTS)}")
    print(f"{'host':8} {'way':14} {'rpms':>4} " + " ".join(f"{p:>7}" for p in PHASES) + f" {'span':>7} {'process':>8}")
    for host in HOSTS:
        for way in "abc":
            r = results[way][host]
            cells = " ".join(f"{r['timings'].get(p, 0.0):7.3f}" for p in PHASES)
            print(f"{host:8} {names[way]:14} {r['remainder']:4d} {cells} {r['span']:7.3f} {r['wall']:8.3f}"
                  f"  spread {r['spread'][0]:.2f}..{r['spread'][2]:.2f}")
    totals = {way: sum(results[way][h]["span"] for h in HOSTS) for way in "abc"}
    print("\nsum of spans (image..fsck) over the hosts: " + ", ".join(f"{names[w]} {totals[w]:.3f}s" for w in "abc"))

    disk = {"a": disk_bytes(site, caches["a"], True), "b": b_images, "c": disk_bytes(site, caches["c"], False),
            "c+repo": disk_bytes(site, caches["c"], True)}
    print(f"\nserver disk for all {len(site.configurations)} {args.site} configurations:")
    print(f"  (a) packages only: {disk['a'] / 1e6:8.1f} MB (the RPMs)")
    print(f"  (b) full images:   {disk['b'] / 1e6:8.1f} MB ({len(caches['b']['images'])} images)")
    print(f"  (c) AIS:           {disk['c'] / 1e6:8.1f} MB images ({len(caches['c']['images'])}), "
          f"{disk['c+repo'] / 1e6:.1f} MB with the RPMs it also needs")

    print("\nAIS predicted vs measured (span image..fsck):")
    errors = []
    for host in HOSTS:
        r = results["c"][host]
        err = (r["predicted"] - r["span"]) / r["span"]
        errors.append(abs(err))
        print(f"  {host:8} predicted {r['predicted']:7.3f}s measured {r['span']:7.3f}s  error {err:+.0%}")
        print("           " + phase_comparison(r))

    ratio_b = totals["c"] / totals["b"]
    ratio_a = totals["a"] / totals["c"]
    print("\ngoals:")
    print(f"  AIS within 1.25x of full images:     {ratio_b:.2f}x  {'met' if ratio_b <= 1.25 else 'MISSED'}")
    print(f"  AIS >= 3x faster than packages only: {ratio_a:.2f}x  {'met' if ratio_a >= 3 else 'MISSED'}")
    share = disk["c"] / disk["b"]
    print(f"  AIS images <= 1/3 of (b)'s disk:     {share:.2f}  {'met' if share <= 1 / 3 else 'MISSED'}"
          f"  (with RPMs: {disk['c+repo'] / disk['b']:.2f})")
    worst = max(errors)
    print(f"  predicted within +-20% of measured:  worst {worst:.0%}  {'met' if worst <= 0.2 else 'MISSED'}")
    if args.links:
        print_links(run_links(site, WORK / "cache-c", args.disk_rate))
    (WORK / "results.json").write_text(json.dumps({"site": args.site, "scale": args.scale, "disk_mib": DISK_MIB,
                                                   "variant": variant, "runs": RUNS,
                                                   "results": results, "disk": disk}, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
