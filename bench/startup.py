"""Python start-up on the client path (run by `make bench-startup`).

What it does: times, as whole processes, `ais client --help` (what every
`ais client <step>` pays before its work: the interpreter and the modules of the
client) against `ais --help` (every subsystem imported: what each step paid
before the CLI imported only the command's own module), with peak memory; then
runs one real ais-boot reinstall (a real `ais serve`, a loop-device disk, the
demo repository) with `AIS` pointing at a wrapper that runs each `ais` process
ais-boot starts with -X importtime and times it. A process's start-up is the bare
interpreter's (`python -I -S -c pass`, median of N) plus the time it spent in
imports (its top-level imports' cumulative times). Prints both tables and the
start-up of the whole reinstall, against every subsystem imported in each
process (what each step paid before the CLI imported only its command).
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
# Each `ais` ais-boot starts runs with -X importtime (PYTHONPROFILEIMPORTTIME) into
# its own file; its other stderr lines go back to the console.
WRAPPER = """#!/bin/sh
n=$(ls "{dir}" | wc -l)
start=$(date +%s.%N)
PYTHONPROFILEIMPORTTIME=1 "{ais}" "$@" 2> "{dir}/$n.err"
code=$?
echo "$start $(date +%s.%N) $1 $2" > "{dir}/$n.call"
grep -v '^import time:' "{dir}/$n.err" >&2
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


def import_seconds(err_text: str) -> float:
    """Seconds a process spent importing: the sum of its top-level imports' cumulative times."""
    total = 0
    for line in err_text.splitlines():
        if line.startswith("import time:") and "|" in line:
            _, cumulative, name = line.split("|")
            if not name.startswith("  ") and cumulative.strip().isdigit():  # top level only
                total += int(cumulative)
    return total / 1e6


def one_ais_boot(work: Path) -> tuple[float, list[tuple[float, float, str]]]:
    """Wall of one real ais-boot reinstall and (wall s, import s, subcommand) of each `ais` it started."""
    descriptors = subset_descriptors(ROOT / "descriptors", work / "descriptors", [SCD], [HOST])
    cost = work / "cost.json"
    save_calibration(CostModel(image_fixed_s=0.1, stream_bytes_per_s=300e6), cost)
    repo = ROOT / "build" / "repo"
    publish_base_cache(descriptors, repo, work / "cache", cost=cost)
    calls_dir = work / "calls"
    calls_dir.mkdir()
    wrapper = work / "ais-wrapper"
    wrapper.write_text(WRAPPER.format(ais=ais_command()[0], dir=calls_dir))
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
    for call in sorted(calls_dir.glob("*.call"), key=lambda p: int(p.stem)):
        start, end, *words = call.read_text().split()
        imported = import_seconds(call.with_suffix(".err").read_text())
        calls.append((float(end) - float(start), imported, " ".join(words)))
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
    bare = startup([sys.executable, "-I", "-S", "-c", "pass"], args.runs)[0]
    per_process = [bare + imported for _, imported, _ in calls]
    print(f"\nmachine: {os.cpu_count()} CPUs, {sys.version.split()[0]}; {args.runs} runs each, median (min)\n")
    print("| what | wall s | peak RSS MiB |")
    print("| --- | ---: | ---: |")
    print(f"| `ais client --help` (client modules only) | {client[0]:.3f} ({client[1]:.3f}) | {client[2] / 1024:.0f} |")
    print(f"| `ais --help` (every subsystem, as each step paid before) | {everything[0]:.3f} ({everything[1]:.3f}) "
          f"| {everything[2] / 1024:.0f} |")
    print(f"| bare interpreter (`python -I -S -c pass`) | {bare:.3f} | |")
    print(f"\none ais-boot reinstall of {HOST}: {wall:.2f} s wall, {n} `ais` processes, "
          f"{sum(w for w, _, _ in calls):.2f} s inside them\n")
    print("| ais process | wall s | imports s | start-up s (interpreter + imports) |")
    print("| --- | ---: | ---: | ---: |")
    for (seconds, imported, what), started in zip(calls, per_process):
        print(f"| `ais {what}` | {seconds:.3f} | {imported:.3f} | {started:.3f} |")
    total = sum(per_process)
    print(f"\nPython start-up of the whole reinstall: {total:.2f} s over {n} processes (target < 1 s: "
          f"{'met' if total < 1 else 'missed'}); with every subsystem imported in each, as before: "
          f"about {n * everything[0]:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
