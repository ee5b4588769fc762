"""The routes of the control API: what each request answers, as plain values (no HTTP library).

What it does: `route_of(method, target)` maps a request to a route and its
arguments (404/405 otherwise); `Routes(app)` answers each route with the
answer types of `ais.server.answers` (`Json`, `Blob`, `File`, `Deferred`),
raising `HttpError` with a status and message for every refusal; the peer
transports' routes (chain, torrents, swarms, web seed) are its part
`ais.server.peer_routes.PeerRoutes`. Tokens: a host's
plan, files and report need `Authorization: Bearer <token>` of its HCD,
compared in constant time; a plan asked for by MAC answers one identical 403,
naming no host, for an unknown MAC and a missing or wrong token. The routes
block (stat, plans, image checks, SQLite), so `ais.server.http` runs them in
its worker pool.

The reboot window (`ais.server.window`, --reboot-window): an authorised plan
request takes a place in it or gets 503 with Retry-After, naming who holds the
places; an "ok" or "failed" report frees the host's place ("progress" reports
leave it alone). The window is
touched only under `Routes.window_lock`, one short critical section per
request, and every admission, refusal, release and expired lease is logged.

The live board (`ais.server.live`, for the console): an answered plan starts
a host's entry; a "progress" report (the phase starting, bytes or packages so
far) updates it and nothing else: it is answered 202 and not stored in the
history; an "ok" or "failed" report is stored and finishes the entry.

Signed plans (ais.sitekey): a plan request may carry `X-AIS-Nonce: <32 hex>`
(400 when malformed); when the cache has the site key, the answer carries
`X-AIS-Signature`, the site key's ed25519 signature over b"ais-plan-v1\n" +
nonce + b"\n" + the exact body bytes, so a client that pins the key refuses
a changed, forged or replayed plan.

The package route counts the RPM bytes it sends (`rpm_torrents.add_sent`: the
RPMs by BitTorrent use it as their web seed).

Reads: the app (`ais.server.service.Server`): state, checker, history,
plan_for, window, chains, live, rpm_torrents, config. Fails with `HttpError` (4xx/503). Returns answers.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import time
from urllib.parse import unquote

from aiohttp import hdrs

from ais import sitekey
from ais.contracts import InstallReport, decode, to_builtins
from ais.errors import BadInput
from ais.server.answers import (HOST_HEADER, IMAGE_ID, INDEX, MAC, Blob, File, HttpError, Json, authorise,
                                host_by_name, json_body, token_matches)
from ais.server.boot import boot_file, current, ipxe_script, local_boot_report, local_boot_script
from ais.server.peer_routes import PeerRoutes
from ais.server.update_routes import UpdateRoutes

log = logging.getLogger("ais.server.window")
boot_log = logging.getLogger("ais.server.boot")

RPM_FILE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+~^-]{0,250}\.rpm")
MAC_REFUSED = ("no plan for this MAC address: it is unknown, or the request lacks the token of the host "
               "that has it (send 'Authorization: Bearer <token>', the token of that host's HCD)")

# POST routes with a body: route -> (the check of the sender, run before the body is read; the answer)
BODY_ROUTES = {"report": ("report_host", "report"), "chain": ("report_host", "chain"),
               "swarm": ("swarm_member", "swarm"), "agent_status": ("agent_member", "agent_status")}


# ------------------------------------------------------------------ the routes (run in the worker threads)

class Routes(PeerRoutes, UpdateRoutes):
    """The API's logic: blocking (stat, plans, image checks, SQLite), so it runs in the worker pool."""

    def __init__(self, app):
        self.app = app
        self.window_lock = threading.Lock()  # the window is read and changed under it, briefly
        self.local_boot_lock = threading.Lock()
        # host -> id of the firmware report a local boot answered; reports from before this
        # server started count as answered (ais.server.boot.local_boot_report)
        self.local_boots: dict[str, int] = {}
        self.started_after = app.history.last_id()

    def health(self, headers) -> Json:
        snap = self.app.state.current()
        with self.window_lock:
            _log_expired(self.app.window, self.app.window.expire(time.monotonic()))
            window = {"size": self.app.window.size, "in_progress": list(self.app.window.holders())}
        return Json(200, {"status": "ok", "generation": snap.generation, "hosts": len(snap.hosts),
                          "images": len(snap.manifest.get("images", {})), "window": window})

    def plan(self, headers, ident: str) -> Json | Blob:
        nonce = headers.get(sitekey.NONCE_HEADER)
        if nonce is not None and not sitekey.NONCE.fullmatch(nonce):
            raise HttpError(400, f"{sitekey.NONCE_HEADER} must be 32 lower-case hex digits, not {nonce[:40]!r}")
        snap = self.app.state.current()
        if MAC.fullmatch(ident) and ident not in snap.hosts:
            host = snap.macs.get(ident.lower().replace("-", ":"))
            if host is None or not token_matches(host, headers):
                raise HttpError(403, MAC_REFUSED)  # the same answer, naming no host, whatever the reason
        else:
            host = host_by_name(snap, ident)
            authorise(host, headers)
        again = self._enter_window(host.name)
        try:
            plan = self.app.plan_for(snap, host)
        except BaseException:
            if not again:  # no plan, no install: the place goes to the next host
                self._leave_window(host.name, "its plan could not be made")
            raise
        if plan["image"] and plan["image"]["stream"]["transport"] == "chain":
            self.app.chains.expect(plan["image"]["id"], host.name)  # its chain waits for its join
        self.app.live.planned(host.name, plan["scd"], (plan["image"] or {}).get("id"), time.time())
        return signed_plan(plan, snap.site_key, nonce)

    def _enter_window(self, name: str) -> bool:
        """Take or keep the host's place in the reboot window (True: it held one already), or 503."""
        window, base = self.app.window, self.app.config.window_retry
        with self.window_lock:
            admission = window.admit(name, time.monotonic())
            _log_expired(window, admission.expired)
            if not admission.admitted:
                wait = window.retry_after(name, base)
                why = (f"reboot window full: {_taken(window, admission.holders)} "
                       f"({_names(admission.holders)}); retry in {wait} s")
                log.info("reboot window: %s refused: %s", name, why)
                raise HttpError(503, why, {"Retry-After": str(wait)})
            log.info("reboot window: %s %s (%s: %s)", name, "asked again and keeps its place" if admission.again
                     else "admitted", _taken(window, admission.holders), _names(admission.holders))
            return admission.again

    def _leave_window(self, name: str, why: str) -> None:
        with self.window_lock:
            if self.app.window.release(name):
                holders = self.app.window.holders()
                log.info("reboot window: %s released by %s (%s)", name, why, _taken(self.app.window, holders))

    def file(self, headers, name: str, index: str) -> Blob:
        snap = self.app.state.current()
        host = host_by_name(snap, name)
        authorise(host, headers)
        if not INDEX.fullmatch(index):
            raise HttpError(400, f"file index must be a number, not {index[:40]!r}")
        n = int(index)
        if n >= len(host.files):
            raise HttpError(404, f"host {host.name} has {len(host.files)} files; there is no file {n}")
        content = host.files[n].content
        return Blob(content, "application/octet-stream", hashlib.sha256(content).hexdigest())

    def package(self, headers, filename: str) -> File:
        if not RPM_FILE.fullmatch(filename) or ".." in filename:
            raise HttpError(400, f"not an RPM file name: {filename[:80]!r}")
        snap = self.app.state.current()
        pkg = snap.files.get(filename)
        if pkg is None:
            raise HttpError(404, f"package {filename} is not in the repository")
        path = snap.repo_dir / pkg.filename
        try:
            size = os.stat(path).st_size
        except OSError as err:
            raise HttpError(404, f"{path.name} is listed but missing on the server: {err.strerror}") from err
        return File(path, size, "application/x-rpm", pkg.digest, self.app.rpm_torrents.add_sent)

    def header(self, headers, iid: str) -> Blob:
        if not IMAGE_ID.fullmatch(iid):
            raise HttpError(400, "an image id is 64 lower-case hex digits")
        snap = self.app.state.current()
        if iid not in snap.manifest.get("images", {}):
            raise HttpError(404, f"image {iid[:12]} is not in the published manifest (generation {snap.generation})")
        header, why = self.app.checker.check(snap, iid)
        if header is None:
            raise HttpError(503, why)
        return Blob(header.to_json().encode(), "application/json", header.sha256())

    def boot(self, headers, name: str) -> File:
        if name not in ("vmlinuz", "initrd"):
            raise HttpError(404, f"no such boot file {name[:40]!r} (vmlinuz, initrd)")
        try:
            path, digest = boot_file(self.app.config.cache, name)
            return File(path, path.stat().st_size, "application/octet-stream", digest)
        except (LookupError, FileNotFoundError) as err:
            raise HttpError(404, str(err)) from err

    def ipxe(self, headers, mac: str, scheme: str = "http") -> Blob:
        """The host's iPXE script; the server's address in it is the one the request was sent to: the
        boot files from that listener (`scheme`: the boot listener's is plain http), the API at the
        same address on the API's port and scheme."""
        if not MAC.fullmatch(mac):
            raise HttpError(400, f"malformed MAC address {mac[:40]!r} (expected aa:bb:cc:dd:ee:ff)")
        target = self.app.config.boot_target
        if not target:
            raise HttpError(404, "this server hands out no boot scripts: start it with --boot-target DEV")
        host = self.app.state.current().macs.get(mac.lower().replace("-", ":"))
        if host is None:
            raise HttpError(404, f"no HCD has the MAC address {mac}")
        local = self._local_boot(host)
        if local is not None:
            return Blob(local.encode(), "text/plain", hashlib.sha256(local.encode()).hexdigest())
        where = headers.get(hdrs.HOST, "")
        if not HOST_HEADER.fullmatch(where):
            raise HttpError(400, "a boot script needs the Host header the client used to reach this server")
        try:
            env = current(self.app.config.cache)
        except LookupError as err:
            raise HttpError(404, str(err)) from err
        text = ipxe_script(env, host, f"{scheme}://{where}", self.app.api_url(where), target,
                           self.app.config.boot_append)
        return Blob(text.encode(), "text/plain", hashlib.sha256(text.encode()).hexdigest())

    def _local_boot(self, host) -> str | None:
        """The local-boot script when the host's newest report is a firmware reboot not answered yet
        (ais.server.boot.local_boot_report); it is answered once, then the host reinstalls again."""
        with self.local_boot_lock:
            report = local_boot_report(self.app.history.for_host(host.name, limit=1),
                                       self.local_boots.get(host.name, self.started_after))
            if report is None:
                return None
            self.local_boots[host.name] = report["id"]
        boot_log.info("boot: %s gets the local disk (sanboot drive 0x80): its newest report #%d is rebooting "
                      "through the firmware after a finished reinstall", host.name, report["id"])
        return local_boot_script(host, report)

    def report_host(self, headers, name: str):
        """Checked before the body is read: a stranger's report is refused unread."""
        snap = self.app.state.current()
        host = host_by_name(snap, name)
        authorise(host, headers)
        return host

    def report(self, host, body: bytes) -> Json:
        report = parse_report(body)
        if report["status"] == "progress":  # the live board only: not stored, the window untouched
            self.app.live.progress(host.name, report["phase"], report["done"], report["total"], time.time())
            return Json(202, {"host": host.name})
        row = self.app.history.add(host.name, report)
        if report["status"] in ("ok", "failed"):  # the install is over; "rebooting" and "up" come after it
            self._leave_window(host.name, f"its {report['status']} report")
            self.app.live.finished(host.name, report["status"], report["phase"], report["message"], time.time())
        return Json(201, {"stored": row, "host": host.name})

def signed_plan(plan: dict, key, nonce: str | None) -> Json | Blob:
    """The plan as JSON; with the site key and the client's nonce, the exact body bytes and their
    signature (X-AIS-Signature over the nonce and the body; the key and the nonce said beside it)."""
    if key is None or nonce is None:
        return Json(200, plan)
    body = json_body(plan)
    return Blob(body, "application/json", hashlib.sha256(body).hexdigest(),
                headers={sitekey.SIGNATURE_HEADER: sitekey.sign_plan(key, nonce, body),
                         sitekey.SIGNER_HEADER: sitekey.public_hex(key), sitekey.NONCE_HEADER: nonce})


def _taken(window, holders) -> str:
    return f"{len(holders)} of {window.size or 'unlimited'} hosts reinstalling"


def _names(holders, shown: int = 10) -> str:
    more = f", and {len(holders) - shown} more" if len(holders) > shown else ""
    return ", ".join(holders[:shown]) + more if holders else "none"


def _log_expired(window, expired) -> None:
    for name in expired:
        log.warning("reboot window: %s's lease of %g s ran out before its ok or failed report: its place is free",
                    name, window.lease)


def parse_report(body: bytes) -> dict:
    """The report (schema: ais.contracts.InstallReport) as plain data, or a 400 saying
    what is wrong with it and where (types, bounds, unknown fields, lone surrogates)."""
    try:
        return to_builtins(decode(body, InstallReport, "report", BadInput))
    except BadInput as err:
        raise HttpError(400, str(err)[:500]) from err


def match(parts: list[str]) -> tuple[str | None, tuple]:
    """(route name, arguments) for the path segments after /v1."""
    if parts == ["health"]:
        return "health", ()
    if len(parts) == 3 and parts[0] == "hosts" and parts[2] == "plan":
        return "plan", (parts[1],)
    if len(parts) == 4 and parts[0] == "hosts" and parts[2] == "files":
        return "file", (parts[1], parts[3])
    if len(parts) == 3 and parts[0] == "hosts" and parts[2] == "report":
        return "report", (parts[1],)
    if len(parts) == 3 and parts[0] == "hosts" and parts[2] == "chain":
        return "chain", (parts[1],)
    if len(parts) == 2 and parts[0] == "packages":
        return "package", (parts[1],)
    if len(parts) == 3 and parts[0] == "packages" and parts[2] == "torrent":
        return "package_torrent", (parts[1],)
    if len(parts) == 3 and parts[0] == "images" and parts[2] == "header":
        return "header", (parts[1],)
    if len(parts) == 3 and parts[0] == "images" and parts[2] == "torrent":
        return "torrent", (parts[1],)
    if len(parts) == 3 and parts[0] == "hosts" and parts[2] == "swarm":
        return "swarm", (parts[1],)
    if len(parts) == 3 and parts[0] == "agents" and parts[2] in ("init", "status"):
        return f"agent_{parts[2]}", (parts[1],)
    if len(parts) == 4 and parts[0] == "seed":
        return "seed", tuple(parts[1:])
    if len(parts) == 2 and parts[0] == "boot":
        return "boot", (parts[1],)
    if len(parts) == 3 and parts[0] == "boot" and parts[1] == "ipxe":
        return "ipxe", (parts[2],)
    return None, ()


def route_of(method: str, target: str) -> tuple[str, tuple]:
    raw = target.split("?", 1)[0]
    if not raw.startswith("/"):
        raise HttpError(400, "request target must be an absolute path")
    parts = [unquote(p) for p in raw.split("/")[1:]]
    if any("/" in p or "\x00" in p for p in parts):
        raise HttpError(400, "encoded '/' or NUL in the path")
    if parts[:1] != ["v1"]:
        raise HttpError(404, f"no such resource {raw[:100]}; the API lives under /v1/")
    route, args = match(parts[1:])
    if route is None:
        raise HttpError(404, f"no such resource {raw[:100]}")
    allowed = ("POST",) if route in BODY_ROUTES else ("GET", "HEAD")
    if method not in allowed:
        raise HttpError(405, f"{method} is not allowed on {raw[:100]} (use {' or '.join(allowed)})",
                        {"Allow": ", ".join(allowed)})
    return route, args
