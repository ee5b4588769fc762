"""The target's filesystem: image it, or make a fresh one; grow, mount, unmount, fsck.

What it does:
- `write_planned_image(plan, target, transport, interface, api, host)`: checks
  the plan's inline header against `header_sha256`, then takes the chunks
  from the transport's source (one table: unicast `UnicastSource` over TCP,
  `MulticastSource`, the chain's `ChainSource`, BitTorrent's `SwarmSource`;
  the peer transports find their peers through the control API `api` as
  `host`) and writes them with `ais.stream.writer.write_image` (every chunk's
  sha256 checked before a byte of it is written; the target passes the
  shared check of ais.stream.target again and stays exclusively open during
  the write; it is never created). Multicast joins, and peers listen, on
  `interface`, by default the local address that routes to the server's
  stream address (so a real client works on the provisioning network, not
  on loopback). A peer transport then fetches the remainder's RPMs from the
  same peers (`ais.client.rpmpeers`, into `rpm_dir`) before it seeds on.
  The bytes written of the image's total show on stderr (ais.progress), and
  `on_progress(done, total)`, when given, hears them too (the server's live board).
- `make_fresh_fs(target, label)`: `mkfs.ext4` over the whole target (the
  packages-only path, image null).
- `grow(target)`: `resize2fs` to the whole target; `new_uuid(target)`: every
  host gets its own filesystem UUID (`tune2fs -U random`), not the image's.
- `mount` / `unmount` / `fsck` (`e2fsck -fn`: any problem is a failure).

Host tools: mkfs.ext4, resize2fs, tune2fs, e2fsck, mount, umount (through
`ais.run.run`). Fails with `ClientError` (header does not match its pin) or
`StreamError`/`ToolError` from the streamer and the tools. Returns stream
statistics for the image, nothing otherwise.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ais import progress
from ais.client.rpmpeers import PEER_TRANSPORTS, fetch_remainder
from ais.errors import ClientError
from ais.run import run

if TYPE_CHECKING:
    from ais.contracts import ImageHeader


def trusted_header(plan: dict) -> "ImageHeader":
    """The plan's inline header, accepted only if it hashes to the plan's header_sha256."""
    image = plan["image"]
    from ais.contracts import ImageHeader

    header = ImageHeader.from_json(json.dumps(image["header"]))
    if header.sha256() != image["header_sha256"] or header.image_id != image["id"]:
        raise ClientError(f"the plan's header of image {image['id'][:12]} does not match its header_sha256")
    return header


def write_planned_image(plan: dict, target: str, *, transport: str = "unicast", interface: str | None = None,
                        api=None, host: str | None = None, staging: str | None = None,
                        seed_seconds: float = 60.0, rpm_dir: str | None = None,
                        on_progress: Callable[[int, int], None] | None = None) -> dict:
    """Stream the plan's image onto target by `transport`; returns statistics.

    interface: this machine's address on the provisioning network (multicast joins there, peer
    transports listen there); None = the one that routes to the server.
    api, host: the control API and this host's name, through which peer transports find their peers.
    staging, seed_seconds: BitTorrent's staging directory (removed afterwards) and how long it seeds on
    after the write at most (less when the server says every peer is done).
    rpm_dir: where a peer transport puts the remainder's RPMs, fetched from the same peers right
    after the image (ais.client.rpmpeers; the install step looks there first); None: not here.
    on_progress: told (bytes written so far, the image's data bytes) after each chunk is written
    (ais.client.notify throttles what it posts).
    """
    from ais.stream.multicast import interface_towards
    from ais.stream.writer import data_total, write_image

    header = trusted_header(plan)
    stream = plan["image"]["stream"]
    server = stream["tcp"].rsplit(":", 1)
    opened = _sources.get(transport)
    if opened is None:
        raise ClientError(f"transport must be one of {', '.join(_sources)}, not {transport!r}")
    local = interface or interface_towards(server[0])
    peer = {"api": api, "host": host, "staging": staging, "seed_seconds": seed_seconds}
    rpms_too = rpm_dir is not None and transport in PEER_TRANSPORTS and bool(plan["packages"])
    rpm_stats: dict = {}
    with opened(header, stream, (server[0], int(server[1])), local, peer) as source:
        if rpms_too and hasattr(source, "hold_done"):
            source.hold_done = True  # a member is done when it has the image and its RPMs
        total = data_total(header)
        with progress.task(f"image {header.image_id[:12]} by {transport}", total, "bytes") as bar:
            result = write_image(source, target, header=header, journal_path=None, create_file=False,
                                 on_bytes=_heard(bar, total, on_progress))
        if rpms_too and hasattr(source, "linger"):  # BitTorrent: the RPMs ride the image's session
            rpm_stats = fetch_remainder(plan, api, rpm_dir, listen_ip=local, swarm=source, seed_seconds=seed_seconds)
        if hasattr(source, "linger"):
            source.linger()
        stats = dict(getattr(source, "stats", {}))
    if rpms_too and transport == "chain":  # after the chain is left: a session of their own
        rpm_stats = fetch_remainder(plan, api, rpm_dir, listen_ip=local, seed_seconds=seed_seconds)
    extra = {f"{transport}_{k}": v for k, v in stats.items()}
    extra.update(rpm_stats)
    if transport != "unicast":
        extra[f"{transport}_interface"] = local
    return {"chunks": result.chunks_total, "bad_chunks": result.bad_chunks, "data_bytes": result.data_bytes,
            "zero_bytes": result.zero_bytes, "fs_bytes": header.fs_bytes, **extra}


def _heard(bar, total: int, on_progress: Callable[[int, int], None] | None) -> Callable[[int], None]:
    """What the writer tells of each chunk written: the bar advances, on_progress hears the sum."""
    done = 0

    def heard(count: int) -> None:
        nonlocal done
        done += count
        bar.advance(count)
        if on_progress is not None:
            on_progress(done, total)
    return heard


@contextlib.contextmanager
def _unicast(header, stream, server, local, peer):
    from ais.stream.unicast import UnicastSource

    yield UnicastSource(server, header.image_id, header)


def _multicast(header, stream, server, local, peer):
    from ais.stream.multicast import MulticastSource

    if not stream.get("multicast"):
        raise ClientError("multicast asked for, but the server does not stream by multicast (no --multicast)")
    group, port = stream["multicast"].rsplit(":", 1)
    return MulticastSource(group, int(port), header.image_id, header, interface=local)


def _chain(header, stream, server, local, peer):
    from ais.stream.chain import ChainSource

    api, host = peer["api"], peer["host"]
    return ChainSource(header, lambda request: api.chain(host, request), server, listen_ip=local)


@contextlib.contextmanager
def _bittorrent(header, stream, server, local, peer):
    """The swarm's source; its staging directory (the compressed chunks) is removed afterwards."""
    from ais.stream.swarm import SwarmSource

    api, host = peer["api"], peer["host"]
    staging = Path(peer["staging"] or tempfile.mkdtemp(prefix="ais-swarm-"))
    try:
        with SwarmSource(header, api.torrent(header.image_id), lambda request: api.swarm(host, request),
                         listen_ip=local, staging_dir=staging, seed_seconds=peer["seed_seconds"]) as source:
            yield source
    finally:
        shutil.rmtree(staging, ignore_errors=True)


_sources = {"unicast": _unicast, "multicast": _multicast, "chain": _chain, "bittorrent": _bittorrent}


def make_fresh_fs(target: str, label: str) -> None:
    run(["mkfs.ext4", "-q", "-F", "-b", "4096", "-E", "nodiscard", "-L", label[:16], target])


def grow(target: str) -> None:
    """Grow the imaged filesystem to fill the target (resize2fs reads the size itself)."""
    run(["resize2fs", target])


def new_uuid(target: str) -> None:
    run(["tune2fs", "-U", "random", target])


def mount(target: str, root: str) -> None:
    Path(root).mkdir(parents=True, exist_ok=True)
    options = ["-o", "loop"] if stat.S_ISREG(os.stat(target).st_mode) else []
    run(["mount", "-t", "ext4", *options, target, root])


def unmount(root: str) -> None:
    run(["umount", root])


def fsck(target: str) -> None:
    proc = run(["e2fsck", "-fn", target], check=False)
    if proc.returncode != 0:
        raise ClientError(f"e2fsck -fn {target} found problems (exit {proc.returncode}):\n{proc.stdout[-1500:]}")
