"""The agent's HTTP side: what peers send it, and what it answers (aiohttp's web server).

What it does: `PeerApi`, a part of `ais.agent.service.Agent`, serves
  POST /v1/agent/notify   {"updates": [signed...], "from": host, "tree": [hosts] | null}
  POST /v1/agent/sync     {"groups": [...], "have": [seqs]} -> the updates the asker lacks
  GET  /v1/agent/packages/<file>.rpm   an RPM this host installed (its local repository)
  GET  /v1/agent/stats    counters and the peers it knows, for the benchmark and tests
and keeps an update only when `_accept` finds it signed by the pinned update key and for a
group this host is in; a notice with any other update is refused whole (403), nothing kept.
These routes are open to the network on purpose: what they take is checked by its signature,
and what they give (update metadata, the site's RPMs) is public (docs/updates.md).

Reads: the Agent's db, repo, members, groups, key, stats, wake. Fails: answers 400/403/404.
Returns aiohttp responses.
"""

from __future__ import annotations

import logging

from aiohttp import web

from ais.updates.records import Update, UpdateRefused, as_dict, parse_update
from ais.updates.signing import verify

log = logging.getLogger("ais.agent")


class PeerApi:
    """Mixed into `ais.agent.service.Agent`."""

    def _app(self) -> web.Application:
        app = web.Application(client_max_size=4 << 20)
        app.add_routes([web.post("/v1/agent/notify", self._on_notify), web.post("/v1/agent/sync", self._on_sync),
                        web.get("/v1/agent/packages/{file}", self._on_package), web.get("/v1/agent/stats", self._on_stats)])
        return app

    def _accept(self, docs: list, heard_from: str) -> list[Update]:
        """Check updates, keep the good ones (a sync's or the server's answer); returns the new ones."""
        good, _ = self._check(docs, heard_from)
        return self._keep(good, heard_from)

    def _check(self, docs: list, heard_from: str) -> tuple[list[Update], list[str]]:
        """(the updates signed by the pinned key and for a group of this host, why the others were refused)."""
        good, refused = [], []
        for doc in docs:
            try:
                update = verify(parse_update(doc), self.key or "")
                if update.group not in self.groups:
                    raise UpdateRefused(f"update {update.seq} is for group {update.group}; this host is in "
                                        f"{', '.join(self.groups)}")
                good.append(update)
            except (UpdateRefused, ValueError) as err:
                refused.append(str(err)[:300])
        for why in refused:
            self.stats["refused_updates"] += 1
            log.warning("refused an update from %s: %s", heard_from, why)
        return good, refused

    def _keep(self, good: list[Update], heard_from: str) -> list[Update]:
        new = self.db.learn(good, heard_from)
        for u in new:
            log.info("learned update %d (group %s%s) from %s", u.seq, u.group, ", urgent" if u.urgent else "",
                     heard_from)
        if new:
            self.wake.set()
        return new

    async def _on_notify(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            docs, sender, tree = body["updates"], str(body.get("from", "?"))[:64], body.get("tree")
            if not isinstance(docs, list) or not (tree is None or isinstance(tree, list)):
                raise ValueError("updates must be a list, tree a list or null")
        except (ValueError, KeyError, TypeError) as err:
            return web.json_response({"error": f"bad notice: {err}"}, status=400)
        self.members.back(sender)
        good, refused = self._check(docs, sender)
        if refused:  # one forged update taints the notice: nothing of it is kept
            return web.json_response({"error": "refused: " + "; ".join(refused)}, status=403)
        new = self._keep(good, sender)
        urgent = [u for u in new if u.urgent]
        if urgent and tree:
            self._in_background(self._forward_urgent(urgent, [str(h) for h in tree]))
        return web.json_response({"new": [u.seq for u in new]}, status=202)

    async def _on_sync(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            groups, have = set(body["groups"]), {int(s) for s in body["have"]}
        except (ValueError, KeyError, TypeError) as err:
            return web.json_response({"error": f"bad sync request: {err}"}, status=400)
        docs = [as_dict(u) for u in self.db.known(groups) if u.seq not in have]
        return web.json_response({"updates": docs})

    async def _on_package(self, request: web.Request) -> web.StreamResponse:
        path = self.repo.file(request.match_info["file"])
        if path is None:
            return web.json_response({"error": "not held here"}, status=404)
        self.stats["bytes_to_peers"] += path.stat().st_size
        return web.FileResponse(path)

    async def _on_stats(self, _request: web.Request) -> web.Response:
        return web.json_response({**self.stats, "applied": sorted(self.db.applied_seqs()),
                                  "known": sorted(self.db.known_seqs()), "idle": self.idle.idle(),
                                  "peers": {h: self.members.address(h) for h in self.members.layout.get("members", {})
                                            if h != self.cfg.host}})
