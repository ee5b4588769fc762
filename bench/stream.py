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

Separating the protocol from this machine's CPU: 8 real receivers each
decompress and write the image on their own CPU; here all 8 share 2 cores.
So the bench also runs the "verify-only" variant (`python -m
aislab.receive_only`, a measurement tool of the lab): receivers reassemble every chunk and check
its sha256, then discard it: no decompression, no writing. 8 vs 1 of those is
the protocol's scaling; the 1-receiver full row's client CPU is what each real
machine spends on its own. It also reruns the 8-receiver full case with a
lower multicast rate cap (--low-rate), which lets CPU-starved receivers keep up.

Outside loopback (`--links`, or `--links-only` for just these rows): unicast
between two namespaces over links shaped with tc tbf (100 Mbit/s and 1 Gbit/s,
bounded queues, `NetLab(rate=...)`), once with a verify-only receiver (the
transport) and once writing to tmpfs (the whole client path); multicast to 2
receivers over 100 Mbit/s with the send cap at 90% of the link; and unicast
over 1 Gbit/s onto a slow disk (`SlowDisk`, --disk-rate MB/s of writes). Each
row prints the achieved rate as a fraction of the link's (payload bytes the
receiver got / the receiver's own transfer time, against the tc rate; target
>= 0.9 for unicast), or of the disk's write rate for the slow disk.

Usage: python bench/stream.py [--tree DIR] [--size-mib N] [--rate MBPS] [--low-rate MBPS]
                              [--receivers N] [--multicast-only] [--links | --links-only]
                              [--disk-rate MBPS] [--keep]
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ais.run import run  # noqa: E402
from ais.stream.format import read_header  # noqa: E402
from ais.stream.pack import pack  # noqa: E402
from aislab.disks import SlowDisk  # noqa: E402
from aislab.net import NetLab, ais_command, make_fs_image, rate_bits  # noqa: E402

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



def receiver(lab, i: int, verify_only: bool, *args: str, target: Path | None = None) -> list[str]:
    """argv of a receiver in host i: the lab's verify-only receiver, or `ais image get` onto target."""
    if verify_only:
        return lab.argv(i, ["env", f"PYTHONPATH={ROOT}", sys.executable, "-m", "aislab.receive_only",
                            *[a for a in args if a != "--json"]])
    return lab.ais(i, "image", "get", *args, "--create-file", str(target))

def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tree", default="/usr/share")
    ap.add_argument("--size-mib", type=int, default=1200)
    ap.add_argument("--rate", type=float, default=100.0, help="multicast cap, MB/s of stored data")
    ap.add_argument("--low-rate", type=float, default=20.0,
                    help="the lower cap tried for the N-receiver full case, MB/s")
    ap.add_argument("--receivers", type=int, default=8)
    ap.add_argument("--multicast-only", action="store_true", help="skip dd, zstd, local, unicast and udpcast")
    ap.add_argument("--links", action="store_true", help="also the shaped-link and slow-disk rows")
    ap.add_argument("--links-only", action="store_true", help="only the shaped-link and slow-disk rows")
    ap.add_argument("--disk-rate", type=float, default=40.0, help="the slow disk's write rate, MB/s")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ais-bench-", dir="/var/tmp"))
    shm = Path(tempfile.mkdtemp(prefix="ais-bench-", dir="/dev/shm"))
    py = ais_command("image")
    rows: list = []
    mcast: dict = {}
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

        if args.links or args.links_only:
            link_rows = outside_loopback(images, header, shm, work, args)
            if args.links_only:
                return print_link_rows(link_rows)
        target = work / "target"
        if not args.multicast_only:
            wall, cpu = timed([["dd", f"if={fs}", f"of={target}", "bs=4M", "conv=fsync", "status=none"]])
            row("dd bs=4M conv=fsync", wall, cpu)
            clean(target)
            wall, cpu = timed([["sh", "-c", f"zstd -dc {work / 'fs.zst'} | dd of={target} bs=4M iflag=fullblock conv=fsync status=none"]])
            row("zstd -d | dd", wall, cpu)
            clean(target)
            wall, cpu = timed([py + ["write", "--no-resume", "--create-file", str(images / "bench.aisimg"), str(target)]])
            row("ais image write (local)", wall, cpu)
            clean(target)
            server = spawn_server(py + ["serve-stream", str(images), "--listen", f"127.0.0.1:{TPORT}"])
            wall, cpu = timed([py + ["get", "--server", f"127.0.0.1:{TPORT}", "--image", "bench", "--create-file", str(target)]])
            stats, scpu = stop_server(server)
            row("unicast TCP loopback", wall, cpu, stats["unicast_bytes_sent"], scpu)
            clean(target)

        n = args.receivers
        with NetLab(n + 1) as lab:

            def multicast(count: int, rate: float, verify_only: bool) -> dict:
                """count receivers in their namespaces, the server in host 0; one measured run."""
                server = spawn_server(lab.ais(0, "image", "serve-stream", str(images), "--listen",
                                                 f"{lab.address(0)}:{TPORT}", "--multicast", f"{GROUP}:{MPORT}",
                                                 "--interface", lab.address(0), "--rate", str(rate)))
                tx0 = tx_bytes(lab, 0)
                argvs = [receiver(lab, i, verify_only, "--server", f"{lab.address(0)}:{TPORT}", "--image", "bench",
                                  "--multicast", f"{GROUP}:{MPORT}", "--interface", lab.address(i),
                                  target=shm / f"m{i}") for i in range(1, count + 1)]
                wall, cpu = timed(argvs)
                tx = tx_bytes(lab, 0) - tx0
                stats, scpu = stop_server(server)
                for i in range(1, count + 1):
                    clean(shm / f"m{i}")
                kind = "verify-only" if verify_only else "tmpfs"
                row(f"multicast {rate:g} MB/s, {count} rcv, {kind}", wall, cpu, tx, scpu, count)
                found = {"wall": wall, "cpu_per_receiver": cpu / count, "server_bytes": tx,
                         "chunks_resent": stats.get("multicast_chunks_sent", 0) - len(header.chunks)}
                mcast[(count, rate, verify_only)] = found
                return found

            multicast(1, args.rate, False)
            multicast(n, args.rate, False)
            multicast(n, args.low_rate, False)
            multicast(1, args.rate, True)
            multicast(n, args.rate, True)
            if args.multicast_only:
                return summary(args, header, fs_mb, rows, mcast)
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
    summary(args, header, fs_mb, rows, mcast)
    return print_link_rows(link_rows) if args.links else 0


# ------------------------------------------------------------------ outside loopback


def get_json(argv: list[str]) -> dict:
    """Run an `ais image get ... --json` and return its summary."""
    return json.loads(run(argv, timeout=900).stdout.strip().splitlines()[-1])


def outside_loopback(images: Path, header, shm: Path, work: Path, args) -> list[tuple]:
    """Rows (name, payload bytes, seconds, reference bits/s, what the reference is, target, connections)."""
    rows = []
    for rate in ("100mbit", "1gbit"):
        with NetLab(3, tag=f"aisb{os.getpid() % 10000}", rate=rate) as lab:
            server = f"{lab.address(0)}:{TPORT}"
            proc = spawn_server(lab.ais(0, "image", "serve-stream", str(images), "--listen", server))
            for sink, verify_only in (("verify-only", True), ("tmpfs", False)):
                out = get_json(receiver(lab, 1, verify_only, "--server", server, "--image", "bench", "--json",
                                        target=shm / "u1"))
                rows.append((f"unicast {rate}, {sink}", out["tcp_bytes"], out["seconds"], rate_bits(rate),
                             "link", 0.9, out["connections"]))
                (shm / "u1").unlink(missing_ok=True)
            stop_server(proc)
            if rate != "100mbit":
                continue
            cap = 0.9 * rate_bits(rate) / 8 / MB
            proc = spawn_server(lab.ais(0, "image", "serve-stream", str(images), "--listen", server,
                                        "--multicast", f"{GROUP}:{MPORT}", "--interface", lab.address(0),
                                        "--rate", f"{cap:.2f}"))
            outs = []
            threads = [threading.Thread(target=lambda i=i: outs.append(get_json(receiver(
                lab, i, True, "--server", server, "--image", "bench", "--multicast", f"{GROUP}:{MPORT}",
                "--interface", lab.address(i))))) for i in (1, 2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            stop_server(proc)
            slowest = max(o["seconds"] for o in outs)
            rows.append((f"multicast {rate}, cap {cap:.1f} MB/s, 2 rcv", header.stored_bytes, slowest,
                         rate_bits(rate), "link", None, None))
    with SlowDisk(work / "slow", header.fs_bytes // 2**20 + 64, args.disk_rate * MB) as disk, \
            NetLab(2, tag=f"aisd{os.getpid() % 10000}", rate="1gbit") as lab:
        server = f"{lab.address(0)}:{TPORT}"
        proc = spawn_server(lab.ais(0, "image", "serve-stream", str(images), "--listen", server))
        out = get_json(lab.ais(1, "image", "get", "--server", server, "--image", "bench", "--json", disk.device))
        stop_server(proc)
        rows.append((f"unicast 1gbit onto a {args.disk_rate:g} MB/s disk", out["data_bytes"] + out["zero_bytes"],
                     out["seconds"], args.disk_rate * MB * 8, "disk", None, out["connections"]))
    return rows


def print_link_rows(rows: list[tuple]) -> int:
    print(f"\n{'outside loopback':44} {'MB':>7} {'s':>7} {'Mbit/s':>8} {'of':>5} {'fraction':>8} {'target':>7} "
          f"{'conns':>5}")
    for name, nbytes, seconds, ref_bits, ref, target, conns in rows:
        fraction = nbytes * 8 / seconds / ref_bits
        verdict = "-" if target is None else ("met" if fraction >= target else "MISSED")
        print(f"{name:44} {nbytes / MB:7.1f} {seconds:7.2f} {nbytes * 8 / seconds / 1e6:8.1f} {ref:>5} "
              f"{fraction:8.2f} {verdict:>7} {conns if conns is not None else '-':>5}")
    print("(Mbit/s: payload the receiver got (TCP stream bytes; stored image bytes for multicast; bytes written "
          "for the disk) / the receiver's own transfer time; fraction: of the tc link rate, or of the disk's "
          "write rate; conns: TCP connections the client needed)")
    return 0


def summary(args, header, fs_mb: float, rows: list, mcast: dict) -> int:
    dd_rate = rows[0][2] if rows[0][0].startswith("dd") else None
    print(f"\n{'method':40} {'wall s':>7} {'fs MB/s':>8} {'vs dd':>6} {'server MB':>10} {'srv ms/MB':>9} "
          f"{'cli ms/MB':>9} {'cli CPU s':>9}")
    for name, wall, rate, sbytes, scpu, ccpu in rows:
        sb = f"{sbytes / MB:10.0f}" if sbytes is not None else f"{'-':>10}"
        sc = f"{scpu * 1000 / fs_mb:9.2f}" if scpu is not None else f"{'-':>9}"
        vs = f"{rate / dd_rate:6.2f}" if dd_rate else f"{'-':>6}"
        print(f"{name:40} {wall:7.2f} {rate:8.0f} {vs} {sb} {sc} {ccpu * 1000 / fs_mb:9.2f} {ccpu:9.2f}")
    print("(fs MB/s = filesystem bytes / wall; cli ms/MB and cli CPU s = CPU per receiver; "
          f"server MB vs stored image {header.stored_bytes / MB:.0f} MB)")
    n, stored = args.receivers, header.stored_bytes
    one_v, many_v = mcast[(1, args.rate, True)], mcast[(n, args.rate, True)]
    one_f, many_f, low_f = mcast[(1, args.rate, False)], mcast[(n, args.rate, False)], mcast[(n, args.low_rate, False)]
    print(f"\nprotocol scaling (verify-only receivers, {args.rate:g} MB/s cap): {n} vs 1 receiver wall "
          f"{many_v['wall']:.2f}/{one_v['wall']:.2f} s = {many_v['wall'] / one_v['wall']:.2f}x; server bytes "
          f"{many_v['server_bytes'] / stored:.2f}x one image ({one_v['server_bytes'] / stored:.2f}x for 1 receiver); "
          f"verify-only CPU per receiver {many_v['cpu_per_receiver']:.2f} s; "
          f"chunks sent again {one_v['chunks_resent']} / {many_v['chunks_resent']} of {len(header.chunks)}")
    print(f"client CPU per image (full path: receive, verify, decompress, write; 1 receiver): "
          f"{one_f['cpu_per_receiver']:.2f} s; {n} receivers here: {n * one_f['cpu_per_receiver']:.1f} CPU-s "
          f"on {os.cpu_count()} cores, >= {n * one_f['cpu_per_receiver'] / (os.cpu_count() or 1):.1f} s wall")
    print(f"full path, {n} receivers: {args.rate:g} MB/s cap {many_f['wall']:.2f} s "
          f"({many_f['wall'] / one_f['wall']:.2f}x one receiver, server {many_f['server_bytes'] / stored:.2f}x image); "
          f"{args.low_rate:g} MB/s cap {low_f['wall']:.2f} s ({low_f['wall'] / one_f['wall']:.2f}x, "
          f"server {low_f['server_bytes'] / stored:.2f}x image); chunks sent again "
          f"{one_f['chunks_resent']} / {many_f['chunks_resent']} / {low_f['chunks_resent']} of {len(header.chunks)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
