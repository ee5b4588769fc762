"""A verify-only receiver: the streamer's protocol without the client's CPU (a measurement tool).

What it does: `receive_only(source, header)` fetches every chunk of an image and
checks its sha256 (or trusts a source that checked it: `verifies_sha256`), then
discards it: no decompression, nothing written. `python -m aislab.receive_only
--server H:P --image ID [--multicast G:P --interface ADDR]` runs it as a
process (inside a NetLab host), printing a JSON summary. bench/stream.py uses it
to measure how the protocol scales with receivers apart from what each
receiver's decompression and writes cost on this machine's two cores.
What it reads: a stream server. What it fails on: `StreamError` when chunks
keep missing. What it returns: a `WriteResult` (nothing written).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from dataclasses import asdict

from ais.errors import StreamError
from ais.stream.format import ImageHeader
from ais.stream.writer import ChunkSource, WriteResult


def receive_only(source: ChunkSource, header: ImageHeader, *, max_rounds: int = 6) -> WriteResult:
    """Measurement sink: fetch every chunk, check its sha256, discard it (see the module docstring)."""
    started = time.monotonic()
    hashed = not getattr(source, "verifies_sha256", False)
    done: set[int] = set()
    bad = rounds = fruitless = received = 0
    while len(done) < len(header.chunks):
        if fruitless >= max_rounds:
            raise StreamError(f"{len(header.chunks) - len(done)} of {len(header.chunks)} chunks of image "
                              f"{header.image_id} still missing after {rounds} rounds ({bad} failed their hash check)")
        rounds += 1
        before = len(done)
        for index, stored in source.fetch([i for i in range(len(header.chunks)) if i not in done]):
            chunk = header.chunks[index]
            if hashed and hashlib.sha256(stored).hexdigest() != chunk.sha256:
                bad += 1
                continue
            if index not in done:
                done.add(index)
                received += len(stored)
        fruitless = fruitless + 1 if len(done) == before else 0
    return WriteResult(chunks_total=len(header.chunks), chunks_written=0, chunks_resumed=0, bad_chunks=bad,
                       rounds=rounds, data_bytes=0, zero_bytes=0, seconds=time.monotonic() - started)


def main(argv: list[str] | None = None) -> int:
    from ais.cli import run_handler
    from ais.stream.commands import host_port
    from ais.stream.multicast import MulticastSource, interface_towards
    from ais.stream.unicast import UnicastSource, fetch_header

    ap = argparse.ArgumentParser(prog="python -m aislab.receive_only", description=__doc__.splitlines()[0])
    ap.add_argument("--server", required=True, help="HOST:PORT of the TCP stream server")
    ap.add_argument("--image", required=True)
    ap.add_argument("--multicast", help="GROUP:PORT to receive chunks by multicast")
    ap.add_argument("--interface", help="local address to join the group on")
    ap.add_argument("--stall-timeout", type=float, default=30.0)
    args = ap.parse_args(argv)

    def receive(a) -> int:
        address = host_port(a.server)
        header = fetch_header(address, a.image)
        if a.multicast:
            group, port = host_port(a.multicast)
            with MulticastSource(group, port, a.image, header, interface=a.interface or interface_towards(address[0]),
                                 stall_timeout=a.stall_timeout) as source:
                result = {**asdict(receive_only(source, header)), **{f"mcast_{k}": v for k, v in source.stats.items()}}
        else:
            source = UnicastSource(address, a.image, header)
            result = {**asdict(receive_only(source, header)), "tcp_bytes": source.bytes_received,
                      "connections": source.connections}
        print(json.dumps(result, sort_keys=True))
        return 0

    return run_handler(receive, args, prog="aislab.receive_only")


if __name__ == "__main__":
    sys.exit(main())
