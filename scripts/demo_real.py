"""`make demo-real`: the whole AIS story on the real site (Debian bookworm's own packages as RPMs).

validate descriptors-real -> calibrate the cost model on the real site (once) -> plan within
descriptors-real/cache-budget -> build the image cache -> `ais serve` on loopback -> reinstall
two hosts of different configurations onto loop-device disks full of garbage with the real
client -> check what landed: `rpm -qa` is exactly the configuration, `rpm -Va` is clean, the
host files, `e2fsck` -> predicted vs measured.

The repository comes from `make real-site` (build/real-repo; aislab.debsite writes the SCDs
of descriptors-real from this machine's apt lists). Every step is the real command; this
script strings them together, reusing scripts/demo.py's pieces. Needs root (loop devices).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

from aislab.disks import LoopDisk, reinstall_argv, target_facts  # noqa: E402
from ais.descriptors import load_site  # noqa: E402
from aislab.site import ServeProcess  # noqa: E402
from demo import ais, banner  # noqa: E402

DESCRIPTORS, REPO, CACHE = ROOT / "descriptors-real", ROOT / "build" / "real-repo", ROOT / "build" / "real-cache"
WORK = ROOT / "build" / "demo-real"
HOSTS = ("web01", "db01")  # a web server and a database server at the security patch level
DISK_MIB = 4096
WHERE = ("--descriptors", str(DESCRIPTORS), "--repo", str(REPO), "--cache", str(CACHE))


def reinstall(server: ServeProcess, site, host: str) -> dict:
    hcd = next(h for h in site.hosts if h.name == host)
    with LoopDisk(WORK / f"{host}.disk", DISK_MIB) as disk:
        disk.fill_random(16)  # a disk that held something else
        argv = reinstall_argv(server.url, host, hcd.token, disk.device, WORK / f"state-{host}")
        print(f"$ ais client reinstall --server {server.url} --host {host} --target {disk.device} --token ...",
              flush=True)
        started = time.monotonic()
        if subprocess.run(argv, cwd=ROOT).returncode != 0:
            raise SystemExit(f"demo stopped: reinstall of {host} failed")
        wall = time.monotonic() - started
        facts = target_facts(disk.device, [f.path for f in hcd.files])
    conf = site.configuration(hcd.scd)
    va = set(facts["rpm_va"].splitlines())
    return {
        "host": host, "scd": conf.name, "wall": wall, "record": facts["record"], "packages": len(conf.nevras),
        "rpm_qa_matches": facts["nevras"] == set(conf.nevras),
        "rpm_va_clean": not va, "rpm_va": sorted(va),
        "files_match": all(facts["files"][f.path][0] == f.content for f in hcd.files),
        "fsck_ok": facts["fsck_rc"] == 0,
    }


def rpm_accepts_every_configuration(site) -> bool:
    """rpm's transaction check agrees with libsolv's closure of each SCD (prints one line each)."""
    import tempfile

    from ais.rpmenv import install_flags, rpm_cmd
    from ais.run import run

    agree = True
    for conf in site.configurations:
        with tempfile.TemporaryDirectory(prefix="ais-rpm-test-") as root:
            files = [REPO / p.filename for p in conf.packages]
            proc = run(rpm_cmd(Path(root), "-i", "--test", *install_flags(), *files), check=False, timeout=900)
        agree = agree and proc.returncode == 0
        verdict = "rpm accepts" if proc.returncode == 0 else "rpm REFUSES:\n" + (proc.stdout + proc.stderr)[-2000:]
        print(f"  {conf.name:12} {len(conf.packages):4} packages  {verdict}", flush=True)
    return agree


def main() -> int:
    if not (REPO / "repodata" / "repomd.xml").is_file():
        raise SystemExit("no real site yet: run `make real-site` first")
    WORK.mkdir(parents=True, exist_ok=True)
    banner("1. validate the real site's descriptors")
    ais("validate", "--descriptors", str(DESCRIPTORS), "--repo", str(REPO))
    banner("1b. libsolv's answer against rpm's own: `rpm -i --test` of every configuration into an empty root")
    if not rpm_accepts_every_configuration(load_site(DESCRIPTORS, REPO)):
        return 1
    banner("2. measure this machine on the real site (once; delete build/real-cache/cost.json to measure again)")
    if (CACHE / "cost.json").exists():
        print(f"using {CACHE / 'cost.json'}")
    else:
        ais("calibrate", "--max-sets", "6", *WHERE)
    banner("3. plan the image cache within the budget in descriptors-real/cache-budget")
    budget = (DESCRIPTORS / "cache-budget").read_text().strip()
    ais("plan", "--budget", budget, "--out", str(WORK / "plan.json"), "--explain", "web-2", *WHERE)
    banner("4. build it (what cron runs)")
    ais("rebuild", "--budget", budget, *WHERE)
    ais("cache", "status", *WHERE)
    banner("5. serve, and reinstall two hosts onto loop-device disks full of garbage")
    site = load_site(DESCRIPTORS, REPO)
    with ServeProcess(DESCRIPTORS, REPO, CACHE, WORK / "history.sqlite", log_path=WORK / "serve.log") as server:
        print(f"ais serve listening at {server.url} (log: {WORK / 'serve.log'})", flush=True)
        results = [reinstall(server, site, host) for host in HOSTS]
    banner("6. what landed")
    print(f"{'host':7} {'SCD':7} {'RPMs':>5} {'image':14} {'remainder':>9} {'predicted':>9} {'measured':>9} "
          f"{'rpm -qa':>8} {'rpm -Va':>8} {'files':>6} {'fsck':>5}")
    ok = True
    for r in results:
        rec = r["record"]
        image = rec["image"]["id"][:12] if rec.get("image") else "packages only"
        checks = [r["rpm_qa_matches"], r["rpm_va_clean"], r["files_match"], r["fsck_ok"]]
        ok = ok and all(checks)
        marks = ["ok" if c else "WRONG" for c in checks]
        print(f"{r['host']:7} {r['scd']:7} {r['packages']:>5} {image:14} {len(rec.get('remainder', [])):>9} "
              f"{rec['predicted_seconds']:>8.2f}s {rec['measured_seconds']:>8.2f}s "
              f"{marks[0]:>8} {marks[1]:>8} {marks[2]:>6} {marks[3]:>5}")
        for line in r["rpm_va"]:
            print(f"        rpm -Va: {line}")
    print("\nserver stopped; install history in", WORK / "history.sqlite")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
