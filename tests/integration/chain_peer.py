"""A client of the chain transport, or a neighbour that tries to join a chain without its key.

Run as a script inside a lab namespace, never imported by the tests (they run with
--import-mode=importlib). Prints one JSON line per event; the test waits on them.

- `drive URL HOST TOKEN TARGET [--pause P:K ...] [--corrupt-position P]`:
  the client side of a chain transfer, as a reinstall would do it: the host's plan (its trusted
  header and the server's TCP stream) through `Api`, then `ChainSource` with `Api.chain` as its
  join, and `write_image` onto the regular file TARGET. Prints `{"listen": "IP:PORT"}` once
  listening, then waits for one line on stdin before it joins (so the test starts every client
  at once); `{"position": N, "upstream": ...}` for each answer of the server; `{"done": ...}` with
  the source's stats at the end. The client whose first answer gives it position P:
  with --pause P:K, prints `{"paused": K}` after its K-th chunk and takes no more chunks (what
  is upstream of it soon waits too: a pipeline) until it reads a line on stdin (or is killed);
  with --corrupt-position P, flips one byte of every chunk it forwards (a peer gone bad) and
  prints `{"corrupting": true}`.
- `intrude ADDRESS IMAGE_ID`: connect to a chain node and send a hello with the image id and a
  random key (no token, no key from the server); print `{"status": S, "message": M,
  "frame_bytes": N}`: the node's answer and how many bytes came after it before the node closed.
"""

import argparse
import json
import os
import socket
import sys

from ais.client.api import Api
from ais.client.disk import trusted_header
from ais.stream.chain import REPLY, ChainSource, hello_bytes
from ais.stream.unicast import recv_exact
from ais.stream.writer import write_image


def say(obj: dict) -> None:
    print(json.dumps(obj), flush=True)


class Node:
    """The driver's hooks around one ChainSource: position, pausing, corrupting."""

    def __init__(self, args):
        self.args = args
        self.api = Api(args.url, args.token)
        self.position = None
        self.source = None
        self.pauses = dict(tuple(int(x) for x in p.split(":")) for p in args.pause)  # position -> after

    def join(self, request: dict) -> dict:
        answer = self.api.chain(self.args.host, request)
        if not request.get("leave"):
            if self.position is None:
                self.position = answer["position"]
                if self.position == self.args.corrupt_position:
                    self.corrupt()
            say({"position": answer["position"], "upstream": answer["upstream"], "lost": request["lost"]})
        return answer

    def corrupt(self) -> None:
        send = self.source._send_chunk

        def flipped(sock, index, data):
            bad = bytearray(data)
            bad[len(bad) // 2] ^= 0x40
            send(sock, index, bad)

        self.source._send_chunk = flipped
        say({"corrupting": True})

    def fetch(self, wanted):
        for n, item in enumerate(self.source.fetch(wanted), 1):
            yield item
            if self.pauses.get(self.position) == n:
                say({"paused": n})
                sys.stdin.readline()


def drive(args) -> None:
    node = Node(args)
    plan = node.api.plan(args.host)
    header = trusted_header(plan)
    listen_ip = os.environ["PEER_ADDRESS"]
    with ChainSource(header, node.join, plan["image"]["stream"]["tcp"], listen_ip=listen_ip,
                     stall_timeout=30.0) as source:
        node.source = source
        say({"listen": source.listen})
        sys.stdin.readline()
        result = write_image(node, args.target, header=header, journal_path=None, create_file=True)
    say({"done": True, "rounds": result.rounds, "chunks": result.chunks_total, "bad_chunks": result.bad_chunks,
         "stats": source.stats})


def intrude(address: str, image_id: str) -> None:
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        sock.sendall(hello_bytes(image_id, os.urandom(32)))
        _, _, status, length = REPLY.unpack(recv_exact(sock, REPLY.size))
        message = recv_exact(sock, length).decode() if length else ""
        after = 0
        while True:
            data = sock.recv(65536)
            if not data:
                break
            after += len(data)
    say({"status": status, "message": message, "frame_bytes": after})


def main() -> None:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="mode", required=True)
    d = sub.add_parser("drive")
    for name in ("url", "host", "token", "target"):
        d.add_argument(name)
    d.add_argument("--pause", action="append", default=[], metavar="POSITION:CHUNKS")
    d.add_argument("--corrupt-position", type=int, default=None)
    i = sub.add_parser("intrude")
    i.add_argument("address")
    i.add_argument("image_id")
    args = p.parse_args()
    if args.mode == "drive":
        drive(args)
    else:
        intrude(args.address, args.image_id)


if __name__ == "__main__":
    main()
