"""A network boot under QEMU, timed step by step (run by `make bench-boot`).

What it does: builds the boot environment (`ais bootenv build`, timed: a build
whose inputs did not change only resolves and hashes), starts a real `ais serve`
over a demo cache (db01, served from its base image plus remainder) with the boot
routes on, then boots one TCG VM from the network (firmware iPXE -> the script of
db01's MAC -> kernel + initramfs over HTTP) onto a blank 1 GiB disk and times,
from QEMU's start, when each milestone line appears on its serial console:
the kernel starts (iPXE has fetched everything), the init has an address, the
server answered, ais-boot reported success, QEMU ended (the guest rebooted).
Every VM runs under `timeout`; the VM is killed when the bench ends.
What it reads: the demo descriptors, build/repo (`make packages`), apt's lists.
What it fails on: a step that does not come (the console's tail is shown), exit 1.
What it returns: prints a markdown table; exit 0.
Run: `make bench-boot` (or `.venv/bin/python bench/boot.py`).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ais.cost import CostModel, save_calibration  # noqa: E402
from aislab.net import ais_command  # noqa: E402
from aislab.qemu import Vm  # noqa: E402
from aislab.site import ServeProcess, publish_base_cache, subset_descriptors  # noqa: E402

MAC = "52:54:00:00:00:06"  # db01
CACHE = ROOT / "build" / "test-bootenv"  # shared with tests/integration/test_boot.py
MILESTONES = (
    ("kernel started (iPXE fetched script, kernel, initramfs)", "Linux version"),
    ("modules loaded", "ais-init: load_modules:"),
    ("address by DHCP", "ais-init: network_up: eth0 has"),
    ("server answered /v1/health", "ais-init: find_server:"),
    ("ais-boot: plan received", "[ais] plan: host db01"),
    ("ais-boot: image written (grow starts)", "[ais] grow"),
    ("ais-boot: reinstalled and reported", "reinstalled db01"),
)


def main() -> int:
    started = time.monotonic()
    proc = subprocess.run([*ais_command("bootenv", "build", "--cache", str(CACHE), "--json")],
                          capture_output=True, text=True, timeout=1200)
    if proc.returncode != 0:
        print(proc.stderr, file=sys.stderr)
        return 1
    built = json.loads(proc.stdout)
    build_s = time.monotonic() - started
    with tempfile.TemporaryDirectory(prefix="ais-bench-boot-") as tmp:
        base = Path(tmp)
        descriptors = subset_descriptors(ROOT / "descriptors", base / "descriptors", ["db"], ["db01"])
        save_calibration(CostModel(image_fixed_s=0.1, stream_bytes_per_s=300e6), base / "cost.json")
        publish_base_cache(descriptors, ROOT / "build" / "repo", base / "cache", cost=base / "cost.json")
        (base / "cache" / "bootenv").symlink_to(CACHE / "bootenv")
        disk = base / "disk.img"
        with open(disk, "wb") as f:
            f.truncate(1 << 30)
        with ServeProcess(descriptors, ROOT / "build" / "repo", base / "cache", base / "history.sqlite",
                          "--advertise", "10.0.2.2", "--boot-target", "/dev/vda",
                          "--boot-append", "console=ttyS0 ais.final=poweroff") as server:
            port = server.url.rsplit(":", 1)[1]
            with Vm(base / "vm", disk=disk, mac=MAC, netboot=f"http://10.0.2.2:{port}/v1/boot/ipxe/{MAC}",
                    timeout=900) as vm:
                times = [(name, vm.wait_for_console(text, timeout=900)) for name, text in MILESTONES]
                code = vm.wait(timeout=120)
                times.append(("QEMU ended (the guest rebooted)", time.monotonic() - vm.started))
    if code != 0:
        print(f"QEMU ended with {code}", file=sys.stderr)
        return 1
    print(f"boot environment {built['key'][:16]}: `ais bootenv build` {build_s:.1f} s "
          f"({'built' if built['built'] else 'up to date'}), initramfs {built['initrd_bytes'] / 1e6:.1f} MB\n")
    print("| milestone (seconds since QEMU started, TCG, 1 vCPU) | s |\n| --- | --- |")
    for name, seconds in times:
        print(f"| {name} | {seconds:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
