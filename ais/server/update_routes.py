"""The agents' routes: the group layout and updates at an agent's start, and its reports.

What it does: `UpdateRoutes`, a part of `ais.server.routes.Routes`, answers
- GET /v1/agents/<name>/init (the host's token): its groups, the members of those
  groups (address, online, groups: from the HCDs and the agents' own reports), every
  signed update of its groups, and the public update key;
- POST /v1/agents/<name>/status (the host's token): {address, online, results: [{seq,
  state, message, at}], gone: [peers that did not answer], stats}: stored in the
  update database (`ais.updates.store`), read by `ais hosts` and `ais update status`.
The server is never on the data path of an update: packages move between agents.

Reads: the app (state, updates, update_key). Fails with `HttpError` (400 malformed
status, 403 token, 404 unknown host). Returns `Json` answers.
"""

from __future__ import annotations

import json
import logging

from ais.server.answers import HttpError, Json, authorise, host_by_name
from ais.updates.records import HOST_NAME
from ais.updates.changes import host_groups
from ais.updates.records import as_dict
from ais.updates.store import STATES

log = logging.getLogger("ais.server")
ADDRESS_MAX = 64


class UpdateRoutes:
    """Mixed into `ais.server.routes.Routes` (self.app)."""

    def agent_init(self, headers, name: str) -> Json:
        snap = self.app.state.current()
        host = host_by_name(snap, name)
        authorise(host, headers)
        agents = self.app.updates.agents()
        groups = host_groups(host)
        members = {h.name: {"groups": list(host_groups(h)), "address": agents.get(h.name, {}).get("address"),
                            "online": agents.get(h.name, {}).get("online", False)}
                   for h in snap.hosts.values() if set(host_groups(h)) & set(groups)}
        updates = [as_dict(u) for u in self.app.updates.updates(set(groups))]
        return Json(200, {"host": host.name, "groups": list(groups), "members": members, "updates": updates,
                          "update_key": self.app.update_key})

    def agent_member(self, headers, name: str):
        """Checked before the body is read: the host, by its token."""
        host = host_by_name(self.app.state.current(), name)
        authorise(host, headers)
        return host

    def agent_status(self, host, body: bytes) -> Json:
        status = parse_status(body)
        store = self.app.updates
        was = store.agents().get(host.name, {})
        store.set_agent(host.name, status["address"], status["online"])
        if was.get("online") != status["online"] or was.get("address") != status["address"]:
            log.info("agent %s %s at %s", host.name, "online" if status["online"] else "offline", status["address"])
        if status["results"]:
            store.record(host.name, status["results"])
            log.info("agent %s: %s", host.name, ", ".join(f"update {r['seq']} {r['state']}"
                                                          for r in status["results"][:20]))
        for peer in status["gone"]:
            if peer in self.app.state.current().hosts and peer != host.name:
                store.set_agent(peer, None, False)
                log.info("agent %s says peer %s is away", host.name, peer)
        return Json(200, {"ok": True})


def parse_status(body: bytes) -> dict:
    """An agent's status body, checked field by field (400 says which)."""
    try:
        doc = json.loads(body)
    except ValueError as err:
        raise HttpError(400, f"status is not JSON: {err}") from err
    if not isinstance(doc, dict):
        raise HttpError(400, "status must be a JSON object")
    address, online = doc.get("address"), doc.get("online")
    if not isinstance(address, str) or not 0 < len(address) <= ADDRESS_MAX or not isinstance(online, bool):
        raise HttpError(400, "status needs address (ADDRESS:PORT) and online (true or false)")
    results, gone = doc.get("results", []), doc.get("gone", [])
    if not isinstance(results, list) or not isinstance(gone, list) or len(results) > 10000 or len(gone) > 10000:
        raise HttpError(400, "results and gone must be lists")
    for r in results:
        if not (isinstance(r, dict) and _is_int(r.get("seq")) and r["seq"] >= 1 and r.get("state") in STATES
                and isinstance(r.get("message", ""), str) and isinstance(r.get("at", 0), (int, float))
                and not isinstance(r.get("at", 0), bool)):
            raise HttpError(400, f"a result must be {{seq: int >= 1, state: one of {', '.join(STATES)}, message, at}}")
    if not all(isinstance(p, str) and HOST_NAME.fullmatch(p) for p in gone):
        raise HttpError(400, "gone must list host names")
    return {"address": address, "online": online, "results": results, "gone": gone}


def _is_int(value) -> bool:
    """An int that is not a bool (JSON true would otherwise pass as 1)."""
    return isinstance(value, int) and not isinstance(value, bool)
