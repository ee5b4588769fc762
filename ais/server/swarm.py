"""Who shares which image by BitTorrent: the server's board of swarms (in memory, thread-safe).

What it does: `SwarmBoard.join(image, host, listen, done)` records that host (a name of the
site, already authorised by its token) takes part in image's swarm, listening for peers at
listen ("IP:PORT"), done or not, and answers a `Membership`: the listen addresses of the
other members (at most `max_peers`, seeds first, the rest in random order so that a crowd
does not all dial the same few), the swarm's web-seed key, and whether every member is done.
A member stays `lease` seconds after its last join; a client joins again every few seconds
while it downloads or seeds, so one that died falls off the board within a lease. Each
image's swarm has one web-seed key, a random secret made when the swarm is first joined and
kept for the server's life: `key_image(key)` says whose it is (`GET /v1/seed/<key>/...`,
ais.server.routes). `parse_request(body)` checks a join request (bad: `SwarmRequestError`
with the reason, which the route answers as 400). `add_sent(image, n)` counts the web
seed's bytes; `stats()` reports them.

Reads: nothing (the clock: `time.monotonic`, or what the caller passes). Fails with
`SwarmRequestError` (a `BadInput`) on a malformed request. Returns `Membership`, dicts.
"""

from __future__ import annotations

import ipaddress
import json
import random
import re
import secrets
import threading
import time
from dataclasses import dataclass, field

from ais.errors import BadInput

IMAGE_ID = re.compile(r"[0-9a-f]{64}")
LISTEN = re.compile(r"(\d{1,3}(?:\.\d{1,3}){3}):(\d{1,5})")
MAX_REQUEST_BYTES = 4096
DEFAULT_LEASE = 30.0  # seconds a member stays without joining again
DEFAULT_MAX_PEERS = 30  # addresses one answer names


class SwarmRequestError(BadInput):
    """A join request that is not {"image": ID, "listen": "IP:PORT", "done": bool}."""


@dataclass(frozen=True)
class JoinRequest:
    image: str
    listen: str
    done: bool


@dataclass(frozen=True)
class Membership:
    peers: tuple[str, ...]
    key: str
    all_done: bool


@dataclass
class _Member:
    listen: str
    done: bool
    expires: float


@dataclass
class _Swarm:
    key: str
    members: dict[str, _Member] = field(default_factory=dict)  # by host name
    sent_bytes: int = 0


def parse_request(body: bytes) -> JoinRequest:
    """The join request in body, checked: an image id, a unicast IPv4 listen address, a done flag."""
    if len(body) > MAX_REQUEST_BYTES:
        raise SwarmRequestError(f"a swarm request is at most {MAX_REQUEST_BYTES} bytes, not {len(body)}")
    try:
        obj = json.loads(body)
    except (ValueError, RecursionError) as err:
        raise SwarmRequestError(f"a swarm request is a JSON object: {err}") from None
    if not isinstance(obj, dict) or set(obj) != {"image", "listen", "done"}:
        raise SwarmRequestError('a swarm request is {"image": ID, "listen": "IP:PORT", "done": true|false}')
    image, listen, done = obj["image"], obj["listen"], obj["done"]
    if not isinstance(image, str) or not IMAGE_ID.fullmatch(image):
        raise SwarmRequestError("image must be an image id: 64 lower-case hex digits")
    if not isinstance(done, bool):
        raise SwarmRequestError("done must be true or false")
    return JoinRequest(image, check_listen(listen), done)


def check_listen(listen: object) -> str:
    """listen as "IP:PORT" (canonical), a unicast IPv4 address other peers can dial, or SwarmRequestError."""
    m = LISTEN.fullmatch(listen) if isinstance(listen, str) else None
    if m is None:
        raise SwarmRequestError("listen must be IPv4-ADDRESS:PORT")
    try:
        ip = ipaddress.IPv4Address(m.group(1))
    except ValueError:
        raise SwarmRequestError(f"listen address {m.group(1)!r} is not an IPv4 address") from None
    port = int(m.group(2))
    if not 1 <= port <= 65535:
        raise SwarmRequestError(f"listen port {port} is not 1..65535")
    if ip.is_unspecified or ip.is_loopback or ip.is_multicast or ip.is_reserved or ip == ipaddress.IPv4Address("255.255.255.255"):
        raise SwarmRequestError(f"listen address {ip} is not one other hosts can reach")
    return f"{ip}:{port}"


class SwarmBoard:
    """The swarms of one `ais serve`; see the module docstring."""

    def __init__(self, *, lease: float = DEFAULT_LEASE, max_peers: int = DEFAULT_MAX_PEERS, clock=time.monotonic,
                 rng: random.Random | None = None):
        self.lease, self.max_peers, self.clock = lease, max_peers, clock
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._swarms: dict[str, _Swarm] = {}
        self._keys: dict[str, str] = {}  # web-seed key -> image id

    def join(self, image: str, host: str, listen: str, done: bool) -> Membership:
        now = self.clock()
        with self._lock:
            swarm = self._swarms.get(image)
            if swarm is None:
                swarm = self._swarms[image] = _Swarm(key=secrets.token_hex(16))
                self._keys[swarm.key] = image
            _expire(swarm, now)
            swarm.members[host] = _Member(listen, done, now + self.lease)
            others = [m for name, m in swarm.members.items() if name != host and m.listen != listen]
            all_done = all(m.done for m in swarm.members.values())
        self._rng.shuffle(others)
        others.sort(key=lambda m: not m.done)  # seeds first (a stable sort keeps the shuffle within each kind)
        return Membership(tuple(m.listen for m in others[: self.max_peers]), swarm.key, all_done)

    def key_image(self, key: str) -> str | None:
        """The image whose web-seed key this is, or None (compared by dictionary lookup of a
        128-bit random key: there is nothing to learn from timing but whether a guess exists)."""
        with self._lock:
            return self._keys.get(key)

    def members(self, image: str) -> dict[str, tuple[str, bool]]:
        """host -> (listen, done) of image's current members."""
        now = self.clock()
        with self._lock:
            swarm = self._swarms.get(image)
            if swarm is None:
                return {}
            _expire(swarm, now)
            return {name: (m.listen, m.done) for name, m in swarm.members.items()}

    def add_sent(self, image: str, n: int) -> None:
        with self._lock:
            swarm = self._swarms.get(image)
            if swarm is not None:
                swarm.sent_bytes += n

    def stats(self) -> dict:
        """{image id: {"web_seed_bytes": n, "members": m}} of every swarm joined since the start."""
        now = self.clock()
        with self._lock:
            for swarm in self._swarms.values():
                _expire(swarm, now)
            return {image: {"web_seed_bytes": s.sent_bytes, "members": len(s.members)}
                    for image, s in self._swarms.items()}


def _expire(swarm: _Swarm, now: float) -> None:
    for name in [n for n, m in swarm.members.items() if m.expires <= now]:
        del swarm.members[name]
