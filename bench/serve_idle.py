"""Idle connections against `ais serve`: how many threads and file descriptors the server holds.

Builds a small site (mail, db) and its cache with the real rebuild, starts a real `ais serve`
with its default options, opens N idle TCP connections to the control API, then asks
GET /v1/health and reads the server's /proc/PID/status (Threads) and /proc/PID/fd. Counts,
not timings: they do not depend on what else the machine runs. Prints one JSON line.

Run: `.venv/bin/python bench/serve_idle.py [--connections 3000]` (after `make setup`).
Reads: descriptors/, build/repo. Writes build/bench-serve-idle/. Raises its own
RLIMIT_NOFILE (the server inherits it) so that the server's limit, not the file
descriptor limit, is what is measured.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import sys
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aislab.site import ServeProcess, get_json, rebuild_cache, subset_descriptors  # noqa: E402


def threads_and_fds(pid: int) -> tuple[int, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    threads = int(next(line.split()[1] for line in status.splitlines() if line.startswith("Threads:")))
    return threads, len(os.listdir(f"/proc/{pid}/fd"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=3000)
    args = parser.parse_args()
    resource.setrlimit(resource.RLIMIT_NOFILE, (args.connections + 1024,) * 2)
    work = ROOT / "build" / "bench-serve-idle"
    shutil.rmtree(work, ignore_errors=True)
    descriptors = subset_descriptors(ROOT / "descriptors", work / "descriptors", ["mail", "db"], ["mail01", "db01"])
    rebuild_cache(descriptors, ROOT / "build" / "repo", work / "cache")
    with ServeProcess(descriptors, ROOT / "build" / "repo", work / "cache", work / "history.sqlite") as server:
        assert get_json(server, "/v1/health")[0] == 200
        before = threads_and_fds(server.proc.pid)
        url = urlsplit(server.url)
        idle = [socket.create_connection((url.hostname, url.port), timeout=30) for _ in range(args.connections)]
        try:
            status = get_json(server, "/v1/health")[0]
            after = threads_and_fds(server.proc.pid)
        finally:
            for sock in idle:
                sock.close()
    print(json.dumps({"idle_connections": args.connections, "threads": [before[0], after[0]],
                      "fds": [before[1], after[1]], "health_status": status}))


if __name__ == "__main__":
    main()
