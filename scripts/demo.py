"""`make demo`: the whole AIS story on this machine, end to end.

validate the descriptors -> calibrate the cost model (once) -> plan within the
budget -> make the site's keys and CA (once), the server's TLS certificate -> sign
a copy of the demo repository (build/demo/repo; build/repo stays unsigned for the
tests) -> build the image cache from it, its manifest signed, its images carrying
the RPM key -> `ais serve` over TLS on loopback -> reinstall two demo hosts of
different configurations onto loop-device disks with the real client, which pins
the key and the CA -> check what landed (rpm -qa, e2fsck, host files) -> predicted
vs measured -> build the boot environment, and boot a QEMU virtual machine from
the network (iPXE fetches its script, kernel and initrd from the plain-HTTP boot
listener): it checks the server's certificate against the site CA and its plan's
signature against the site key, both pinned in its boot environment, reinstalls
its own disk, kexecs into the installed system, which reports "up" over https
-> `ais history` of that host, boot to boot -> `ais report`: the
console's cache, plan and hosts pages as one HTML file (build/demo/report.html).

Every step is the real command an admin or a booting machine runs; this script
only strings them together and prints what happened. Needs root (loop devices).
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aislab.disks import LoopDisk, reinstall_argv, target_facts  # noqa: E402
from ais.descriptors import load_site  # noqa: E402
from aislab.site import ServeProcess  # noqa: E402
from aislab.net import ais_command  # noqa: E402

DESCRIPTORS, CACHE = ROOT / "descriptors", ROOT / "build" / "cache"
WORK = ROOT / "build" / "demo"
SOURCE_REPO = ROOT / "build" / "repo"  # `make packages`: unsigned (the tests use it as it is)
REPO = WORK / "repo"  # its copy, signed by `ais site sign-rpms`: what the demo builds from and serves
SITE_KEY = CACHE / "site" / "site-key.pub"  # `ais site init`: plans are signed, clients pin this
RPM_KEY = CACHE / "site" / "rpm-key.asc"  # `ais site init` too: signs the RPMs
SITE_CA = CACHE / "site" / "ca.pem"  # `ais site init` too: signs the server's TLS certificate, clients trust it
HOSTS = ("node01", "mail01")  # an HPC node (weighted heavily) and a mail server: different configurations
DISK_MIB = 512
VM_HOST = "node01"  # boots as a virtual machine at the end


def banner(text: str) -> None:
    print(f"\n=== {text}", flush=True)


def ais(*args: str) -> None:
    """Run an `ais` command as an admin would, output straight to the terminal."""
    argv = [*ais_command(), *args]
    print("$ ais " + " ".join(args), flush=True)
    if subprocess.run(argv, cwd=ROOT).returncode != 0:
        raise SystemExit(f"demo stopped: `ais {' '.join(args)}` failed")


def reinstall(server: ServeProcess, site, host: str) -> dict:
    token = next(h.token for h in site.hosts if h.name == host)
    with LoopDisk(WORK / f"{host}.disk", DISK_MIB) as disk:
        disk.fill_random(8)  # a disk that held something else
        argv = reinstall_argv(server.url, host, token, disk.device, WORK / f"state-{host}",
                              "--site-key", str(SITE_KEY), "--site-ca", str(SITE_CA))
        print(f"$ ais client reinstall --server {server.url} --host {host} --target {disk.device} --token ... "
              f"--site-key {SITE_KEY.relative_to(ROOT)} --site-ca {SITE_CA.relative_to(ROOT)}", flush=True)
        started = time.monotonic()
        if subprocess.run(argv, cwd=ROOT).returncode != 0:
            raise SystemExit(f"demo stopped: reinstall of {host} failed")
        wall = time.monotonic() - started
        paths = [f.path for f in next(h for h in site.hosts if h.name == host).files]
        facts = target_facts(disk.device, paths)
    conf = site.configuration(next(h.scd for h in site.hosts if h.name == host))
    expected = {f.path: f.content for f in next(h for h in site.hosts if h.name == host).files}
    return {
        "host": host, "scd": conf.name, "wall": wall, "record": facts["record"],
        "rpm_qa_matches": facts["nevras"] == set(conf.nevras),
        "files_match": all(facts["files"][p][0] == data for p, data in expected.items()),
        "fsck_ok": facts["fsck_rc"] == 0,
    }


def main() -> int:
    WORK.mkdir(parents=True, exist_ok=True)
    banner("1. validate the descriptors")
    ais("validate")
    banner("2. measure this machine (once; delete build/cache/cost.json to measure again)")
    if (CACHE / "cost.json").exists():
        print(f"using {CACHE / 'cost.json'}")
    else:
        ais("calibrate", "--max-sets", "12")
    banner("3. plan the image cache within the budget in descriptors/cache-budget")
    budget = (DESCRIPTORS / "cache-budget").read_text().strip()
    ais("plan", "--budget", budget, "--explain", "hpc")
    banner("4. build it (what cron runs): the site's keys and CA (made once), its RPMs signed, the manifest signed")
    if not SITE_KEY.exists():
        ais("site", "init")
    elif not RPM_KEY.exists():
        ais("site", "init", "--rpm-key")  # a demo cache made before RPMs were signed
    if not SITE_CA.exists():
        ais("site", "init", "--ca")  # a demo cache made before TLS
    # the addresses hosts reach `ais serve` at: loopback here, 10.0.2.2 from the QEMU machine
    ais("site", "cert", "--name", "127.0.0.1", "--name", "10.0.2.2")
    copy_repo()
    ais("site", "sign-rpms", "--repo", str(REPO.relative_to(ROOT)))
    ais("rebuild", "--repo", str(REPO))
    ais("cache", "status", "--repo", str(REPO))
    banner("5. serve over TLS, and reinstall two hosts onto loop-device disks full of garbage")
    site = load_site(DESCRIPTORS, REPO)
    with ServeProcess(DESCRIPTORS, REPO, CACHE, WORK / "history.sqlite", log_path=WORK / "serve.log",
                      tls=True) as server:
        print(f"ais serve listening at {server.url} (log: {WORK / 'serve.log'})", flush=True)
        results = [reinstall(server, site, host) for host in HOSTS]
    banner("6. what landed")
    print(f"{'host':8} {'SCD':8} {'image':14} {'remainder':>9} {'predicted':>9} {'measured':>9} "
          f"{'rpm -qa':>8} {'files':>6} {'fsck':>5}")
    ok = True
    for r in results:
        rec = r["record"]
        image = (rec["image"]["id"][:12] if rec.get("image") else "packages only")
        checks = [r["rpm_qa_matches"], r["files_match"], r["fsck_ok"]]
        ok = ok and all(checks)
        marks = ["ok" if c else "WRONG" for c in checks]
        print(f"{r['host']:8} {r['scd']:8} {image:14} {len(rec.get('remainder', [])):>9} "
              f"{rec['predicted_seconds']:>8.2f}s {rec['measured_seconds']:>8.2f}s "
              f"{marks[0]:>8} {marks[1]:>6} {marks[2]:>5}")
    print("\nserver stopped; install history in", WORK / "history.sqlite")
    if not ok:
        return 1
    banner(f"7. a machine that boots from the network: {VM_HOST} as a QEMU virtual machine (TCG, a few minutes)")
    ais("bootenv", "build", "--cache", str(CACHE))
    if not boot_vm(site):
        return 1
    ais("history", VM_HOST, "--history", str(WORK / "history.sqlite"), "--limit", "1")
    banner("8. what an admin looks at: the console's pages as one static file (ais serve shows them live at /console/)")
    ais("report", "--repo", str(REPO), "--history", str(WORK / "history.sqlite"), "--out", str(WORK / "report.html"))
    return 0


def copy_repo() -> None:
    """build/repo copied to build/demo/repo when build/repo changed since the last copy (its metadata
    differs), so that signing never touches the repository the tests use."""
    source = hashlib.sha256((SOURCE_REPO / "repodata" / "repomd.xml").read_bytes()).hexdigest()
    marker = WORK / "repo.source"
    if REPO.is_dir() and marker.is_file() and marker.read_text().strip() == source:
        return
    shutil.rmtree(REPO, ignore_errors=True)
    shutil.copytree(SOURCE_REPO, REPO)
    marker.write_text(source + "\n")
    print(f"copied {SOURCE_REPO} to {REPO} (signed next)", flush=True)


def boot_vm(site) -> bool:
    """node01 network-boots (QEMU's user network hands its firmware the iPXE script's URL), reinstalls
    its blank disk, kexecs into the installed system, which reports "up" and powers off. Prints the
    console's milestones as they come."""
    from aislab.qemu import Vm

    disk = WORK / f"{VM_HOST}-vm.disk"
    with open(disk, "wb") as f:
        f.truncate(1 << 30)
    with ServeProcess(DESCRIPTORS, REPO, CACHE, WORK / "history.sqlite", "--advertise", "10.0.2.2",
                      "--boot-target", "/dev/vda", "--boot-append", "console=ttyS0 ais.final=poweroff",
                      "--boot-listen", "127.0.0.1:0", log_path=WORK / "serve.log", tls=True) as server:
        port = server.info["boot_url"].rsplit(":", 1)[1]  # the firmware's iPXE fetches in plain HTTP there
        mac = next(h.macs[0] for h in site.hosts if h.name == VM_HOST)
        url = f"http://10.0.2.2:{port}/v1/boot/ipxe/{mac}"
        print(f"$ qemu-system-x86_64 -boot n ... (its DHCP hands out {url}; console: {WORK / 'vm' / 'console.log'})")
        with Vm(WORK / "vm", disk=disk, mac=mac, netboot=url, timeout=1200) as vm:
            shown = 0
            while vm.proc.poll() is None:
                shown = show_milestones(vm.console(), shown)
                time.sleep(1)
            show_milestones(vm.console(), shown)
            console = vm.console()
    came_up = f'firstboot: report_up: the server stored "up" for {VM_HOST}' in console
    checked = "[ais] plan: signed by the site key" in console  # the boot environment pins the site key
    tls = "[ais] plan: over TLS, the server's certificate signed by the site CA" in console  # and the site CA
    print(f"\n{VM_HOST} {'came back up' if came_up else 'did NOT come back up: see the console log'}; its plan's "
          f"signature {'was checked against the pinned site key' if checked else 'was NOT checked'}; the server's "
          f"certificate {'was checked against the pinned site CA' if tls else 'was NOT checked'}")
    return came_up and checked and tls


STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ ")
MILESTONES = ("ais-init:", "[ais] plan:", "[ais] reinstalled", "ais-boot:", "[ais] kexec", "firstboot:")


def show_milestones(console: str, shown: int) -> int:
    lines = console.splitlines()
    for line in lines[shown:]:
        text = STAMP.sub("", line.strip())  # the client's lines start with a UTC timestamp (ais.progress)
        if text.startswith(MILESTONES):
            print("  vm| " + text[:150], flush=True)
    return len(lines)


if __name__ == "__main__":
    sys.exit(main())
