"""Who the agent talks to, and how: the group layout, random peers, the urgent tree, HTTP calls.

What it does: `Members(layout, me)` holds the group layout the server gave (each host's
address, groups, online or not; a layout kept from an earlier start while the server is
down is `stale`: every member with an address is tried) plus what this agent saw itself (a peer that did not
answer is marked away until it is heard from again: Clumpt's group update, so that
nobody waits for it). `random_peers(group, k)` picks k online peers of a group;
`tree_children(tree, me)` the children of this host in an urgent update's
distribution tree (a binary tree over the list the submitter chose, an away child
replaced by its own children). `Wire` is the HTTP side (aiohttp's client): the
server's init and status requests (over TLS checked by the site CA when it is given: the server
must then be https://), a peer's notify and sync, a package download.

Reads: the layout dict ({"members": {host: {"address", "online", "groups"}}}).
Fails with `PeerUnreachable` (a peer or the server did not answer, or answered an
error). Returns host names, addresses, JSON answers and bytes.
"""

from __future__ import annotations

import random
from pathlib import Path

import aiohttp

from ais.errors import WorldError
from ais.siteca import client_context

MAX_PACKAGE = 1 << 30


class PeerUnreachable(WorldError):
    """A peer or the server did not answer, or answered with an error."""


class Members:
    def __init__(self, layout: dict, me: str):
        self.me = me
        self.layout = layout
        self.away: set[str] = set()
        self.stale = False  # a layout kept from an earlier start (the server is down): its online flags are old

    def address(self, host: str) -> str | None:
        return (self.layout.get("members", {}).get(host) or {}).get("address")

    def of_group(self, group: str) -> list[str]:
        members = self.layout.get("members", {})
        return sorted(h for h, m in members.items() if h != self.me and group in m.get("groups", ()))

    def online(self, group: str) -> list[str]:
        members = self.layout.get("members", {})
        return [h for h in self.of_group(group)
                if members[h].get("address") and (members[h].get("online", True) or self.stale)
                and h not in self.away]

    def random_peers(self, group: str, k: int, exclude=()) -> list[str]:
        pool = [h for h in self.online(group) if h not in exclude]
        return random.sample(pool, min(k, len(pool)))

    def gone(self, host: str) -> None:
        self.away.add(host)

    def back(self, host: str) -> None:
        self.away.discard(host)


def tree_children(tree: list[str], me: str) -> list[str]:
    """My children in a binary tree laid over `tree` (index i -> 2i+1, 2i+2)."""
    if me not in tree:
        return []
    i = tree.index(me)
    return [tree[c] for c in (2 * i + 1, 2 * i + 2) if c < len(tree)]


class Wire:
    """HTTP to the server and to peers (one aiohttp session)."""

    def __init__(self, server: str, host: str, token: str, timeout: float = 5.0, site_ca: Path | None = None):
        self.server = server.rstrip("/")
        # an https:// server must show a certificate the site CA signed (ais.siteca); peers speak plain HTTP
        self.tls = client_context(site_ca) if site_ca else None
        self.host = host
        self.auth = {"Authorization": f"Bearer {token}"}
        self.timeout = aiohttp.ClientTimeout(total=timeout, connect=min(timeout, 2.0))
        self.session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        connector = aiohttp.TCPConnector(limit=32, ssl=self.tls or True)
        self.session = aiohttp.ClientSession(timeout=self.timeout, connector=connector)

    async def close(self) -> None:
        if self.session:
            await self.session.close()

    async def _json(self, method: str, url: str, **kw) -> dict:
        try:
            async with self.session.request(method, url, **kw) as resp:
                body = await resp.json(content_type=None)
                if resp.status >= 400:
                    raise PeerUnreachable(f"{url}: {resp.status} {(body or {}).get('error', '')}"[:300])
                return body
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as err:
            raise PeerUnreachable(f"{url}: {err or type(err).__name__}") from err

    async def init(self) -> dict:
        return await self._json("GET", f"{self.server}/v1/agents/{self.host}/init", headers=self.auth)

    async def status(self, body: dict) -> dict:
        return await self._json("POST", f"{self.server}/v1/agents/{self.host}/status", headers=self.auth, json=body)

    async def notify(self, address: str, body: dict) -> dict:
        return await self._json("POST", f"http://{address}/v1/agent/notify", json=body)

    async def sync(self, address: str, groups: list[str], have: list[int]) -> dict:
        return await self._json("POST", f"http://{address}/v1/agent/sync", json={"groups": groups, "have": have})

    async def package(self, url: str, size: int) -> bytes:
        """An RPM's bytes from a peer or the server (at most `size` bytes read)."""
        try:
            async with self.session.get(url) as resp:
                if resp.status != 200:
                    raise PeerUnreachable(f"{url}: {resp.status}")
                data = await resp.content.read(min(size, MAX_PACKAGE) + 1)
                return data
        except (aiohttp.ClientError, OSError, TimeoutError) as err:
            raise PeerUnreachable(f"{url}: {err or type(err).__name__}") from err

    def package_urls(self, peers: list[str], members: Members, file: str) -> list[tuple[str, str]]:
        """(who, url) to try for an RPM: the given peers in order, then the server."""
        urls = [(p, f"http://{members.address(p)}/v1/agent/packages/{file}") for p in peers if members.address(p)]
        return urls + [("server", f"{self.server}/v1/packages/{file}")]
