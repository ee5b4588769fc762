"""Benchmark the block streamer against dd, zstd | dd and udpcast, side by side.

Builds an ext4 image of a sizable tree (default /usr/share, or --tree), packs
it, then in one run measures: raw dd, zstd -d | dd, `ais image write` from a
local file, unicast over loopback TCP, multicast to 1 and 8 receivers in
network namespaces, udpcast to the same 8. Prints one table: wall seconds,
MB/s of filesystem delivered (fs bytes / wall, the rate that decides reinstall
time), ratio to dd, bytes the server sent, CPU ms per filesystem MB for server
and clients. Targets of the single-target rows are files on the disk; the
namespace rows (8 receivers share this one machine) write to tmpfs, and the
1-receiver multicast row does too so the 1-vs-8 comparison is like for like.

Usage: python bench/stream.py [--tree DIR] [--size-mib N] [--rate MBPS] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from ais.run import run
from ais.stream.format import pack, read_header
from ais.stream.lab import NetLab, make_fs_image

MB = 1e6
GROUP, MPORT, TPORT = "239.255.42.7", 7300, 7200


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed(argv_list: list[list[str]]) -> tuple[float, float]:
    """Run argvs concurrently (each via ais.run.run in a thread); (wall, client CPU)."""
    cpu0, t0 = children_cpu(), time.monotonic()
    errors = []

    def one(argv):
        try:
            run(argv, timeout=600)
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=one, args=(a,)) for a in argv_list]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return time.monotonic() - t0, children_cpu() - cpu0


def spawn_server(argv: list[str]) -> subprocess.Popen:
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line.startswith('{"listening"'):
        proc.kill()
        raise SystemExit(f"server did not start: {line} {proc.stderr.read()}")
    return proc


def stop_server(proc: subprocess.Popen) -> tuple[dict, float]:
    """SIGTERM, reap with wait4 for its CPU, return (stats printed, CPU seconds)."""
    proc.terminate()
    _, _, usage = os.wait4(proc.pid, 0)
    proc.returncode = 0
    out = proc.stdout.read().strip().splitlines()
    return (json.loads(out[-1]) if out else {}), usage.ru_utime + usage.ru_stime


def tx_bytes(lab: NetLab, i: int) -> int:
    text = run(lab.argv(i, ["cat", "/sys/class/net/eth0/statistics/tx_bytes"])).stdout
    return int(text)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tree", default="/usr/share")
    ap.add_argument("--size-mib", type=int, default=1200)
    ap.add_argument("--rate", type=float, default=100.0, help="multicast cap, MB/s of stored data")
    ap.add_argument("--receivers", type=int, default=8)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ais-bench-", dir="/var/tmp"))
    shm = Path(tempfile.mkdtemp(prefix="ais-bench-", dir="/dev/shm"))
    py = [sys.executable, "-m", "ais.stream.commands", "image"]
    rows = []
    try:
        fs = make_fs_image(Path(args.tree), work / "fs.img", args.size_mib, "bench")
        images = work / "images"
        images.mkdir()
        t0 = time.monotonic()
        pack(fs, images / "bench.aisimg", image_id="bench", packages=[])
        pack_s = time.monotonic() - t0
        t0 = time.monotonic()
        run(["zstd", "-q", "-T0", "-3", "-f", str(fs), "-o", str(work / "fs.zst")])
        zstd_s = time.monotonic() - t0
        header = read_header(images / "bench.aisimg")
        fs_mb = header.fs_bytes / MB
        print(f"image: {args.tree}: fs {fs_mb:.0f} MB, used data {header.totals['raw_bytes'] / MB:.0f} MB, "
              f"zero-in-use {header.totals['zero_blocks'] * 4096 / MB:.0f} MB, stored {header.stored_bytes / MB:.0f} MB "
              f"in {len(header.chunks)} chunks; zstd -T0: {(work / 'fs.zst').stat().st_size / MB:.0f} MB")
        print(f"pack: {pack_s:.2f}s   zstd -T0 -3 of the whole image: {zstd_s:.2f}s   ratio {pack_s / zstd_s:.2f}")

        def row(name, wall, client_cpu, server_bytes=None, server_cpu=None, n=1):
            rows.append((name, wall, fs_mb / wall, server_bytes, server_cpu, client_cpu / n))

        def clean(*paths):
            for p in paths:
                Path(p).unlink(missing_ok=True)

        target = work / "target"
        wall, cpu = timed([["dd", f"if={fs}", f"of={target}", "bs=4M", "conv=fsync", "status=none"]])
        row("dd bs=4M conv=fsync", wall, cpu)
        clean(target)
        wall, cpu = timed([["sh", "-c", f"zstd -dc {work / 'fs.zst'} | dd of={target} bs=4M iflag=fullblock conv=fsync status=none"]])
        row("zstd -d | dd", wall, cpu)
        clean(target)
        wall, cpu = timed([py + ["write", "--no-resume", str(images / "bench.aisimg"), str(target)]])
        row("ais image write (local)", wall, cpu)
        clean(target)
        server = spawn_server(py + ["serve-stream", str(images), "--listen", f"127.0.0.1:{TPORT}"])
        wall, cpu = timed([py + ["get", "--server", f"127.0.0.1:{TPORT}", "--image", "bench", str(target)]])
        stats, scpu = stop_server(server)
        row("unicast TCP loopback", wall, cpu, stats["unicast_bytes_sent"], scpu)
        clean(target)

        n = args.receivers
        with NetLab(n + 1) as lab:
            for count in (1, n):
                server = spawn_server(lab.python(0, "image", "serve-stream", str(images), "--listen",
                                                 f"{lab.address(0)}:{TPORT}", "--multicast", f"{GROUP}:{MPORT}",
                                                 "--interface", lab.address(0), "--rate", str(args.rate)))
                tx0 = tx_bytes(lab, 0)
                argvs = [lab.python(i, "image", "get", "--server", f"{lab.address(0)}:{TPORT}", "--image", "bench",
                                    "--multicast", f"{GROUP}:{MPORT}", "--interface", lab.address(i),
                                    str(shm / f"m{i}")) for i in range(1, count + 1)]
                wall, cpu = timed(argvs)
                tx = tx_bytes(lab, 0) - tx0
                stats, scpu = stop_server(server)
                row(f"multicast, {count} receiver(s), tmpfs", wall, cpu, tx, scpu, count)
                for i in range(1, count + 1):
                    clean(shm / f"m{i}")
            tx0 = tx_bytes(lab, 0)
            sender = subprocess.Popen(lab.argv(0, ["udp-sender", "--file", str(fs), "--interface", "eth0",
                                                   "--mcast-rdv-address", "239.255.1.1", "--min-receivers", str(n),
                                                   "--nokbd", "--no-progress"]),
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            argvs = [lab.argv(i, ["udp-receiver", "--file", str(shm / f"u{i}"), "--interface", "eth0",
                                  "--mcast-rdv-address", "239.255.1.1", "--nokbd", "--no-progress"])
                     for i in range(1, n + 1)]
            wall, cpu = timed(argvs)
            _, _, usage = os.wait4(sender.pid, 0)
            sender.returncode = 0
            tx = tx_bytes(lab, 0) - tx0
            row(f"udpcast, {n} receivers, tmpfs", wall, cpu, tx, usage.ru_utime + usage.ru_stime, n)
            for i in range(1, n + 1):
                clean(shm / f"u{i}")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(shm, ignore_errors=True)

    dd_rate = rows[0][2]
    print(f"\n{'method':34} {'wall s':>7} {'fs MB/s':>8} {'vs dd':>6} {'server MB':>10} {'srv ms/MB':>9} {'cli ms/MB':>9}")
    for name, wall, rate, sbytes, scpu, ccpu in rows:
        sb = f"{sbytes / MB:10.0f}" if sbytes is not None else f"{'-':>10}"
        sc = f"{scpu * 1000 / fs_mb:9.2f}" if scpu is not None else f"{'-':>9}"
        print(f"{name:34} {wall:7.2f} {rate:8.0f} {rate / dd_rate:6.2f} {sb} {sc} {ccpu * 1000 / fs_mb:9.2f}")
    print("(fs MB/s = filesystem bytes / wall; cli ms/MB = CPU per receiver per filesystem MB; "
          f"server MB vs stored image {header.stored_bytes / MB:.0f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
