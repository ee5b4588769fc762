"""Many clients at once (issue 13): one image to N clients by each transport (run by `make bench-fanout`).

Topology: a `NetLab` of N+1 network namespaces on one bridge; the server in host 0
with its link shaped to 100 Mbit/s both ways (tc tbf, --server-rate), each client's
link to 1 Gbit/s (--client-rate). The server is a real `ais serve` (control API, TCP
streamer, and multicast for the multicast rows) over a site of exactly N hosts (HCDs
with fresh tokens, written into a temporary copy of the descriptors), so transports
that coordinate through the server's control API run as they will in production.

The image: the real site's base image (SCD --scd, default base-1: Debian bookworm's
required and important packages and a kernel, built by the real image builder from
build/real-repo, `make real-site`) when that repository exists, else (or with
--image tree) an ext4 filesystem of --tree (default /usr/share; all of /usr is 5.5 GB
here, which would make unicast to 16 clients take half an hour). It is built once
into build/bench-fanout-cache/ and reused.

Each client runs the real client: `ais client plan --state S --server URL --host NAME
--token T --target FILE --transport X`, untimed; then all N at once the measured step,
`ais client image --state S` (the image step alone). Per row: the wall until the last
client is done, the bytes the server sent in that time (tx_bytes of its eth0, read
inside its namespace: payload plus TCP/IP/UDP headers), those bytes / the stored image
bytes, each client's CPU (user + system of the process and its children, os.wait4:
median and max), and the speed-up over unicast at the same N.

Transports (`--transports`): unicast, multicast (the server's send cap at 90% of its
link), bittorrent, chain (`--transport bittorrent|chain`: while the client refuses a
transport, its row says "not available" and the bench goes on), udpcast (Debian's
udp-sender in the server's namespace, `--max-bitrate` 90% of the link,
`--nopointopoint` so one receiver is multicast too; udp-receiver in each client,
storing the same .aisimg file the others fetch: same bytes on the wire, but nothing
is decompressed or verified, and each receiver then syncs its file).

Sinks: `write` is the real client writing a sparse file on disk (build/bench-fanout,
not tmpfs), fsynced. This machine's two cores are shared by every client: where the
clients would together receive more than --write-budget MB/s of stored image (N x the
link for the transports that give every client the whole image at once: multicast,
the peer transports), or the disk lacks room for N targets, a row whose transport has
one uses verify-only receivers instead (`python -m aislab.receive_only`: every chunk
fetched and its sha256 checked, nothing decompressed or written) with the endpoints
from the client's own plan. Unicast shares one link among all clients, so it always
writes. bittorrent and chain have no verify-only receiver: they always write. The
table says which sink each row used, and why.

Usage: python bench/fanout.py [--clients 1,4,8,16] [--transports unicast,multicast,...]
         [--runs N] [--json FILE] [--image auto|real|tree] [--scd NAME] [--tree DIR]
         [--server-rate 100mbit] [--client-rate 1gbit] [--sink auto|write|verify]
         [--write-budget MBPS] [--keep]
Quick run: --clients 1,4 --transports unicast,multicast (about 2 minutes), or
--image tree --tree /usr/share/doc (67 MB stored here, under issue 13's 100 MB: for
trying the bench, not for figures).
Reads: descriptors-real/ and build/real-repo (or descriptors/, build/repo and the
tree). Writes build/bench-fanout/ (removed at the start of each run) and
build/bench-fanout-cache/. Needs root (namespaces, tc). Exits 1 when a row that
should run failed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ais.run import run, start  # noqa: E402
from aislab.lines import next_line  # noqa: E402
from aislab.net import NetLab, rate_bits  # noqa: E402
from aislab.site import subset_descriptors  # noqa: E402

MB = 1e6
MiB = 1 << 20
GROUP, MPORT = "239.255.42.9", 7400
UDPCAST_RDV = "239.255.1.1"
WORK = ROOT / "build" / "bench-fanout"
CACHE = ROOT / "build" / "bench-fanout-cache"
SEND_SHARE = 0.9  # multicast and udpcast send caps: this share of the server's link


@dataclass(frozen=True)
class Transport:
    name: str
    client: str | None  # `ais client plan --transport` value; None: not the AIS client (udpcast)
    shared: bool  # every client gets the whole image at once (not 1/N of the server's link)
    verify_variant: bool  # aislab.receive_only can stand in for the client
    serve: tuple[str, ...] = ()  # more `ais serve` options this transport needs (besides multicast's)


TRANSPORTS = {t.name: t for t in (
    Transport("unicast", "unicast", shared=False, verify_variant=True),
    Transport("multicast", "multicast", shared=True, verify_variant=True),
    # The peer transports are the plans' (`ais serve --transport`), so the server expects each client's
    # join: the chain starts once all N have joined (or after the 10 s gather window).
    Transport("bittorrent", "bittorrent", shared=True, verify_variant=False, serve=("--transport", "bittorrent")),
    Transport("chain", "chain", shared=True, verify_variant=False,
              serve=("--transport", "chain", "--chain-gather", "10")),
    Transport("udpcast", None, shared=True, verify_variant=False),
)}
PEERS = ("bittorrent", "chain")  # the transports issue 13's targets are for


@dataclass
class Image:
    what: str
    iid: str
    path: Path
    stored_bytes: int
    fs_bytes: int
    written_bytes: int  # used data + in-use zero ranges: what a writing client puts on its target
    cache: Path  # the AIS cache that publishes it
    descriptors: Path  # the descriptors the site copies from
    repo: Path
    scd: str


@dataclass
class Row:
    n: int
    transport: str
    run: int
    sink: str
    why: str = ""
    status: str = "ok"  # ok | not available | failed
    message: str = ""
    wall: float | None = None
    server_bytes: int | None = None
    server_cpu: float | None = None
    client_cpu: list[float] = field(default_factory=list)
    client_seconds: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# ------------------------------------------------------------------ the image and the site


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def real_image(scd: str) -> Image:
    """The real site's SCD built by the real builder (reused when already in the bench's cache)."""
    from aislab.site import publish_base_cache

    descriptors, repo = ROOT / "descriptors-real", ROOT / "build" / "real-repo"
    cache = CACHE / f"real-{scd}"
    site_dir = WORK / "descriptors-image"
    write_site(descriptors, scd, 1, site_dir)
    t0 = time.monotonic()
    manifest = publish_base_cache(site_dir, repo, cache)
    iid = manifest["configurations"][scd]["image"]
    print(f"image: the real site's {scd} ({len(manifest['images'][iid]['packages'])} RPMs), "
          f"ready in {time.monotonic() - t0:.1f}s")
    return image_of(f"real site {scd}", cache, manifest, iid, descriptors, repo, scd)


def tree_image(tree: Path) -> Image:
    """An ext4 filesystem of `tree`, packed and published as the demo site's base SCD's image."""
    from ais.cache import manifest as manifests
    from ais.cache.store import Store
    from ais.cache.verify import header_record
    from ais.descriptors import load_site
    from ais.stream.pack import pack
    from aislab.site import lab_plan

    descriptors, repo, scd = ROOT / "descriptors", ROOT / "build" / "repo", "base"
    iid = hashlib.sha256(f"bench-fanout tree {tree.resolve()}".encode()).hexdigest()
    store = Store(CACHE / f"tree-{iid[:12]}")
    store.ensure()
    previous = manifests.read(store)
    if not (store.image_path(iid).exists() and iid in previous["images"]):
        t0 = time.monotonic()
        used = int(run(["du", "-sk", str(tree)]).stdout.split()[0]) * 1024
        fs = WORK / "tree-fs.img"
        size_mib = (used * 13 // 10) // MiB + 128
        run(["mke2fs", "-q", "-F", "-t", "ext4", "-b", "4096", "-i", "8192", "-d", str(tree), "-L", "fanout",
             str(fs), f"{size_mib}M"])
        header = pack(fs, store.tmp / "tree.aisimg", image_id=iid, packages=[])
        store.install(store.tmp / "tree.aisimg", iid)
        fs.unlink()
        site = load_site(descriptors, repo)
        record = {**header_record(store, iid, header), "key": f"tree {tree}", "packages": [],
                  "fs_bytes": header.fs_bytes, "content_bytes": used}
        confs = {scd: {"image": iid, "remainder": sorted(site.configuration(scd).nevras), "predicted_seconds": 1.0}}
        manifests.publish(store, manifests.make(previous=previous, images={iid: record}, configurations=confs,
                                                plan_json=lab_plan({iid: record}, confs, f"bench/fanout.py: {tree}")))
        print(f"image: ext4 of {tree} built and packed in {time.monotonic() - t0:.1f}s")
    return image_of(f"ext4 of {tree}", store.root, manifests.read(store), iid, descriptors, repo, scd)


def image_of(what: str, cache: Path, manifest: dict, iid: str, descriptors: Path, repo: Path, scd: str) -> Image:
    from ais.stream.format import read_header

    path = Path(cache) / manifest["images"][iid]["file"]
    header = read_header(path)
    written = int(header.totals.get("raw_bytes", 0)) + int(header.totals.get("zero_blocks", 0)) * 4096
    return Image(what, iid, path, path.stat().st_size, header.fs_bytes, written, Path(cache), descriptors, repo,
                 scd)


def write_site(src: Path, scd: str, n: int, dst: Path) -> list[tuple[str, str]]:
    """A copy of the descriptors with only `scd` (and its bases) and n hosts fan01.. running it,
    each with a fresh token; returns [(host, token)]."""
    shutil.rmtree(dst, ignore_errors=True)
    subset_descriptors(src, dst, [scd], [])
    hosts = []
    for i in range(1, n + 1):
        name, token = f"fan{i:02d}", secrets.token_hex(16)
        (dst / "hcd" / f"{name}.xml").write_text(
            f'<?xml version="1.0" encoding="UTF-8"?>\n<hcd name="{name}" scd="{scd}" reinstalls="1">\n'
            f"  <mac>52:54:00:fa:{i // 256:02x}:{i % 256:02x}</mac>\n  <token>{token}</token>\n"
            f'  <file path="/etc/hostname">{name}\n</file>\n</hcd>\n')
        hosts.append((name, token))
    return hosts


# ------------------------------------------------------------------ processes in the lab


class Procs:
    """Every process the bench started, each in a process group of its own (a receiver runs under
    `sh`), killed by that group's id on close() if still running."""

    def __init__(self):
        self.all: list[subprocess.Popen] = []

    def start(self, argv: list[str], log: Path, env: dict | None = None) -> subprocess.Popen:
        with open(log, "ab") as out:
            proc = start(argv, stdout=out, stderr=out, text=False, env=env, start_new_session=True)
        self.all.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.all:
            if proc.returncode is None and proc.poll() is None:
                kill_group(proc)
                proc.wait()
        self.all.clear()


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the process group a bench process leads (its pid), if it is still running."""
    if proc.returncode is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def reap(proc: subprocess.Popen) -> tuple[int, float]:
    """Wait for proc; (exit code, CPU seconds of it and its children)."""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_utime + usage.ru_stime


def tx_bytes(lab: NetLab, i: int) -> int:
    return int(run(lab.argv(i, ["cat", "/sys/class/net/eth0/statistics/tx_bytes"])).stdout)


def measure(lab: NetLab, procs: Procs, argvs: list[list[str]], logs: list[Path], timeout: float,
            env: dict | None = None) -> tuple[float, int, list[int], list[float], list[float]]:
    """Start argvs at once; (wall until the last exits, server tx bytes, exit codes, CPU s, seconds each)."""
    n = len(argvs)
    codes, cpu, ends = [0] * n, [0.0] * n, [0.0] * n
    tx0, t0 = tx_bytes(lab, 0), time.monotonic()
    started = [procs.start(a, log, env) for a, log in zip(argvs, logs)]

    def wait(k: int) -> None:
        codes[k], cpu[k] = reap(started[k])
        ends[k] = time.monotonic() - t0

    threads = [threading.Thread(target=wait, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    watchdog = threading.Timer(timeout, lambda: [kill_group(p) for p in started])
    watchdog.start()
    for t in threads:
        t.join()
    watchdog.cancel()
    return max(ends), tx_bytes(lab, 0) - tx0, codes, cpu, ends


class Server:
    """`ais serve` in host 0 of the lab, over the site's descriptors and the image's cache."""

    def __init__(self, lab: NetLab, procs: Procs, descriptors: Path, image: Image, rowdir: Path, extra: list[str]):
        address = lab.address(0)
        argv = lab.ais(0, "serve", "--plain-http", "--descriptors", str(descriptors), "--repo", str(image.repo),
                       "--cache",
                       str(image.cache), "--history", str(rowdir / "history.sqlite"), "--listen", f"{address}:0",
                       "--stream-listen", f"{address}:0", "--poll", "0.2", *extra)
        with open(rowdir / "serve.log", "ab") as log:
            self.proc = start(argv, stderr=log, env={"PYTHONUNBUFFERED": "1"}, start_new_session=True)
        procs.all.append(self.proc)
        line = next_line(self.proc.stdout, 60)
        if not line.startswith('{"listening"'):
            raise SystemExit(f"ais serve did not start: {line!r}; log {rowdir / 'serve.log'}")
        self.url = json.loads(line)["listening"]["url"]

    def stop(self) -> float:
        """SIGTERM; the server's CPU seconds over its whole life."""
        self.proc.terminate()
        _, cpu = reap(self.proc)
        self.proc.stdout.close()
        return cpu


# ------------------------------------------------------------------ one row


def choose_sink(t: Transport, n: int, args, image: Image) -> tuple[str, str]:
    """(sink, why) for transport t at n clients; see the module docstring."""
    if t.client is None:
        return "file", "udp-receiver stores the .aisimg on disk (nothing decompressed or verified)"
    link = rate_bits(args.server_rate) / 8
    together = (n if t.shared else 1) * link
    room = free_bytes(WORK) - 2 * 2**30
    if args.sink == "verify" and t.verify_variant:
        return "verify", "--sink verify"
    if args.sink == "write" or not t.verify_variant:
        if n * image.written_bytes > room:
            return "none", f"{n} targets need {n * image.written_bytes / 1e9:.1f} GB, {room / 1e9:.1f} GB free"
        why = "" if args.sink == "write" or together <= args.write_budget * MB else \
            "writes: this transport has no verify-only receiver"
        return "write", why
    if together > args.write_budget * MB:
        return "verify", (f"{n} clients would take {together / MB:.0f} MB/s of stored image together, over "
                          f"--write-budget {args.write_budget:g} MB/s for {os.cpu_count()} shared cores")
    if n * image.written_bytes > room:
        return "verify", f"{n} targets need {n * image.written_bytes / 1e9:.1f} GB, {room / 1e9:.1f} GB free"
    return "write", ""


def plan_clients(lab: NetLab, url: str, t: Transport, hosts: list[tuple[str, str]], rowdir: Path) -> list:
    """`ais client plan` for every client at once; the run results in host order."""
    results: list = [None] * len(hosts)

    def one(k: int) -> None:
        name, token = hosts[k]
        extra = ["--mcast-interface", lab.address(k + 1)] if t.client == "multicast" else []
        results[k] = run(lab.ais(k + 1, "client", "plan", "--state", str(rowdir / f"state-{name}"), "--server", url,
                                 "--host", name, "--token", token, "--target", str(rowdir / f"target-{name}"),
                                 "--transport", t.client, *extra), check=False, timeout=300)

    threads = [threading.Thread(target=one, args=(k,)) for k in range(len(hosts))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return results


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:200] if lines else "(no output)"


def ais_row(lab: NetLab, procs: Procs, t: Transport, hosts, site: Path, image: Image, args, row: Row,
            rowdir: Path) -> None:
    """One measured run of an AIS transport: serve, plan every client, then the image step at once."""
    extra = list(t.serve)
    if t.name == "multicast":
        extra += ["--multicast", f"{GROUP}:{MPORT}", "--multicast-interface", lab.address(0),
                  "--multicast-rate", f"{SEND_SHARE * rate_bits(args.server_rate) / 8 / MB:.2f}"]
    server = Server(lab, procs, site, image, rowdir, extra)
    try:
        planned = plan_clients(lab, server.url, t, hosts, rowdir)
        refused = [p for p in planned if p.returncode != 0]
        if refused:
            row.status = "not available" if t.name in PEERS else "failed"
            row.message = f"`ais client plan --transport {t.client}` exit {refused[0].returncode}: " + \
                last_line(refused[0].stderr).replace("ais client plan: error: ", "")
            return
        plans = [json.loads((rowdir / f"state-{name}" / "session.json").read_text())["plan"] for name, _ in hosts]
        if row.sink == "write":
            for name, _ in hosts:
                with open(rowdir / f"target-{name}", "wb") as f:
                    f.truncate(image.fs_bytes)
            argvs = [lab.ais(k + 1, "client", "image", "--state", str(rowdir / f"state-{name}"))
                     for k, (name, _) in enumerate(hosts)]
            env = None
        else:
            argvs = [verify_argv(lab, k + 1, t, plan) for k, plan in enumerate(plans)]
            env = {"PYTHONPATH": str(ROOT)}
        logs = [rowdir / f"client-{name}.log" for name, _ in hosts]
        timeout = 300 + 4 * len(hosts) * image.stored_bytes / (rate_bits(args.server_rate) / 8)
        row.wall, row.server_bytes, codes, row.client_cpu, row.client_seconds = measure(
            lab, procs, argvs, logs, timeout, env)
        failed = [(k, c) for k, c in enumerate(codes) if c != 0]
        if failed:
            k, code = failed[0]
            row.status, row.message = "failed", f"{len(failed)} of {len(hosts)} clients failed; " \
                                                 f"{hosts[k][0]} exit {code}: {last_line(logs[k].read_text())}"
        elif row.sink == "write":
            row.notes += fallbacks(rowdir, hosts)
    finally:
        row.server_cpu = server.stop()
        for name, _ in hosts:
            (rowdir / f"target-{name}").unlink(missing_ok=True)


def verify_argv(lab: NetLab, i: int, t: Transport, plan: dict) -> list[str]:
    """The verify-only receiver in host i, at the stream endpoints of that client's plan."""
    stream = plan["image"]["stream"]
    argv = [sys.executable, "-m", "aislab.receive_only", "--server", stream["tcp"], "--image", plan["image"]["id"]]
    if t.name == "multicast":
        argv += ["--multicast", stream["multicast"], "--interface", lab.address(i)]
    return lab.argv(i, argv)


def fallbacks(rowdir: Path, hosts) -> list[str]:
    """What the clients' sessions say about transports that fell back (multicast -> unicast)."""
    notes = []
    for name, _ in hosts:
        result = json.loads((rowdir / f"state-{name}" / "session.json").read_text())["results"].get("image", {})
        if result.get("transport_fallback"):
            notes.append(f"{name}: {result['transport_fallback']}")
    return notes[:1] + ([f"... and {len(notes) - 1} more"] if len(notes) > 1 else [])


def udpcast_row(lab: NetLab, procs: Procs, image: Image, args, row: Row, rowdir: Path, n: int) -> None:
    """udp-sender of the .aisimg in host 0, udp-receiver (then sync) in each client, the files on disk."""
    mbit = int(SEND_SHARE * rate_bits(args.server_rate) / 1e6)
    sender_argv = lab.argv(0, ["udp-sender", "--file", str(image.path), "--interface", "eth0", "--mcast-rdv-address",
                               UDPCAST_RDV, "--min-receivers", str(n), "--max-bitrate", f"{mbit}m",
                               "--nopointopoint", "--nokbd", "--no-progress"])
    sender = procs.start(sender_argv, rowdir / "udp-sender.log")
    files = [rowdir / f"udp-{i}.aisimg" for i in range(1, n + 1)]
    argvs = [lab.argv(i, ["sh", "-c", 'udp-receiver --file "$1" --interface eth0 --mcast-rdv-address "$2" '
                                      '--nokbd --no-progress && sync "$1"', "sh", str(f), UDPCAST_RDV])
             for i, f in zip(range(1, n + 1), files)]
    timeout = 300 + 4 * n * image.stored_bytes / (rate_bits(args.server_rate) / 8)
    try:
        row.wall, row.server_bytes, codes, row.client_cpu, row.client_seconds = measure(
            lab, procs, argvs, [rowdir / f"udp-receiver-{i}.log" for i in range(1, n + 1)], timeout)
        code, row.server_cpu = reap(sender)
        bad = [f for f, c in zip(files, codes) if c != 0 or not f.exists() or f.stat().st_size != image.stored_bytes]
        if bad or code != 0:
            row.status = "failed"
            row.message = f"udp-sender exit {code}; {len(bad)} receivers failed or stored a wrong size"
        elif not all(same_file(f, image.path) for f in files[:1]):
            row.status, row.message = "failed", "the first receiver's file differs from the image"
    finally:
        for f in files:
            f.unlink(missing_ok=True)


def same_file(a: Path, b: Path) -> bool:
    return run(["cmp", "-s", str(a), str(b)], check=False).returncode == 0


# ------------------------------------------------------------------ the table


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def summarize(rows: list[Row], image: Image) -> dict:
    """(n, transport) -> the median run's figures."""
    out: dict = {}
    for key in sorted({(r.n, r.transport) for r in rows}):
        runs = [r for r in rows if (r.n, r.transport) == key]
        good = [r for r in runs if r.status == "ok"]
        if not good:
            out[key] = {"status": runs[0].status, "message": runs[0].message, "sink": runs[0].sink,
                        "why": runs[0].why}
            continue
        mid = sorted(good, key=lambda r: r.wall)[len(good) // 2]
        cpus = [c for r in good for c in r.client_cpu]
        out[key] = {"status": "ok", "sink": mid.sink, "why": mid.why, "wall": mid.wall, "runs": len(good),
                    "walls": [r.wall for r in good], "server_bytes": mid.server_bytes,
                    "x_image": mid.server_bytes / image.stored_bytes, "cpu_median": median(cpus),
                    "cpu_max": max(cpus), "server_cpu": mid.server_cpu, "notes": mid.notes,
                    "failed_runs": len(runs) - len(good)}
    return out


def print_tables(summary: dict, clients: list[int], transports: list[str], image: Image, args) -> None:
    print(f"\nimage: {image.what}: {image.stored_bytes / MB:.0f} MB stored (.aisimg), filesystem "
          f"{image.fs_bytes / MB:.0f} MB, {image.written_bytes / MB:.0f} MB written per target; server link "
          f"{args.server_rate}, clients {args.client_rate}; {os.cpu_count()} cores shared by all clients")
    for n in clients:
        uni = summary.get((n, "unicast"), {})
        print(f"\nN = {n} client{'s' if n > 1 else ''}")
        print(f"{'transport':11} {'sink':7} {'wall s':>8} {'server MB':>10} {'x image':>8} {'cli CPU s':>10} "
              f"{'max':>6} {'srv CPU s':>9} {'vs unicast':>10}")
        for t in transports:
            s = summary.get((n, t))
            if s is None:
                continue
            if s["status"] != "ok":
                print(f"{t:11} {'-':7} {s['status']}: {s['message']}")
                continue
            vs = f"{uni['wall'] / s['wall']:9.1f}x" if uni.get("status") == "ok" else f"{'-':>10}"
            print(f"{t:11} {s['sink']:7} {s['wall']:8.1f} {s['server_bytes'] / MB:10.0f} {s['x_image']:8.2f} "
                  f"{s['cpu_median']:10.2f} {s['cpu_max']:6.2f} {s['server_cpu']:9.1f} {vs}"
                  + (f"  (runs {', '.join(f'{w:.1f}' for w in s['walls'])})" if s["runs"] > 1 else ""))
            for note in ([s["why"]] if s["why"] else []) + s["notes"]:
                print(f"{'':20}{note}")
    print("(wall: until the last client is done; server MB: bytes the server's interface sent meanwhile; x image: "
          "that / the stored image; cli CPU s: median and max per client, user+system; srv CPU s: the server "
          "process's whole life, including the plans; sinks: write = the real client onto a sparse file on disk, "
          "verify = verify-only receivers, file = udp-receiver storing the .aisimg)")


def verdicts(summary: dict, clients: list[int], transports: list[str]) -> list[dict]:
    """Issue 13's targets at the largest N against N = 1 (they are for bittorrent and chain;
    the other transports are shown for comparison)."""
    top, found = max(clients), []
    if 1 not in clients or top == 1:
        print("\ntargets: need N = 1 and a larger N (--clients)")
        return found
    print(f"\ntargets (issue 13; bittorrent and chain; others for comparison), N = {top} against N = 1:")
    uni = summary.get((top, "unicast"), {})
    for t in transports:
        if t == "unicast":
            continue
        one, many = summary.get((1, t), {}), summary.get((top, t), {})
        if one.get("status") != "ok" or many.get("status") != "ok":
            status = many.get("status") if many.get("status") != "ok" else one.get("status", "not run")
            print(f"  {t:11} {status}")
            found.append({"transport": t, "status": status})
            continue
        wall_ratio = many["wall"] / one["wall"]
        speedup = uni["wall"] / many["wall"] if uni.get("status") == "ok" else None
        checks = [("wall", wall_ratio, wall_ratio <= 1.5), ("server bytes", many["x_image"], many["x_image"] <= 1.5)]
        if speedup is not None:
            checks.append(("vs unicast", speedup, speedup >= 8))
        text = "; ".join(f"{name} {value:.2f}x {'met' if ok else 'MISSED'}" for name, value, ok in checks)
        sinks = f"sinks {one['sink']}/{many['sink']}" + ("" if one["sink"] == many["sink"] else ": not like for like")
        print(f"  {t:11} {text}   (wall {many['wall']:.1f}s vs {one['wall']:.1f}s; {sinks})")
        found.append({"transport": t, "status": "ok", "wall_ratio": wall_ratio, "x_image": many["x_image"],
                      "vs_unicast": speedup, "met": all(ok for _, _, ok in checks)})
    print("  (goals: wall within 1.5x of one client's, server bytes within 1.5x one image, >= 8x ahead of unicast)")
    return found


# ------------------------------------------------------------------ main


def parse_args(argv: list[str] | None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", default="1,4,8,16", help="client counts, comma-separated [%(default)s]")
    ap.add_argument("--transports", default=",".join(TRANSPORTS), help="comma-separated [%(default)s]")
    ap.add_argument("--runs", type=int, default=1, help="measured runs per row; the median is shown [1]")
    ap.add_argument("--json", type=Path, default=None, metavar="FILE", help="write the raw figures here")
    ap.add_argument("--image", choices=("auto", "real", "tree"), default="auto",
                    help="the real site's base image, or an ext4 of --tree [auto: real when build/real-repo exists]")
    ap.add_argument("--scd", default="base-1", help="the real site's SCD whose image is sent [%(default)s]")
    ap.add_argument("--tree", type=Path, default=Path("/usr/share"), help="tree for --image tree [%(default)s]")
    ap.add_argument("--server-rate", default="100mbit", help="the server's link (tc rate) [%(default)s]")
    ap.add_argument("--client-rate", default="1gbit", help="each client's link [%(default)s]")
    ap.add_argument("--sink", choices=("auto", "write", "verify"), default="auto",
                    help="real writes, verify-only receivers where a transport has them, or chosen per row")
    ap.add_argument("--write-budget", type=float, default=50.0, metavar="MB/S",
                    help="auto: real writes while the clients together take at most this much stored image per "
                         "second at the link's rate [%(default)s]")
    ap.add_argument("--keep", action="store_true", help="keep build/bench-fanout (logs, sessions)")
    args = ap.parse_args(argv)
    try:
        args.clients = sorted({int(x) for x in args.clients.split(",")})
        rate_bits(args.server_rate), rate_bits(args.client_rate)
    except ValueError as err:
        ap.error(str(err))
    args.transports = [t.strip() for t in args.transports.split(",") if t.strip()]
    unknown = [t for t in args.transports if t not in TRANSPORTS]
    if unknown or not args.clients or min(args.clients) < 1 or max(args.clients) > 250 or args.runs < 1:
        ap.error(f"transports are {', '.join(TRANSPORTS)}; clients 1..250; runs >= 1")
    return args


def prepare_image(args) -> Image:
    have_real = (ROOT / "build" / "real-repo" / "repodata" / "repomd.xml").is_file()
    if args.image == "real" and not have_real:
        raise SystemExit("no real site: run `make real-site` first (or --image tree)")
    if args.image == "real" or (args.image == "auto" and have_real):
        return real_image(args.scd)
    print("image: no build/real-repo (make real-site): using an ext4 of", args.tree)
    return tree_image(args.tree)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    image = prepare_image(args)
    rows: list[Row] = []
    procs = Procs()
    t_start = time.monotonic()
    try:
        for n in args.clients:
            site = WORK / f"descriptors-{n}"
            hosts = write_site(image.descriptors, image.scd, n, site)
            with NetLab(n + 1, tag=f"aisf{os.getpid() % 10000}", rate=args.client_rate) as lab:
                lab.shape(0, args.server_rate)
                for name in args.transports:
                    for k in range(args.runs):
                        rows.append(one_row(lab, procs, TRANSPORTS[name], n, k, hosts, site, image, args))
                        procs.close()
    finally:
        procs.close()
        if not args.keep:
            shutil.rmtree(WORK, ignore_errors=True)
    summary = summarize(rows, image)
    print_tables(summary, args.clients, args.transports, image, args)
    found = verdicts(summary, args.clients, args.transports)
    print(f"\nbench wall {time.monotonic() - t_start:.0f}s")
    if args.json:
        args.json.write_text(json.dumps({
            "image": {"what": image.what, "id": image.iid, "stored_bytes": image.stored_bytes,
                      "fs_bytes": image.fs_bytes, "written_bytes": image.written_bytes},
            "links": {"server": args.server_rate, "client": args.client_rate}, "cpus": os.cpu_count(),
            "rows": [r.__dict__ for r in rows], "verdicts": found,
            "summary": [{"n": n, "transport": t, **s} for (n, t), s in summary.items()]}, indent=1))
    return 1 if any(r.status == "failed" for r in rows) else 0


def one_row(lab, procs, t: Transport, n: int, k: int, hosts, site: Path, image: Image, args) -> Row:
    sink, why = choose_sink(t, n, args, image)
    row = Row(n=n, transport=t.name, run=k, sink=sink, why=why)
    rowdir = WORK / f"n{n}-{t.name}-{k}"
    rowdir.mkdir()
    print(f"N={n:<3} {t.name:11} run {k + 1}: ", end="", flush=True)
    if sink == "none":
        row.status, row.message = "failed", f"no room for the targets: {why}"
    elif t.client is None:
        udpcast_row(lab, procs, image, args, row, rowdir, n)
    else:
        ais_row(lab, procs, t, hosts, site, image, args, row, rowdir)
    print(f"{row.wall:.1f}s, server {row.server_bytes / MB:.0f} MB ({sink})" if row.status == "ok"
          else f"{row.status}: {row.message}", flush=True)
    return row


if __name__ == "__main__":
    sys.exit(main())
