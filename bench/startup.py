"""Python start-up on the client path (run by `make bench-startup`).

What it does: times, as whole processes, `ais client --help` (what every
`ais client <step>` pays before its work: the interpreter and the modules of the
client) against `ais --help` (every subsystem imported: what each step paid
before the CLI imported only the command's own module), with peak memory; then
runs one real ais-boot reinstall (a real `ais serve`, a loop-device disk, the
demo repository) with `AIS` pointing at a wrapper that counts the `ais`
processes ais-boot starts and times each. Prints a table: per-process start-up
(median of N), the number of `ais` processes of one reinstall, their summed
start-up (count × median start-up of `ais client`), the same with every subsystem
imported, and the whole ais-boot wall time.
Target (issue "The house", item 4): all Python start-up of a reinstall under 1 s.
What it reads: the demo descriptors and build/repo (made by `make packages`).
What it fails on: a failed reinstall (exit 1, its output shown).
What it returns: prints a markdown table; exit 0.
Run: `make bench-startup` (or `.venv/bin/python bench/startup.py --runs 7`).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aislab.disks import LoopDisk  # noqa: E402
from ais.cost import CostModel, save_calibration  # noqa: E402
from aislab.site import ServeProcess, publish_base_cache, subset_descriptors  # noqa: E402
from aislab.net import ais_command  # noqa: E402

HOST, SCD, TOKEN = "db01", "db", "fb9577bf9257dd86cd19d77acdaf07b7"
WRAPPER = """#!/bin/sh
start=$(date +%s.%N)
"{ais}" "$@"
code=$?
echo "$start $(date +%s.%N) $1 $2" >> "{log}"
exit $code
"""


def timed(argv: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of one child process (os.wait4, so figures do not mix)."""
    started = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}")
    return time.monotonic() - started, usage.ru_maxrss


def startup(argv: list[str], runs: int) -> tuple[float, float, int]:
    timed(argv)  # warm the page cache
    samples = [timed(argv) for _ in range(runs)]
    walls = [w for w, _ in samples]
    return statistics.median(walls), min(walls), max(rss for _, rss in samples)


def one_ais_boot(work: Path) -> tuple[float, list[tuple[float, str]]]:
    """Wall of one real ais-boot reinstall and (seconds, subcommand) of each `ais` it started."""
    descriptors = subset_descriptors(ROOT / "descriptors", work / "descriptors", [SCD], [HOST])
    cost = work / "cost.json"
    save_calibration(CostModel(image_fixed_s=0.1, stream_bytes_per_s=300e6), cost)
    repo = ROOT / "build" / "repo"
    publish_base_cache(descriptors, repo, work / "cache", cost=cost)
    log = work / "ais-calls.log"
    wrapper = work / "ais-wrapper"
    wrapper.write_text(WRAPPER.format(ais=ais_command()[0], log=log))
    wrapper.chmod(0o755)
    with ServeProcess(descriptors, repo, work / "cache", work / "history.sqlite") as server, \
            LoopDisk(work / "disk.img", 512) as disk:
        cmdline = work / "cmdline"
        cmdline.write_text(f"ais.server={server.url} ais.target={disk.device} ais.host={HOST} "
                           f"ais.token={TOKEN} ais.transport=unicast\n")
        started = time.monotonic()
        proc = subprocess.run(["sh", str(ROOT / "ais/client/ais-boot"), "--cmdline", str(cmdline), "--state",
                               str(work / "state"), "--no-reboot"], env={**os.environ, "AIS": str(wrapper)},
                              capture_output=True, text=True, timeout=600)
        wall = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"ais-boot failed:\n{proc.stderr[-3000:]}")
    calls = []
    for line in log.read_text().splitlines():
        start, end, *words = line.split()
        calls.append((float(end) - float(start), " ".join(words)))
    return wall, calls


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7, help="timed runs of each start-up [%(default)s]")
    args = ap.parse_args()
    client = startup(ais_command("client", "--help"), args.runs)
    everything = startup(ais_command("--help"), args.runs)
    with tempfile.TemporaryDirectory(prefix="ais-bench-startup-", dir="/var/tmp") as tmp:
        wall, calls = one_ais_boot(Path(tmp))
    n = len(calls)
    print(f"\nmachine: {os.cpu_count()} CPUs, {sys.version.split()[0]}; {args.runs} runs each, median (min)\n")
    print("| what | wall s | peak RSS MiB |")
    print("| --- | ---: | ---: |")
    print(f"| `ais client --help` (client modules only) | {client[0]:.3f} ({client[1]:.3f}) | {client[2] / 1024:.0f} |")
    print(f"| `ais --help` (every subsystem, as before) | {everything[0]:.3f} ({everything[1]:.3f}) "
          f"| {everything[2] / 1024:.0f} |")
    print(f"\none ais-boot reinstall of {HOST}: {wall:.2f} s wall, {n} `ais` processes, "
          f"{sum(s for s, _ in calls):.2f} s inside them")
    print(f"Python start-up of the reinstall: {n} x {client[0]:.3f} s = {n * client[0]:.2f} s "
          f"(target < 1 s); every subsystem imported: {n * everything[0]:.2f} s "
          f"({everything[0] / client[0]:.1f}x)")
    for seconds, what in calls:
        print(f"  {seconds:6.3f} s  ais {what}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
