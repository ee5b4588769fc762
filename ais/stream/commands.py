"""`ais image ...` subcommands: write, get, verify, serve-stream.

What it does: `register(subparsers)` adds `image` with four subcommands.
- `write IMAGE TARGET [--create-file]`: write a local .aisimg onto a disk or
  file (resumable). The target goes through `ais.stream.target` first: a
  block device in use anywhere (mounted in any mount namespace, swap, held),
  a path that does not exist (unless --create-file, never under /dev), or one
  too small is refused with exit 2 and nothing written.
- `get --server HOST:PORT --image ID TARGET [--multicast GROUP:PORT] [--create-file]`: fetch
  the header over TCP (pinned with `--header-sha256` when the control channel
  gave one), then the chunks over TCP or multicast, and write them.
- `verify IMAGE`: check the header and every chunk (hash, decompression).
- `serve-stream DIR`: run a `StreamServer` until interrupted (or `--seconds`).
Each handler prints a one-line summary (JSON with `--json`) on stdout; `write`
and `get` show the bytes written of the image's total on stderr as they go
(ais.progress: a bar on a terminal, timestamped lines otherwise).

What it reads: parsed arguments. What it fails on: `UsageError` for a
malformed HOST:PORT; `TargetRefused` (exit 2) for an unsafe target;
`StreamError`/`TargetIOError` (exit 1) from the stream modules.
What it returns: exit code 0; errors are raised for `ais.cli` to map.

They run only through the one entry point, `ais image ...` (ais.cli).
"""

from __future__ import annotations

import json
import signal
import threading
from dataclasses import asdict
from pathlib import Path

from ais import progress
from ais.errors import UsageError
from ais.stream.format import decode_chunk, iter_chunks, read_header
from ais.stream.multicast import MulticastSource, interface_towards
from ais.stream.server import StreamServer
from ais.stream.unicast import UnicastSource, fetch_header
from ais.stream.writer import LocalSource, data_total, write_image


def host_port(text: str, *, allow_zero: bool = False) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not (0 if allow_zero else 1) <= int(port) < 65536:
        raise UsageError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


CREATE_FILE_HELP = ("TARGET is a new regular file to create (never under /dev); without it a TARGET that "
                    "does not exist is refused")
TARGET_EPILOG = ("Exit codes: 0 written; 1 the world failed (I/O error, disk full, file size limit: the message "
                 "names the path and the error); 2 bad input (the target refused: nothing written).")


def register(subparsers) -> None:
    image = subparsers.add_parser("image", help="write, fetch, verify and serve chunked images")
    sub = image.add_subparsers(dest="image_command", required=True)

    p = sub.add_parser("write", help="write a local .aisimg onto a disk or file",
                       description="Write the filesystem of IMAGE onto TARGET, a block device or a regular file. "
                                   "A block device is opened exclusively and kept so for the whole write: one "
                                   "mounted (in any mount namespace), used as swap, held by another program, or "
                                   "sharing its backing file with a loop device in use is refused, as is a disk "
                                   "smaller than the filesystem (exit 2, nothing written). A TARGET that does not "
                                   "exist is refused unless --create-file asks for a new image file.",
                       epilog=TARGET_EPILOG)
    p.add_argument("image", type=Path, help="a local .aisimg file")
    p.add_argument("target", type=Path, help="a block device (/dev/sdX) or an image file")
    p.add_argument("--create-file", action="store_true", help=CREATE_FILE_HELP)
    p.add_argument("--journal", type=Path, help="progress journal (default TARGET.ais-progress for files)")
    p.add_argument("--no-resume", action="store_true", help="ignore an existing progress journal")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_write)

    p = sub.add_parser("get", help="fetch an image from a stream server and write it")
    p.add_argument("--server", required=True, help="HOST:PORT of the TCP stream server")
    p.add_argument("--image", required=True, help="image id")
    p.add_argument("--header-sha256", help="pin the header (from the control channel)")
    p.add_argument("--multicast", help="GROUP:PORT to receive chunks by multicast")
    p.add_argument("--interface", default=None,
                   help="local address to join the group on (default: the one that routes to --server)")
    p.add_argument("--journal", type=Path)
    p.add_argument("--stall-timeout", type=float, default=30.0)
    p.add_argument("--create-file", action="store_true", help=CREATE_FILE_HELP)
    p.add_argument("--json", action="store_true")
    p.add_argument("target", type=Path, help="a block device or an image file (checked as for write)")
    p.set_defaults(handler=cmd_get)

    p = sub.add_parser("verify", help="check an .aisimg: header, chunk hashes, decompression")
    p.add_argument("image", type=Path)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_verify)

    p = sub.add_parser("serve-stream", help="serve the .aisimg files of a directory (TCP, multicast)")
    p.add_argument("directory", type=Path)
    p.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT for TCP (port 0: any free port)")
    p.add_argument("--multicast", help="GROUP:PORT to serve by multicast")
    p.add_argument("--interface", default="127.0.0.1", help="local address to send multicast from")
    p.add_argument("--rate", type=float, default=100.0, help="multicast send cap, MB/s")
    p.add_argument("--seconds", type=float, help="stop after this long (default: until SIGTERM/SIGINT)")
    p.set_defaults(handler=cmd_serve_stream)


def _report(args, summary: dict) -> None:
    if getattr(args, "json", False):
        print(json.dumps(summary, sort_keys=True))
    else:
        print(" ".join(f"{k}={v}" for k, v in summary.items()))


def cmd_write(args) -> int:
    journal = args.journal if args.journal else "default"
    source = LocalSource(args.image)
    with progress.task(f"image {source.header.image_id[:12]} -> {args.target}", data_total(source.header),
                       "bytes") as bar:
        result = write_image(source, args.target, journal_path=journal, resume=not args.no_resume,
                             create_file=args.create_file, on_bytes=bar.advance)
    _report(args, asdict(result))
    return 0


def cmd_get(args) -> int:
    address = host_port(args.server.replace("0.0.0.0", "127.0.0.1"))
    header = fetch_header(address, args.image, sha256=args.header_sha256)
    journal = args.journal if args.journal else "default"

    def sink(source):
        with progress.task(f"image {header.image_id[:12]} from {args.server} -> {args.target}", data_total(header),
                           "bytes") as bar:
            return write_image(source, args.target, header=header, journal_path=journal,
                               create_file=args.create_file, on_bytes=bar.advance)

    if args.multicast:
        group, port = host_port(args.multicast)
        with MulticastSource(
            group, port, args.image, header, interface=args.interface or interface_towards(address[0]),
            stall_timeout=args.stall_timeout
        ) as source:
            result = sink(source)
            extra = {f"mcast_{k}": v for k, v in source.stats.items()}
    else:
        source = UnicastSource(address, args.image, header)
        result = sink(source)
        extra = {"tcp_bytes": source.bytes_received, "connections": source.connections}
    _report(args, {**asdict(result), **extra})
    return 0


def cmd_verify(args) -> int:
    header = read_header(args.image)
    raw = 0
    for index, stored in iter_chunks(args.image, header):
        raw += sum(len(d) for _, d in decode_chunk(header, index, stored))
    _report(
        args,
        {"image_id": header.image_id, "chunks": len(header.chunks), "raw_bytes": raw,
         "stored_bytes": header.stored_bytes, "fs_bytes": header.fs_bytes, "ok": True},
    )
    return 0


def cmd_serve_stream(args) -> int:
    host, port = host_port(args.listen, allow_zero=True)
    multicast = host_port(args.multicast) if args.multicast else None
    server = StreamServer(
        args.directory, host=host, port=port, multicast=multicast,
        multicast_interface=args.interface, rate=args.rate * 1e6,
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    with server:
        print(json.dumps({"listening": list(server.address)}), flush=True)
        stop.wait(args.seconds)
        print(json.dumps(server.stats()), flush=True)
    return 0

