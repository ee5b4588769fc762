"""Cache benchmark: build cost, packer speed, incremental rebuilds, stored bytes.

Run: `make bench-cache` (or `.venv/bin/python bench/cache.py [--repeat N] [--scale N]`);
`make bench-cache SITE=real` (`--site real`): on the real site (Debian bookworm's own
packages, `make real-site`), step 1 for EVERY configuration (min/median/max over --repeat
runs, default 3 there) and step 2 on the largest; steps 3-4 are the demo's.
`--scale N` (default 1) uses the demo repository built at size scale N
(`python -m aislab.demo_repo --scale N` into build/repo-xN, incremental; same names and
versions, N times the bytes and tree files) and an N GiB budget.
Prints a table. Everything runs in a temporary directory on the same disk as
build/ (so rpm, mke2fs and the packer see the same storage as a real cache).

1. Building one image (the largest demo configuration) with ais.cache.build
   (rpm transaction, rpmdb check, mke2fs -d, e2fsck -fn, rpmdb check inside the
   image, pack) against a plain `rpm --root -i` of the same set plus `mke2fs -d`
   (target: at most 1.3x).
2. The packer's MB/s against `zstd -T0 -3` on the same filesystem image.
3. A full `ais rebuild` of the demo descriptors (copied to the temp dir), then an
   incremental one after one SCD gains a patch-level package: time, images and
   bytes built (target: only the images whose package set changed).
4. Compression: stored bytes against raw filesystem bytes for the demo cache.

The demo's default cost model keeps no image at all (the demo packages are
small); the benchmark uses a cost model under which images pay off
(rpm 2 s per package, 0.5 s fixed imaging cost) and a 1 GiB budget (N GiB at
scale N), so the planner keeps one image per configuration and its shared base.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ais.cache import manifest as manifests  # noqa: E402
from ais.cache.build import build_fs, build_image, content_usage  # noqa: E402
from ais.cache.store import Store  # noqa: E402
from ais.descriptors import load_site  # noqa: E402
from ais.cost import CostModel, save_calibration  # noqa: E402
from aislab.demo_repo import build_repo, default_out  # noqa: E402
from ais.rpmenv import rpm_install  # noqa: E402
from ais.run import run  # noqa: E402
from ais.stream.pack import pack  # noqa: E402
from aislab.net import ais_command  # noqa: E402

MiB = 1 << 20


def timed(fn, *args, **kwargs) -> tuple[float, object]:
    started = time.perf_counter()
    value = fn(*args, **kwargs)
    return time.perf_counter() - started, value


def plain_install_and_mkfs(packages, repo: Path, work: Path) -> float:
    """What a hand-made image costs: rpm --root -i of the set, then mke2fs -d."""
    root = work / "root"
    root.mkdir(parents=True)
    started = time.perf_counter()
    rpm_install(root, [repo / p.filename for p in packages])
    content, inodes = content_usage(root)
    size = (content * 5 // 4 + inodes * 256 + 16 * MiB) // MiB + 1
    run(["mke2fs", "-q", "-F", "-t", "ext4", "-b", "4096", "-d", str(root), str(work / "fs.img"), f"{size}M"])
    seconds = time.perf_counter() - started
    shutil.rmtree(work)
    return seconds


def bench_build(site, repo: Path, tmp: Path, repeat: int) -> list[tuple[str, str]]:
    conf = max(site.configurations, key=lambda c: len(c.packages))
    packages = list(conf.packages)
    ours, plain = [], []
    steps: dict[str, list[float]] = {}
    for i in range(repeat):
        plain.append(plain_install_and_mkfs(packages, repo, tmp / f"plain-{i}"))
        store = Store(tmp / f"store-{i}")
        store.ensure()
        seconds, record = timed(build_image, store, packages, repo, key="bench")
        ours.append(seconds)
        store.drain()  # the staging root is deleted in the background, like the plain one, untimed
        for k, v in record["step_seconds"].items():
            steps.setdefault(k, []).append(v)
        shutil.rmtree(store.root)
    ratio = statistics.median(ours) / statistics.median(plain)
    detail = ", ".join(f"{k} {statistics.median(v):.2f}s" for k, v in steps.items())
    return [
        (f"build {conf.name} ({len(packages)} pkgs), median of {repeat}",
         f"{statistics.median(ours):.2f}s ({detail})"),
        ("plain rpm --root -i + mke2fs -d, same set", f"{statistics.median(plain):.2f}s"),
        ("build / plain (target <= 1.3)", f"{ratio:.2f} {'MET' if ratio <= 1.3 else 'MISSED'}"),
    ], packages


def bench_packer(packages, repo: Path, tmp: Path, repeat: int) -> list[tuple[str, str]]:
    work = tmp / "packer"
    work.mkdir()
    fs = build_fs(packages, repo, work, label="bench")
    used = int(run(["dumpe2fs", "-h", str(fs.path)]).stdout.split("Block count:")[1].split()[0])
    free = int(run(["dumpe2fs", "-h", str(fs.path)]).stdout.split("Free blocks:")[1].split()[0])
    used_bytes = (used - free) * 4096
    ours, theirs = [], []
    for i in range(repeat):
        seconds, header = timed(pack, fs.path, work / f"out-{i}.aisimg", image_id="bench",
                                packages=sorted(fs.nevras))
        ours.append(seconds)
        started = time.perf_counter()
        run(["zstd", "-q", "-T0", "-3", "-f", str(fs.path), "-o", str(work / f"out-{i}.zst")])
        theirs.append(time.perf_counter() - started)
    zst = (work / "out-0.zst").stat().st_size
    stored = header.stored_bytes
    shutil.rmtree(work)
    fs_mb = fs.fs_bytes / 1e6
    return [
        (f"filesystem image: {fs.fs_bytes / MiB:.0f} MiB, used {used_bytes / MiB:.1f} MiB", ""),
        ("packer (used blocks, 1 MiB chunks, zstd 3)",
         f"{fs_mb / statistics.median(ours):.0f} MB/s of filesystem, "
         f"{used_bytes / 1e6 / statistics.median(ours):.0f} MB/s of used data, "
         f"{stored / MiB:.1f} MiB out"),
        ("zstd -T0 -3 on the whole filesystem image",
         f"{fs_mb / statistics.median(theirs):.0f} MB/s of filesystem, {zst / MiB:.1f} MiB out"),
    ]


def spread(values: list[float]) -> str:
    v = sorted(values)
    return f"{statistics.median(v):.1f}s ({v[0]:.1f}..{v[-1]:.1f})"


def bench_build_each(site, repo: Path, tmp: Path, repeat: int) -> tuple[list[tuple[str, str]], list]:
    """Step 1 for every configuration: the image builder against rpm --root + mke2fs -d."""
    rows, ratios = [], []
    for conf in sorted(site.configurations, key=lambda c: c.name):
        packages = list(conf.packages)
        ours, plain = [], []
        for i in range(repeat):
            plain.append(plain_install_and_mkfs(packages, repo, tmp / f"plain-{conf.name}-{i}"))
            store = Store(tmp / f"store-{conf.name}-{i}")
            store.ensure()
            seconds, _ = timed(build_image, store, packages, repo, key="bench")
            ours.append(seconds)
            store.drain()
            shutil.rmtree(store.root)
        ratio = statistics.median(ours) / statistics.median(plain)
        ratios.append(ratio)
        installed = sum(p.installed_size for p in packages) / MiB
        rows.append((f"{conf.name} ({len(packages)} RPMs, {installed:.0f} MiB): build / plain",
                     f"{spread(ours)} / {spread(plain)} = {ratio:.2f}"))
        print(f"  {rows[-1][0]}  {rows[-1][1]}", flush=True)
    worst = max(ratios)
    rows.append(("worst build / plain (target <= 1.3)", f"{worst:.2f} {'MET' if worst <= 1.3 else 'MISSED'}"))
    largest = max(site.configurations, key=lambda c: sum(p.installed_size for p in c.packages))
    return rows, list(largest.packages)


def ais_rebuild(descriptors: Path, repo: Path, cache: Path, cost: Path, budget: str) -> tuple[float, str]:
    started = time.perf_counter()
    proc = subprocess.run([*ais_command(), "rebuild", "--descriptors", str(descriptors),
                           "--repo", str(repo), "--cache", str(cache), "--budget", budget,
                           "--cost", str(cost), "--json"],
                          cwd=ROOT, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"ais rebuild failed:\n{proc.stderr}")
    return time.perf_counter() - started, proc.stdout


def bench_rebuild(repo: Path, tmp: Path, budget: str) -> list[tuple[str, str]]:
    import json

    descriptors = tmp / "descriptors"
    shutil.copytree(ROOT / "descriptors", descriptors)
    cost = tmp / "cost.json"
    save_calibration(CostModel(rpm_per_package_s=2.0, image_fixed_s=0.5), cost)
    cache = tmp / "cache"
    full_s, out = ais_rebuild(descriptors, repo, cache, cost, budget)
    full = json.loads(out)
    full_bytes = sum(r["stored_bytes"] for r in full["built"].values())
    ais_rebuild(descriptors, repo, cache, cost, budget)  # settle: the plan now uses measured sizes
    before = manifests.read(Store(cache))
    scd = descriptors / "scd" / "mail.xml"  # mail gains the newer OpenSSL patch level
    scd.write_text(scd.read_text().replace(
        "</scd>", '  <package name="libssl" version="3.0.1" release="2"/>\n</scd>'))
    inc_s, out = ais_rebuild(descriptors, repo, cache, cost, budget)
    inc = json.loads(out)
    after = manifests.read(Store(cache))
    changed = set(after["images"]) - set(before["images"])
    inc_bytes = sum(r["stored_bytes"] for r in inc["built"].values())
    only = set(inc["built"]) == changed
    published = after["images"].values()
    stored = sum(r["stored_bytes"] for r in published)
    fs_bytes = sum(r["fs_bytes"] for r in published)
    raw = sum(r.get("raw_bytes", 0) for r in published)
    return [
        (f"full rebuild of the demo ({len(full['built'])} images)",
         f"{full_s:.2f}s, {full_bytes / MiB:.1f} MiB built"),
        ("incremental: mail gains libssl-3.0.1-2",
         f"{inc_s:.2f}s, {len(inc['built'])} image(s), {inc_bytes / MiB:.1f} MiB built, "
         f"{len(inc['remove'])} removed"),
        ("  rebuilt only images whose set changed", f"{'MET' if only else 'MISSED'} "
         f"({len(changed)} changed set(s))"),
        (f"demo cache: {len(after['images'])} images", f"{stored / MiB:.1f} MiB stored"),
        ("  filesystem bytes / stored", f"{fs_bytes / MiB:.1f} MiB / {stored / MiB:.1f} MiB = "
         f"{fs_bytes / stored:.1f}x"),
        ("  used data bytes / stored (compression)", f"{raw / MiB:.1f} MiB / {stored / MiB:.1f} MiB = "
         f"{raw / stored:.2f}x"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=None, help="runs per measure (default 5; 3 with --site real)")
    parser.add_argument("--site", choices=("demo", "real"), default="demo",
                        help="the demo repository (default) or the real site (make real-site)")
    parser.add_argument("--scale", type=int, default=1,
                        help="size scale of the demo repository (default 1: build/repo; N: build/repo-xN)")
    parser.add_argument("--repo", type=Path, default=None,
                        help="repository to use as is (default: build/repo or build/repo-xN, built first)")
    args = parser.parse_args()
    if args.site == "real":
        return main_real(args.repeat or 3)
    args.repeat = args.repeat or 5
    if args.repo is None:
        args.repo = default_out(ROOT / "build" / "repo", args.scale)
        build_repo(ROOT / "packages", args.repo, scale=args.scale, echo=lambda line: None)
    budget = f"{args.scale}G"
    site = load_site(ROOT / "descriptors", args.repo)
    print(f"repository {args.repo} (scale {args.scale}), budget {budget}")
    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory(dir=ROOT / "build", prefix="bench-cache-") as tmp:
        tmp = Path(tmp)
        build_rows, packages = bench_build(site, args.repo, tmp, args.repeat)
        rows += build_rows
        rows += bench_packer(packages, args.repo, tmp, args.repeat)
        rows += bench_rebuild(args.repo, tmp, budget)
    width = max(len(a) for a, _ in rows)
    print(f"{'measure':<{width}}  result")
    print(f"{'-' * width}  {'-' * 40}")
    for a, b in rows:
        print(f"{a:<{width}}  {b}")


def main_real(repeat: int) -> None:
    repo = ROOT / "build" / "real-repo"
    if not (repo / "repodata" / "repomd.xml").is_file():
        raise SystemExit("no real site: run `make real-site` first")
    site = load_site(ROOT / "descriptors-real", repo)
    print(f"real site {repo}: {len(site.configurations)} configurations, {repeat} runs each")
    with tempfile.TemporaryDirectory(dir=ROOT / "build", prefix="bench-cache-") as tmp:
        tmp = Path(tmp)
        rows, packages = bench_build_each(site, repo, tmp, repeat)
        rows += bench_packer(packages, repo, tmp, repeat)
    width = max(len(a) for a, _ in rows)
    print(f"{'measure':<{width}}  result (median, min..max)")
    print(f"{'-' * width}  {'-' * 40}")
    for a, b in rows:
        print(f"{a:<{width}}  {b}")


if __name__ == "__main__":
    main()
