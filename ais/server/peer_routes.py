"""The routes of the peer transports: the chain's board, BitTorrent's torrents, swarms and web seed.

What it does: `PeerRoutes`, a part of `ais.server.routes.Routes`, answers
- POST /v1/hosts/<name>/chain (the host's token): the body is checked
  (`parse_chain_request`), then `ais.server.chain.ChainBoard` (the app's `chains`)
  records the join, loss or leave; the answer to a join is `Deferred` until the chain
  may start;
- GET /v1/images/<id>/torrent (any host's token), POST /v1/hosts/<name>/swarm (the
  host's token) and the web seed GET /v1/seed/<key>/<name>/<index> (the swarm's key):
  `ais.server.swarm.SwarmBoard` (the app's `swarm`) and the image's chunks;
- GET /v1/packages/<file>.rpm/torrent (any host's token):
  `ais.server.rpmtorrents.RpmTorrents` (the app's `rpm_torrents`) makes and caches the
  torrent and says the asker's rank (header X-AIS-Web-Seed-Rank).

Reads: the app (state, checker, chains, swarm, rpm_torrents). Fails with `HttpError`
(4xx/503). Returns answers (`ais.server.answers`).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re

from aiohttp import hdrs

from ais.server.answers import (HOST_HEADER, IMAGE_ID, INDEX, Blob, Deferred, HttpError, Json, authorise, authorise_any,
                                host_by_name)
from ais.server.swarm import SwarmRequestError, parse_request
from ais.stream.format import read_chunk
from ais.stream.torrent import torrent_name

ADDRESS = re.compile(r"(\d{1,3}(?:\.\d{1,3}){3}):(\d{1,5})")
CHAIN_FIELDS = ("image", "listen", "lost", "leave")
SEED_KEY = re.compile(r"[0-9a-f]{32}")


class PeerRoutes:
    """The peer transports' routes; mixed into `ais.server.routes.Routes` (self.app, self.package)."""

    def package_torrent(self, headers, filename: str) -> Blob:
        """The RPM's .torrent (its salted info-hash is the secret of its swarm): any host's token.
        X-AIS-Web-Seed-Rank says how many hosts asked for it before this one (ais.server.rpmtorrents)."""
        snap = self.app.state.current()
        host = authorise_any(snap, headers)
        pkg = self.package(headers, filename)
        try:
            data = self.app.rpm_torrents.torrent(pkg.path, pkg.etag)
        except Exception as err:  # the RPM unreadable or cut, the cache not writable
            raise HttpError(503, f"cannot make the torrent of {filename}: {err}") from err
        rank = self.app.rpm_torrents.rank(filename, host)
        return Blob(data, "application/x-bittorrent", hashlib.sha256(data).hexdigest(),
                    headers={"X-AIS-Web-Seed-Rank": str(rank)})

    def chain(self, host, body: bytes) -> Json | Deferred:
        """Join the image's chain, report a lost upstream, or leave (ais.server.chain); the answer to
        a join waits for the chain's gather window."""
        request = parse_chain_request(body)
        image = request["image"]
        if image not in self.app.state.current().manifest.get("images", {}):
            raise HttpError(404, f"image {image[:12]} is not in the published manifest")
        board = self.app.chains
        if request["leave"]:
            board.leave(image, host.name)
            return Json(200, board.answer(image, host.name))
        at = board.join(image, host.name, request["listen"], request["lost"])
        ready = (lambda: board.ready_at(image)) if request["lost"] is None else (lambda: at)
        return Deferred(ready, lambda: Json(200, board.answer(image, host.name)))

    # ---------------------------------------------------------------- BitTorrent (ais.server.swarm)

    def torrent(self, headers, iid: str) -> Blob:
        """The image's .torrent (its salted info-hash is the swarm's secret): any host's token."""
        snap = self.app.state.current()
        authorise_any(snap, headers)
        path = self._servable(snap, iid)[0].with_suffix(".torrent")
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise HttpError(404, f"image {iid[:12]} has no .torrent (a cache from before BitTorrent): "
                                 "run `ais rebuild` to add it") from None
        except OSError as err:
            raise HttpError(503, f"image {iid[:12]}: cannot read {path.name}: {err.strerror}") from err
        return Blob(data, "application/x-bittorrent", hashlib.sha256(data).hexdigest())

    def swarm_member(self, headers, name: str):
        """Checked before the body is read: (host, the address the request was sent to)."""
        snap = self.app.state.current()
        host = host_by_name(snap, name)
        authorise(host, headers)
        where = headers.get(hdrs.HOST, "")
        if not HOST_HEADER.fullmatch(where):
            raise HttpError(400, "a swarm request needs the Host header the client used to reach this server")
        return host, where

    def swarm(self, member, body: bytes) -> Json:
        """Join (or stay in) an image's swarm: the other members' addresses, the web seed, all done?"""
        host, where = member
        try:
            req = parse_request(body)
        except SwarmRequestError as err:
            raise HttpError(400, str(err)) from err
        self._servable(self.app.state.current(), req.image)
        board = self.app.swarm.join(req.image, host.name, req.listen, req.done)
        return Json(200, {"peers": list(board.peers), "seed": f"{self.app.scheme}://{where}/v1/seed/{board.key}/",
                          "all_done": board.all_done})

    def seed(self, headers, key: str, name: str, index: str) -> Blob:
        """The web seed (BEP 19): chunk index's stored bytes, for whoever holds the swarm's key."""
        iid = self.app.swarm.key_image(key) if SEED_KEY.fullmatch(key) else None
        if iid is None:
            raise HttpError(403, "unknown web-seed key: the key comes from POST /v1/hosts/<name>/swarm")
        path, header = self._servable(self.app.state.current(), iid)
        if not name.startswith(torrent_name(header, "")) or not INDEX.fullmatch(index) \
                or int(index) >= len(header.chunks):
            raise HttpError(404, f"image {iid[:12]}'s torrent has no file {name[:80]}/{index[:10]}")
        try:
            data = read_chunk(path, header, int(index))
        except Exception as err:  # a file replaced or cut between the check and this read
            raise HttpError(503, f"image {iid[:12]}: cannot read chunk {index}: {err}") from err
        return Blob(data, "application/octet-stream", header.chunks[int(index)].sha256,
                    lambda n: self.app.swarm.add_sent(iid, n))

    def _servable(self, snap, iid: str):
        """(path, header) of a published image that passes its check, or 400/404/503."""
        if not IMAGE_ID.fullmatch(iid):
            raise HttpError(400, "an image id is 64 lower-case hex digits")
        if iid not in snap.manifest.get("images", {}):
            raise HttpError(404, f"image {iid[:12]} is not in the published manifest (generation {snap.generation})")
        header, why = self.app.checker.check(snap, iid)
        if header is None:
            raise HttpError(503, why)
        return snap.image_path(iid), header


def parse_chain_request(body: bytes) -> dict:
    """{"image": ID, "listen": "IP:PORT", "lost": "IP:PORT" | null, "leave": bool (optional)}, or a 400
    saying what is wrong."""
    try:
        obj = json.loads(body)
    except (ValueError, RecursionError) as err:
        raise HttpError(400, f"the chain request is not JSON: {str(err)[:100]}") from err
    if not isinstance(obj, dict):
        raise HttpError(400, "the chain request must be a JSON object")
    unknown = sorted(set(obj) - set(CHAIN_FIELDS))
    if unknown:
        raise HttpError(400, f"the chain request has an unknown field {unknown[0][:40]!r} "
                             f"(fields: {', '.join(CHAIN_FIELDS)})")
    image = obj.get("image")
    if not isinstance(image, str) or not IMAGE_ID.fullmatch(image):
        raise HttpError(400, "the chain request's image must be an image id (64 lower-case hex digits)")
    if not _address(obj.get("listen")):
        raise HttpError(400, "the chain request's listen must be \"IPv4:PORT\" (port 1-65535)")
    lost = obj.get("lost")
    if lost is not None and not _address(lost):
        raise HttpError(400, "the chain request's lost must be null or \"IPv4:PORT\" (port 1-65535)")
    leave = obj.get("leave", False)
    if not isinstance(leave, bool):
        raise HttpError(400, "the chain request's leave must be true or false")
    return {"image": image, "listen": obj["listen"], "lost": lost, "leave": leave}


def _address(value) -> bool:
    m = ADDRESS.fullmatch(value) if isinstance(value, str) else None
    if not m or not 1 <= int(m.group(2)) <= 65535:
        return False
    try:
        ipaddress.IPv4Address(m.group(1))
    except ValueError:
        return False
    return True
