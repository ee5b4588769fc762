"""What TLS costs `ais serve` and its clients (run by `make bench-tls`).

What it does: builds a small site (the demo descriptors' "mail" SCD and host mail01, the site key and
site CA, each configuration served from its base image: `publish_base_cache`), then, for each link
(unshaped, and shaped to 1 Gbit/s with tc tbf both ways; `--rates` picks them), a NetLab(2): two real
`ais serve` in namespace 0, one with `--plain-http` (the baseline) and one with HTTPS (the site CA's
certificate for the namespace's address), and the clients in namespace 1. Each run measures, on both
servers, the plain one first on even runs and the TLS one first on odd runs:
1. downloads: every RPM of build/repo through GET /v1/packages/<file> (`ais.client.api.Api.download`,
   which checks each file's sha256 as the client does), --passes times over, into /dev/shm, by a
   process in namespace 1 that times only the downloads; MB/s, and the server process's CPU seconds
   (utime + stime from /proc/<pid>/stat) over the same span: TLS moves the file's bytes from sendfile
   to reading and encrypting in user space on the server;
2. plan requests: --requests (200) sequential GET /v1/hosts/mail01/plan with the token and a fresh
   X-AIS-Nonce, each on a new connection as the client opens one per request (http.client, the
   client's ssl context): the handshake cost; seconds for all, and the server's CPU seconds;
3. a whole reinstall of mail01 (`ais client reinstall`, `--site-ca` for TLS, `--site-key` for both)
   onto a 1 GiB loop device: wall seconds of the process. The image itself goes over the stream
   server (--stream-listen), which is not TLS; TLS carries the plan, the remainder RPMs, the host
   files and the reports.
Prints one markdown table per link: the row, plain median / max, TLS median / max over --runs, and
the ratio of the medians TLS / plain (for MB/s below 1 means TLS is slower).

Subprocesses run this checkout's code: PYTHONPATH is set to it for every `ais` the bench starts.
Reads: descriptors/, build/repo (`make packages`). Writes --work (default build/bench-tls/, made
again on every run) and /dev/shm/aibt-<pid>/ (removed). Needs root (namespaces, losetup).
Fails with SystemExit when a client process or a reinstall fails (its stderr shown), `WorldError`
when a server does not start. Returns: prints the tables; exit 0.
Run: `make bench-tls ARGS="--runs 5"` (or `.venv/bin/python bench/tls.py --runs 5 --rates none`).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# every `ais` started below (servers, clients, through ip netns exec) imports this checkout's ais
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)

HOST, SCD, TOKEN = "mail01", "mail", "9d4bf7abd55eb7e7da9043caf50c4203"
REPO = ROOT / "build" / "repo"
DISK_MIB = 1024


# ------------------------------------------------------------------ the client side (in namespace 1)


def client_main(spec: dict) -> dict:
    """One measurement in namespace 1 (spec["what"]: "download" or "plans"); returns its figures."""
    if spec["what"] == "download":
        from ais.client.api import Api

        api = Api(spec["url"], TOKEN, site_ca=spec.get("site_ca"), retries=1)
        dest = Path(spec["dest"])
        dest.mkdir(parents=True, exist_ok=True)
        total, started = 0, time.monotonic()
        for _ in range(spec["passes"]):
            for p in spec["packages"]:
                target = dest / p["filename"]
                api.download(f"/v1/packages/{p['filename']}", target, sha256=p["sha256"], size=p["size"])
                total += p["size"]
                target.unlink()
        return {"bytes": total, "seconds": time.monotonic() - started}
    if spec["what"] == "plans":
        from urllib.parse import urlsplit

        from ais.siteca import client_context
        from ais.sitekey import NONCE_HEADER, new_nonce

        url = urlsplit(spec["url"])
        context = client_context(spec["site_ca"]) if url.scheme == "https" else None
        started = time.monotonic()
        for _ in range(spec["requests"]):
            conn = (http.client.HTTPSConnection(url.hostname, url.port, timeout=30, context=context) if context
                    else http.client.HTTPConnection(url.hostname, url.port, timeout=30))
            try:
                conn.request("GET", f"/v1/hosts/{HOST}/plan", headers={
                    "Authorization": f"Bearer {TOKEN}", NONCE_HEADER: new_nonce(), "User-Agent": "ais-client/1"})
                resp = conn.getresponse()
                body = resp.read()
                if resp.status != 200:
                    raise SystemExit(f"plan request: HTTP {resp.status}: {body[:300]!r}")
            finally:
                conn.close()
        return {"seconds": time.monotonic() - started}
    raise SystemExit(f"unknown client measurement {spec['what']!r}")


# ------------------------------------------------------------------ the bench (outside the namespaces)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (its threads included), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_server(lab, site: dict, name: str, tls: bool, work: Path):
    """`ais serve` in namespace 0 (HTTPS with the site's certificate, or --plain-http); (url, pid)."""
    from aislab.lines import next_line
    from aislab.net import ais_command
    from ais.errors import WorldError

    address = lab.address(0)
    argv = [*ais_command("serve"), *([] if tls else ["--plain-http"]), "--descriptors", str(site["descriptors"]),
            "--repo", str(REPO), "--cache", str(site["cache"]), "--history", str(work / f"{name}.sqlite"),
            "--listen", f"{address}:0", "--stream-listen", f"{address}:0", "--poll", "0.2"]
    log = open(work / f"{name}.log", "wb")
    proc = lab.spawn(0, argv, stderr=log, cwd=ROOT, env={"PYTHONUNBUFFERED": "1"})
    line = next_line(proc.stdout, 60)
    if not line.startswith('{"listening"'):
        raise WorldError(f"ais serve ({name}) did not start: {line!r}; log {work / f'{name}.log'}")
    cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
    if b"serve" not in cmdline or cmdline.startswith(b"ip\0"):  # ip netns exec execs: the pid is the server's
        raise WorldError(f"pid {proc.pid} is not the server itself: {cmdline[:200]!r}")
    return json.loads(line)["listening"]["url"], proc.pid


def in_client(lab, spec: dict) -> dict:
    from ais.run import run

    proc = run(lab.argv(1, [sys.executable, str(Path(__file__).resolve()), "--client", json.dumps(spec)]),
               check=False, timeout=900)
    if proc.returncode != 0:
        raise SystemExit(f"the {spec['what']} client failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def reinstall(lab, url: str, site: dict, tls: bool, work: Path, run_no: int) -> float:
    from ais.run import run
    from aislab.disks import LoopDisk, reinstall_argv

    extra = ["--site-key", site["public"], *(["--site-ca", str(site["ca"])] if tls else [])]
    state = work / f"state-{'tls' if tls else 'plain'}-{run_no}"
    with LoopDisk(work / "disk.img", DISK_MIB) as disk:
        started = time.monotonic()
        proc = run(lab.argv(1, reinstall_argv(url, HOST, TOKEN, disk.device, state, *extra)),
                   check=False, timeout=900)
        wall = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"reinstall of {HOST} ({'TLS' if tls else 'plain'}) failed:\n{proc.stderr[-3000:]}")
    return wall


def make_site(work: Path) -> dict:
    from ais import siteca, sitekey
    from aislab.site import publish_base_cache, subset_descriptors

    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    descriptors = subset_descriptors(ROOT / "descriptors", work / "descriptors", [SCD], [HOST])
    cache = work / "cache"
    public, _ = sitekey.init(cache)
    siteca.init(cache)
    publish_base_cache(descriptors, REPO, cache)
    return {"descriptors": descriptors, "cache": cache, "public": public, "ca": siteca.ca_path(cache)}


def repo_packages() -> list[dict]:
    from ais.files import file_sha256

    return [{"filename": p.name, "sha256": file_sha256(p), "size": p.stat().st_size}
            for p in sorted(REPO.glob("RPMS/*/*.rpm"))]


def measure_link(rate: str | None, tag: str, site: dict, packages: list[dict], args, work: Path) -> dict:
    """{row: {"plain": [values], "tls": [values]}} over args.runs runs on one link."""
    from ais import siteca
    from aislab.net import NetLab

    rows: dict[str, dict[str, list[float]]] = {}

    def add(row: str, mode: str, value: float) -> None:
        rows.setdefault(row, {"plain": [], "tls": []})[mode].append(value)

    with NetLab(2, tag=tag, rate=rate) as lab:
        siteca.issue_server(site["cache"], [lab.address(0)])
        servers = {"plain": start_server(lab, site, f"{tag}-plain", False, work),
                   "tls": start_server(lab, site, f"{tag}-tls", True, work)}
        assert servers["plain"][0].startswith("http://") and servers["tls"][0].startswith("https://")
        for r in range(args.runs):
            for mode in (("plain", "tls") if r % 2 == 0 else ("tls", "plain")):
                url, pid = servers[mode]
                ca = str(site["ca"]) if mode == "tls" else None
                cpu = cpu_seconds(pid)
                got = in_client(lab, {"what": "download", "url": url, "site_ca": ca, "packages": packages,
                                      "passes": args.passes, "dest": f"/dev/shm/aibt-{os.getpid()}"})
                add("download MB/s", mode, got["bytes"] / got["seconds"] / 1e6)
                add("download: server CPU s", mode, cpu_seconds(pid) - cpu)
                cpu = cpu_seconds(pid)
                got = in_client(lab, {"what": "plans", "url": url, "site_ca": ca, "requests": args.requests})
                add(f"{args.requests} plan requests, s", mode, got["seconds"])
                add(f"{args.requests} plan requests: server CPU s", mode, cpu_seconds(pid) - cpu)
                if not args.no_reinstall:
                    cpu = cpu_seconds(pid)
                    add(f"reinstall {HOST}, wall s", mode, reinstall(lab, url, site, mode == "tls", work, r))
                    add(f"reinstall {HOST}: server CPU s", mode, cpu_seconds(pid) - cpu)
            print(f"  {tag}: run {r + 1} of {args.runs} done", file=sys.stderr, flush=True)
    shutil.rmtree(f"/dev/shm/aibt-{os.getpid()}", ignore_errors=True)
    return rows


def print_table(title: str, rows: dict) -> None:
    print(f"\n{title}\n")
    print("| row | plain median | plain max | TLS median | TLS max | TLS / plain |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for row, v in rows.items():
        p, t = statistics.median(v["plain"]), statistics.median(v["tls"])
        ratio = f"{t / p:.2f}" if p > 0 else "-"
        print(f"| {row} | {p:.3f} | {max(v['plain']):.3f} | {t:.3f} | {max(v['tls']):.3f} | {ratio} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per server and link (default 5)")
    parser.add_argument("--passes", type=int, default=3, help="times every RPM is downloaded per run (default 3)")
    parser.add_argument("--requests", type=int, default=200, help="plan requests per run (default 200)")
    parser.add_argument("--rates", default="none,1gbit",
                        help="links, comma-separated: none (unshaped) or a tc rate (default none,1gbit)")
    parser.add_argument("--no-reinstall", action="store_true", help="leave out the reinstall row")
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "bench-tls", help="work directory")
    parser.add_argument("--client", help=argparse.SUPPRESS)  # a measurement in namespace 1 (JSON spec)
    args = parser.parse_args(argv)
    if args.client:
        print(json.dumps(client_main(json.loads(args.client))))
        return 0
    if not (REPO / "repodata" / "repomd.xml").is_file():
        raise SystemExit(f"no repository at {REPO}: run `make packages` first")
    work = args.work.resolve()
    t0 = time.monotonic()
    site = make_site(work)
    packages = repo_packages()
    print(f"site: {HOST} ({SCD}) served from its base image; {len(packages)} RPMs of build/repo, "
          f"{sum(p['size'] for p in packages) / 1e6:.1f} MB, x{args.passes} per download run; "
          f"made in {time.monotonic() - t0:.1f}s")
    for n, rate in enumerate(r.strip() for r in args.rates.split(",")):
        t0 = time.monotonic()
        rows = measure_link(None if rate == "none" else rate, f"aibt{os.getpid() % 1000}l{n}", site, packages,
                            args, work)
        link = "unshaped veth" if rate == "none" else f"shaped to {rate} (tc tbf)"
        print_table(f"{link}: plain HTTP vs TLS, {args.runs} runs each, alternating "
                    f"({time.monotonic() - t0:.0f}s)", rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
