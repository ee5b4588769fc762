"""Boot to boot under QEMU: three deliveries, and kexec against a firmware reboot (run by `make bench-boot`).

What it does:
1. Builds the boot environment (`ais bootenv build`, cached in build/test-bootenv), calibrates
   the cost model on this machine and builds bench/install.py's three caches over the whole
   demo site (scale 1, build/repo): (a) packages only, (b) one full image per configuration,
   (c) AIS (the real `ais rebuild` under a budget of 1/3 of (b)'s image bytes).
2. For each delivery, `--runs` times: a real `ais serve` over that cache (boot routes on),
   one TCG VM (1 vCPU, 1 GiB) with the host's MAC and a blank 1 GiB disk boots from the
   network (firmware iPXE -> the host's script -> boot environment -> ais-boot reinstalls
   /dev/vda -> `ais client reboot` kexecs into the installed kernel -> firstboot reports
   "up" -> power-off). The bench's clock times QEMU start -> the boot environment's kernel
   starts and -> "up" stored (console lines); the phases come from the real
   `ais history HOST --json` (spans from the boot environment's kernel start on);
   firmware+iPXE = QEMU start -> up (bench) minus the history's boot-to-boot.
3. The firmware path: AIS's delivery once more with `ais.reboot=firmware`; the VM ends at
   the reboot (-no-reboot). A second QEMU run is the machine's next power-on: SeaBIOS, iPXE
   asks the server, which answers the local-boot script once (sanboot drive 0x80), and the
   disk's EXTLINUX (the client's bootloader step) starts the installed kernel. SeaBIOS has
   no real POST (10-60 s on real machines): a LOWER bound for a real firmware reboot. Reboot -> up is
   measured from the end of the success report's last span (both paths then start the
   same `ais client reboot`) to the end of the "up" span, the bench's gap between the two
   QEMU runs taken out.
Every VM runs under `timeout` and is killed when the bench ends.
What it reads: the demo descriptors, build/repo (`make packages`), apt's lists.
Writes build/bench-boot/ (caches, disks, consoles, histories).
What it fails on: a step that does not come (the console's tail is shown), a failed
command; exit 1.
What it returns: prints the commands and markdown tables; exit 0.
Run: `make bench-boot` (or `.venv/bin/python bench/boot.py [--runs N] [--host H]`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sqlite3
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import install  # noqa: E402  bench/install.py: the three caches
from ais.calibrate.measure import calibrate  # noqa: E402
from ais.cost import save_calibration  # noqa: E402
from ais.descriptors import load_site  # noqa: E402
from ais.errors import AisError  # noqa: E402
from ais.run import run  # noqa: E402
from aislab.net import ais_command  # noqa: E402
from aislab.qemu import TEST_BOOTENV, Vm, blank_disk, build_bootenv  # noqa: E402
from aislab.site import ServeProcess  # noqa: E402

WORK = ROOT / "build" / "bench-boot"
DISK_MIB = 1024
VM_TIMEOUT = 900
APPEND = "console=ttyS0 ais.final=poweroff"
KERNEL_LINE = "Linux version"
DELIVERIES = {"a": "packages only", "b": "full image", "c": "AIS"}
REBOOT_PHASES = ("kexec-load", "kexec", "firmware", "reboot", "up")
# history phases grouped into the table's columns (every other name gets a column of its own)
COLUMNS = {"identify": "identify+plan+check", "plan": "identify+plan+check", "check": "identify+plan+check",
           "image": "image+grow", "grow": "image+grow", "mount": "mount..fsck", "record": "mount..fsck",
           "unmount": "mount..fsck", "fsck": "mount..fsck", "kexec-load": "kexec", "kexec": "kexec"}
ORDER = ("firmware+iPXE", "bootenv", "identify+plan+check", "image+grow", "install", "files", "verify",
         "mount..fsck", "report", "between steps", "kexec", "up")


def say(text: str) -> None:
    print(text, flush=True)


def ais_out(*args: str, timeout: float = 120) -> str:
    """Run the real `ais` with args; its stdout (AisError on a failure, with stderr's tail)."""
    proc = run([*ais_command(*args)], check=False, timeout=timeout)
    if proc.returncode != 0:
        raise AisError(f"ais {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc.stdout


def prepare_caches(site) -> dict[str, Path]:
    """Calibrate, then bench/install.py's three caches (scale 1) with the boot environment linked in."""
    install.configure(1)
    install.COST = WORK / "cost.json"
    started = time.monotonic()
    model, _, _ = calibrate(site, install.REPO, disk_bytes=DISK_MIB << 20, echo=lambda line: None)
    save_calibration(model, install.COST)
    caches = {way: WORK / f"cache-{way}" for way in DELIVERIES}
    install.packages_only_cache(site, caches["a"])
    full = install.full_image_cache(site, caches["b"])
    _, variant = install.ais_cache(caches["c"], install.disk_bytes(site, full, with_repo=False) // 3)
    for cache in caches.values():
        (cache / "bootenv").symlink_to(TEST_BOOTENV / "bootenv")
    say(f"calibrated and built the three caches in {time.monotonic() - started:.0f} s; AIS: {variant}")
    return caches


def serving(cache: Path, conf: str) -> str:
    """How the cache serves the configuration: image bytes and remainder RPMs."""
    manifest = install.manifests.read(install.Store(cache))
    c = manifest["configurations"][conf]
    image = f"image {manifest['images'][c['image']]['stored_bytes'] / 1e6:.1f} MB" if c["image"] else "no image"
    return f"{image} + {len(c['remainder'])} RPMs"


def server_for(cache: Path, history: Path, append: str) -> ServeProcess:
    return ServeProcess(install.DESCRIPTORS, install.REPO, cache, history, "--advertise", "10.0.2.2",
                        "--boot-target", "/dev/vda", "--boot-append", append)


def up_line(host: str) -> str:
    return f'firstboot: report_up: the server stored "up" for {host}'


def show_command(argv: list[str]) -> None:
    say("    $ " + " ".join(str(a).replace(str(ROOT) + "/", "") for a in argv))


def netboot(server, mac: str, disk: Path, vmdir: Path, host: str, *, until_up: bool) -> dict:
    """One network boot; bench-clock seconds from QEMU start to the kernel, to "up" (until_up); when QEMU ended."""
    port = server.url.rsplit(":", 1)[1]
    with Vm(vmdir, disk=disk, mac=mac, netboot=f"http://10.0.2.2:{port}/v1/boot/ipxe/{mac}",
            timeout=VM_TIMEOUT) as vm:
        show_command(vm.argv)
        got = {"kernel": vm.wait_for_console(KERNEL_LINE, VM_TIMEOUT)}
        if until_up:
            got["up"] = vm.wait_for_console(up_line(host), VM_TIMEOUT)
        code = vm.wait(timeout=VM_TIMEOUT)
        got["wall_end"] = time.time()
        if code != 0:
            raise AisError(f"QEMU ended with {code}; console:\n{vm.console()[-3000:]}")
    return got


def last_install(host: str, history: Path, status: str) -> dict:
    """The newest install of the host by the real `ais history HOST --history FILE --json --limit 1`;
    AisError unless its status is status."""
    got = json.loads(ais_out("history", host, "--history", str(history), "--json", "--limit", "1"))
    if not got or got[0]["status"] != status:
        raise AisError(f"the history's newest install of {host} is not {status!r}: {json.dumps(got)[:2000]}")
    return got[0]


def received_at(history: Path, host: str, status: str) -> float:
    """When the server received the host's newest report of this status (its own clock, time.time())."""
    with sqlite3.connect(f"file:{history}?mode=ro", uri=True) as db:
        row = db.execute("SELECT received_at FROM reports WHERE host = ? AND status = ? ORDER BY id DESC LIMIT 1",
                         (host, status)).fetchone()
    if row is None:
        raise AisError(f"no {status!r} report of {host} in {history}")
    return row[0]


def shares(install_: dict, bench_up: float) -> dict[str, float]:
    """Seconds per table column: firmware+iPXE, the history's phases grouped, and the time between steps."""
    cols = {"firmware+iPXE": bench_up - install_["boot_to_boot"]}
    for p in install_["phases"]:
        col = COLUMNS.get(p["name"], p["name"])
        cols[col] = cols.get(col, 0.0) + (p["seconds"] or 0.0)
    known = sum(p["seconds"] or 0.0 for p in install_["phases"])
    cols["between steps"] = install_["boot_to_boot"] - known
    return cols


def phases_of(install_: dict) -> dict[str, float | None]:
    return {p["name"]: p["seconds"] for p in install_["phases"]}


def reinstall_leg_end(install_: dict) -> float:
    """Offset of the end of the success report's last span (where the reboot leg starts)."""
    steps = [p for p in install_["phases"] if p["name"] not in REBOOT_PHASES]
    return steps[-1]["start"] + steps[-1]["seconds"]


def delivery_run(way: str, server, host: str, mac: str, i: int) -> dict:
    """One boot of one delivery against its running server; figures from the bench's clock and the history."""
    history = WORK / f"history-{way}.sqlite"
    vmdir = WORK / f"vm-{way}-{i}"
    say(f"  {DELIVERIES[way]}, run {i + 1}: booting (console {vmdir.relative_to(ROOT)}/console.log)")
    got = netboot(server, mac, blank_disk(WORK / "disk.img", DISK_MIB), vmdir, host, until_up=True)
    inst = last_install(host, history, "up")
    say(f"    up after {got['up']:.1f} s (history boot-to-boot {inst['boot_to_boot']:.1f} s)")
    return {"bench_up": got["up"], "kernel": got["kernel"], "b2b": inst["boot_to_boot"],
            "cols": shares(inst, got["up"]), "reboot_up": inst["boot_to_boot"] - reinstall_leg_end(inst),
            "up": phases_of(inst)["up"],
            "served_leg": received_at(history, host, "up") - received_at(history, host, "ok")}


def interleaved_runs(caches: dict[str, Path], host: str, mac: str, runs: int) -> tuple[dict, list]:
    """Run i of every delivery, then of the firmware path, before run i + 1: the machine's load,
    which changes over minutes here, falls on every row alike. One server per delivery, all up."""
    results = {way: [] for way in DELIVERIES}
    firmware = []
    with contextlib.ExitStack() as stack:
        servers = {way: stack.enter_context(server_for(c, WORK / f"history-{way}.sqlite", APPEND))
                   for way, c in caches.items()}
        for way, server in servers.items():
            say(f"  {DELIVERIES[way]}: ais serve --cache {caches[way].relative_to(ROOT)} --advertise 10.0.2.2 "
                f"--boot-target /dev/vda --boot-append '{APPEND}' (at {server.url})")
        for i in range(runs):
            for way, server in servers.items():
                results[way].append(delivery_run(way, server, host, mac, i))
            firmware.append(firmware_run(caches["c"], host, mac, i))
    return results, firmware


def firmware_run(cache: Path, host: str, mac: str, i: int) -> dict:
    """AIS with ais.reboot=firmware, then the machine's next power-on: the firmware boots the
    network, the server answers the local-boot script once, and the disk's EXTLINUX starts it."""
    history = WORK / "history-firmware.sqlite"
    disk = blank_disk(WORK / "disk.img", DISK_MIB)
    with server_for(cache, history, f"{APPEND} ais.reboot=firmware") as server:
        say(f"  AIS, ais.reboot=firmware, run {i + 1}: reinstall (VM ends at the reboot)")
        first = netboot(server, mac, disk, WORK / f"vm-fw-{i}", host, until_up=False)
        last_install(host, history, "rebooted")
        wall = time.time()
        second = netboot(server, mac, disk, WORK / f"vm-fw2-{i}", host, until_up=True)
        if f"boot: {host} gets the local disk" not in server.log():
            raise AisError("the second boot did not get the server's local-boot answer")
        inst = last_install(host, history, "up")
    gap = wall - first["wall_end"]  # the bench's own time between the two QEMU runs
    leg = inst["boot_to_boot"] - reinstall_leg_end(inst) - gap
    served_leg = (first["wall_end"] - received_at(history, host, "ok")) + (received_at(history, host, "up") - wall)
    say(f"    up {second['up']:.1f} s after the second QEMU start; reboot -> up {leg:.1f} s (bench gap {gap:.1f} s out)")
    return {"reboot_up": leg, "served_leg": served_leg, "up": phases_of(inst)["up"], "kernel": second["kernel"],
            "second_up": second["up"]}


def spread(values: list[float]) -> str:
    med = statistics.median(values)
    return f"{med:.1f}" if len(values) == 1 else f"{med:.1f} ({min(values):.1f}-{max(values):.1f})"


def print_deliveries(results: dict[str, list[dict]], runs: int) -> None:
    cols = [c for c in ORDER if any(c in r["cols"] for rs in results.values() for r in rs)]
    cols += sorted({c for rs in results.values() for r in rs for c in r["cols"]} - set(cols))
    say(f"\n### Power-on to up, per delivery (seconds, {'median (min-max) of ' + str(runs) if runs > 1 else '1'}"
        f" run{'s' if runs > 1 else ''}; shares of the bench's total, median run)\n")
    say("| delivery | QEMU start -> up (bench) | boot-to-boot (history) | QEMU start -> kernel (console) | "
        + " | ".join(cols) + " |")
    say("| --- | --- | --- | --- | " + " | ".join("---" for _ in cols) + " |")
    for way, rs in results.items():
        med = sorted(rs, key=lambda r: r["bench_up"])[len(rs) // 2]
        cells = [f"{med['cols'].get(c, 0.0) / med['bench_up']:.0%}" for c in cols]
        say(f"| {DELIVERIES[way]} | {spread([r['bench_up'] for r in rs])} | {spread([r['b2b'] for r in rs])} | "
            f"{spread([r['kernel'] for r in rs])} | " + " | ".join(cells) + " |")
    say("\nSeconds per column, median run:\n")
    say("| delivery | " + " | ".join(cols) + " |\n| --- | " + " | ".join("---" for _ in cols) + " |")
    for way, rs in results.items():
        med = sorted(rs, key=lambda r: r["bench_up"])[len(rs) // 2]
        say(f"| {DELIVERIES[way]} | " + " | ".join(f"{med['cols'].get(c, 0.0):.1f}" for c in cols) + " |")
    up = {way: statistics.median(r["bench_up"] for r in rs) for way, rs in results.items()}
    say(f"\nratios (QEMU start -> up, medians): packages only / AIS = {up['a'] / up['c']:.2f}, "
        f"full image / AIS = {up['b'] / up['c']:.2f}")


def print_reboots(kexec: list[dict], firmware: list[dict]) -> None:
    say("\n### Reboot -> up: kexec against the firmware reboot (seconds, from the end of the success "
        "report's last span to the end of the up span)\n")
    say("| path | reboot -> up (history) | of which up (installed kernel start -> report) "
        "| success report -> up report (server's clock) |\n| --- | --- | --- | --- |")
    for name, rs in (("kexec (`ais client reboot` + kexec-load + kexec -e)", kexec),
                     ("firmware (`ais client reboot` + reboot -f + SeaBIOS + iPXE + local-boot script + EXTLINUX)",
                      firmware)):
        say(f"| {name} | {spread([r['reboot_up'] for r in rs])} | {spread([r['up'] for r in rs])} | "
            f"{spread([r['served_leg'] for r in rs])} |")
    ratios = [statistics.median(r[k] for r in firmware) / statistics.median(r[k] for r in kexec)
              for k in ("reboot_up", "served_leg")]
    say(f"\nratio firmware / kexec = {ratios[0]:.2f} (history), {ratios[1]:.2f} (server's clock). "
        "SeaBIOS has no real POST: a LOWER bound for a real firmware reboot (real POST takes 10-60 s).")
    say(f"second QEMU run: QEMU start -> installed kernel start {spread([r['kernel'] for r in firmware])} s, "
        f"-> up stored {spread([r['second_up'] for r in firmware])} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1, help="boots per row (default 1; median, min-max)")
    parser.add_argument("--host", default="db01", help="the demo host to reinstall (default db01)")
    args = parser.parse_args(argv)
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    started = time.monotonic()
    built = build_bootenv(TEST_BOOTENV)
    say(f"boot environment {built['key'][:16]} ({'built' if built['built'] else 'up to date'} in "
        f"{time.monotonic() - started:.1f} s), initramfs {built['initrd_bytes'] / 1e6:.1f} MB")
    site = load_site(install.DESCRIPTORS, ROOT / "build" / "repo")
    hcd = next((h for h in site.hosts if h.name == args.host), None)
    if hcd is None:
        raise SystemExit(f"no demo host {args.host!r}")
    caches = prepare_caches(site)
    mac = hcd.macs[0]
    say(f"host {args.host} ({hcd.scd}, MAC {mac}); VM: TCG, 1 vCPU, 1 GiB, blank {DISK_MIB} MiB virtio disk; "
        + "; ".join(f"{DELIVERIES[w]}: {serving(c, hcd.scd)}" for w, c in caches.items()))
    try:
        results, firmware = interleaved_runs(caches, args.host, mac, args.runs)
    except AisError as err:
        print(f"bench-boot: {err}", file=sys.stderr)
        return 1
    print_deliveries(results, args.runs)
    print_reboots(results["c"], firmware)
    say(f"\nwhole bench {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
