"""The remainder's RPMs from the peers of the image session, fetched in the image step.

What it does: `fetch_remainder(plan, api, directory, listen_ip=..., swarm=...)` runs right after
a peer transport (bittorrent, chain) has written the image: it asks the server for each
remainder RPM's .torrent and this host's rank among the askers (`Api.package_torrent`), and
fetches the RPMs by BitTorrent (`ais.stream.rpmswarm.FileSwarm`) into directory (the session
directory's `rpms/`, where the install step looks first: ais.client.packages). With the
BitTorrent transport's `SwarmSource` as swarm, the RPMs ride its libtorrent session (one listen
port) and its membership, and the source says "not done" until the RPMs are fetched (its
`hold_done`, which the caller sets before the image is written); the caller's `linger()` then
seeds both. Without one (the chain) the RPMs get a
session of their own, join the image's swarm board themselves, and seed on here until every
member is done or `seed_seconds` have passed.

An RPM already in directory with the plan's size and sha256 (an image step run again) is
seeded, not fetched. Every RPM fetched is checked against the plan's size and sha256; what
could not be fetched (no torrent, a stall, a mismatch) is said on the console and left for
the install step, which downloads it from the server as it does without peers. Nothing here
fails the reinstall: a failure of the peers only costs the server's bytes.

Reads: the plan, the server's torrents and swarm board, the peers. Fails with nothing but
bugs (ClientError and StreamError are said and turned into "left to the server"). Returns
statistics: rpm_from_peers, rpm_from_web_seed, rpm_uploaded, rpm_files_fetched,
rpm_files_left, rpm_bytes_left, and rpm_note when something was left.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from ais.client.session import say
from ais.errors import AisError

if TYPE_CHECKING:
    from ais.stream.rpmswarm import SharedFile

log = logging.getLogger("ais.client.rpmpeers")
RPM_DIR = "rpms"  # inside the session directory
PEER_TRANSPORTS = ("bittorrent", "chain")


def shared_files(plan: dict, api) -> tuple[list["SharedFile"], list[str]]:
    """(the plan's RPMs as SharedFiles, the names whose torrent the server would not give)."""
    from ais.stream.rpmswarm import SharedFile

    files, refused = [], []
    for pkg in plan["packages"]:
        name = Path(pkg["filename"]).name
        if name != pkg["filename"]:
            refused.append(pkg["filename"])
            continue
        try:
            torrent, rank = api.package_torrent(pkg["url"])
        except AisError as err:
            log.warning("no torrent for %s: %s", name, err)
            refused.append(name)
            continue
        files.append(SharedFile(name, int(pkg["size"]), pkg["sha256"], torrent, f"{api.server}{pkg['url']}", rank))
    return files, refused


def fetch_remainder(plan: dict, api, directory: Path, *, listen_ip: str, swarm=None, seed_seconds: float = 60.0,
                    stall_timeout: float = 30.0, web_seed_delay: float = 5.0) -> dict:
    """Fetch the plan's remainder RPMs from the session's peers into directory; statistics."""
    from ais.stream.rpmswarm import FileSwarm  # libtorrent: only the peer transports load it

    if not plan["packages"]:
        return {}
    directory = Path(directory)
    host, image = plan["host"], plan["image"]["id"]
    say(f"rpm: fetching {len(plan['packages'])} packages from the peers of image {image[:12]}")
    try:
        files, refused = shared_files(plan, api)
        options = {"stall_timeout": stall_timeout, "web_seed_delay": web_seed_delay, "seed_seconds": seed_seconds}
        if swarm is not None:
            options.update(session=swarm.session, listen=swarm.listen)
        else:
            options.update(listen_ip=listen_ip)
        with FileSwarm(files, directory, lambda request: api.swarm(host, request), image, **options) as peers:
            peers.fetch()
            if swarm is None:
                peers.linger()  # a shared session seeds on in the caller's swarm.linger()
            stats = dict(peers.stats)
    except AisError as err:  # the swarm could not start: everything is left to the server
        say(f"rpm: the peers could not be used ({err}); the install step fetches every package from the server")
        return {"rpm_note": str(err)[:500]}
    finally:
        if swarm is not None:
            swarm.hold_done = False
    for name in refused:
        stats["files_left"] += 1
        stats["bytes_left"] += next(int(p["size"]) for p in plan["packages"] if p["filename"] == name)
    result = {f"rpm_{k}": v for k, v in stats.items()}
    said = (f"rpm: {stats['files_fetched']} packages from the peers ({stats['from_peers']} bytes) and the web seed "
            f"({stats['from_web_seed']} bytes)")
    if stats["files_left"]:
        result["rpm_note"] = (f"{stats['files_left']} packages ({stats['bytes_left']} bytes) made no progress "
                              "by BitTorrent: the install step fetches them from the server")
        said += f"; {result['rpm_note']}"
    say(said)
    return result


