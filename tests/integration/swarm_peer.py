"""A host of the BitTorrent tests: run as a script inside a lab namespace, never imported by the tests.

`python swarm_peer.py MODE ARGS_JSON`; every event is one JSON line on stdout. The trusted header
is read from the published .aisimg (what the plan pins); the torrent, the peers and the web seed
come from `ais serve` through `ais.client.api.Api` with the host's token, as the client's.

Modes (ARGS_JSON holds url, host, token, image, aisimg, staging, listen_ip and the mode's own):
- `client`: SwarmSource + write_image onto args["target"] (a regular file), then linger; prints
  {"listening"}, {"joined"} (first join), {"piece": i} per chunk handed to the writer,
  {"written": result, "stats": ...} and {"finished": stats}; a SwarmStalled prints {"stalled": message}
  and exits 3. Options: "hold": after the first join, wait for a line on stdin before going on;
  "pause_after": N: after N chunks, print {"paused": N} and wait on stdin (the test kills it);
  "web_seed": false: ignore the server's web seed (peers are the only source);
  "part": [first, end]: fetch only those chunks, write nothing, print {"holding": n}, seed until killed;
  "stall_timeout", "seed_seconds".
- `seed`: stage every chunk from the .aisimg (as a host that already wrote it), seed it; with
  "corrupt": true, once libtorrent has checked the staged files, flip bytes in every staged chunk,
  so it serves bad pieces; prints {"seeding": n} then {"corrupted": n}; seeds until killed.
- `outsider`: no token: knows the image id and the header, not the salted torrent; builds the
  torrent without the salt (its best guess) and asks every address in args["peers"] for it with
  libtorrent; after a line on stdin prints {"outsider": {"have": pieces, "downloaded": bytes,
  "peers_connected": k}}.
"""

import json
import logging
import sys
import threading
from pathlib import Path

import libtorrent as lt

from ais.client.api import Api
from ais.errors import AisError
from ais.stream.format import iter_chunks, read_header
from ais.stream.swarm import SwarmSource, SwarmStalled, session_settings
from ais.stream.torrent import chunk_file, make_torrent
from ais.stream.writer import write_image


def say(obj: dict) -> None:
    print(json.dumps(obj), flush=True)


def wait_for_stdin() -> None:
    sys.stdin.readline()


def source_for(args: dict, api: Api, header, **kw) -> SwarmSource:
    first = threading.Event()

    def join(request: dict) -> dict:
        answer = api.swarm(args["host"], request)
        if not first.is_set():
            first.set()
            say({"joined": answer})
            if args.get("hold"):
                wait_for_stdin()
        return answer

    return SwarmSource(header, api.torrent(args["image"]), join, listen_ip=args["listen_ip"],
                       staging_dir=Path(args["staging"]), stall_timeout=args.get("stall_timeout", 30.0),
                       seed_seconds=args.get("seed_seconds", 30.0), rejoin_seconds=1.0,
                       web_seed=args.get("web_seed", True), **kw)


class Announcing:
    """The source as the writer sees it, printing each chunk it hands over."""

    def __init__(self, source: SwarmSource, pause_after: int | None):
        self.source, self.pause_after, self.count = source, pause_after, 0

    def fetch(self, wanted):
        for index, data in self.source.fetch(wanted):
            say({"piece": index})
            self.count += 1
            if self.count == self.pause_after:
                say({"paused": self.count})
                wait_for_stdin()
            yield index, data


def watch_checks(source: SwarmSource) -> None:
    """Print {"hash_failures": n, "banned": m} whenever either changes (a thread; the process's life)."""
    seen = (0, 0)

    def loop():
        nonlocal seen
        while not stopped.wait(0.1):
            now = (source.stats["hash_failures"], source.stats["banned"])
            if now != seen:
                seen = now
                say({"hash_failures": now[0], "banned": now[1]})

    threading.Thread(target=loop, daemon=True).start()


stopped = threading.Event()


def client(args: dict) -> int:
    api = Api(args["url"], args["token"], retries=2, retry_delay=0.2, timeout=10)
    header = read_header(Path(args["aisimg"]))
    with source_for(args, api, header) as source:
        say({"listening": source.listen})
        watch_checks(source)
        try:
            if "part" in args:
                first, end = args["part"]
                held = sum(1 for _ in source.fetch(range(first, end)))
                say({"holding": held, "stats": source.stats})
                source.seed_seconds = 3600
                source.linger(until_all_done=False)
                return 0
            result = write_image(Announcing(source, args.get("pause_after")), Path(args["target"]), header=header,
                                 journal_path=None)
        except SwarmStalled as err:
            say({"stalled": str(err), "stats": source.stats})
            return 3
        say({"written": result.chunks_written, "bad_chunks": result.bad_chunks, "stats": source.stats})
        source.linger()
        stopped.set()
        say({"finished": source.stats})
    return 0


def seed(args: dict) -> int:
    api = Api(args["url"], args["token"], retries=2, retry_delay=0.2, timeout=10)
    aisimg = Path(args["aisimg"])
    header = read_header(aisimg)
    torrent = api.torrent(args["image"])
    name = lt.torrent_info(lt.bdecode(torrent)).name()
    staged = Path(args["staging"]) / name
    staged.mkdir(parents=True, exist_ok=True)
    for index, stored in iter_chunks(aisimg, header):
        (staged / chunk_file(index)).write_bytes(stored)
    with source_for(args, api, header) as source:
        say({"listening": source.listen})
        held = sum(1 for _ in source.fetch(range(len(header.chunks))))  # libtorrent checks the staged files
        say({"seeding": held})
        if args.get("corrupt"):
            for index in range(len(header.chunks)):
                path = staged / chunk_file(index)
                data = bytearray(path.read_bytes())
                for at in range(0, len(data), 4096):
                    data[at] ^= 0xFF
                with open(path, "r+b") as f:  # in place: libtorrent reads this file for every request
                    f.write(data)
            say({"corrupted": len(header.chunks)})
        source.seed_seconds = 3600
        source.linger(until_all_done=False)
    return 0


def outsider(args: dict) -> int:
    aisimg = Path(args["aisimg"])
    guess = lt.torrent_info(lt.bdecode(make_torrent(aisimg, salt="")))
    session = lt.session(session_settings(args["listen_ip"], "obfuscated"), flags=0)
    atp = lt.add_torrent_params()
    atp.ti = guess
    atp.save_path = args["staging"]
    handle = session.add_torrent(atp)
    for peer in args["peers"]:
        host, _, port = peer.rpartition(":")
        handle.connect_peer((host, int(port)))
    say({"ready": True})
    connected = set()
    done = threading.Event()
    threading.Thread(target=lambda: (wait_for_stdin(), done.set()), daemon=True).start()
    while not done.wait(0.2):
        connected |= {f"{p.ip[0]}:{p.ip[1]}" for p in handle.get_peer_info()}
        for peer in args["peers"]:  # keep knocking
            host, _, port = peer.rpartition(":")
            handle.connect_peer((host, int(port)))
    status = handle.status()
    say({"outsider": {"have": status.num_pieces, "downloaded": status.total_payload_download,
                      "peers_connected": len(connected)}})
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    mode, args = sys.argv[1], json.loads(sys.argv[2])
    try:
        sys.exit({"client": client, "seed": seed, "outsider": outsider}[mode](args))
    except AisError as err:
        say({"error": str(err)})
        sys.exit(1)
