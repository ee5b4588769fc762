"""The routes of the control API: what each request answers, as plain values (no HTTP library).

What it does: `route_of(method, target)` maps a request to a route and its
arguments (404/405 otherwise); `Routes(app)` answers each route: `Json`,
`Blob` (bytes with a sha256 ETag), `File` (a path to send) or `Deferred`
(an answer made at a given time: the chain's gather window), raising
`HttpError` with a status and message for every refusal. Tokens: a host's
plan, files and report need `Authorization: Bearer <token>` of its HCD,
compared in constant time; a plan asked for by MAC answers one identical 403,
naming no host, for an unknown MAC and a missing or wrong token. The routes
block (stat, plans, image checks, SQLite), so `ais.server.http` runs them in
its worker pool.

The reboot window (`ais.server.window`, --reboot-window): an authorised plan
request takes a place in it or gets 503 with Retry-After, naming who holds the
places; an "ok" or "failed" report frees the host's place. The window is
touched only under `Routes.window_lock`, one short critical section per
request, and every admission, refusal, release and expired lease is logged.

The chain route (POST /v1/hosts/<name>/chain, the host's token): the body is
checked (`parse_chain_request`), then `ais.server.chain.ChainBoard` (the app's
`chains`) records the join, loss or leave and makes the answer.

The RPMs by BitTorrent (GET /v1/packages/<file>.rpm/torrent, any host's token):
`ais.server.rpmtorrents.RpmTorrents` (the app's `rpm_torrents`) makes and caches the
torrent and says the asker's rank (header X-AIS-Web-Seed-Rank); the package route
counts the RPM bytes it sends there.

Reads: the app (`ais.server.service.Server`): state, checker, history,
plan_for, window, chains, rpm_torrents, config. Fails with `HttpError` (4xx/503). Returns answers.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import unquote

from aiohttp import hdrs

from ais.contracts import InstallReport, decode, to_builtins
from ais.errors import BadInput
from ais.server.boot import boot_file, current, ipxe_script, local_boot_report, local_boot_script
from ais.server.swarm import SwarmRequestError, parse_request
from ais.stream.format import read_chunk
from ais.stream.torrent import torrent_name

log = logging.getLogger("ais.server.window")
boot_log = logging.getLogger("ais.server.boot")

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
MAC = re.compile(r"(?:[0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}|(?:[0-9a-fA-F]{2}-){5}[0-9a-fA-F]{2}")
RPM_FILE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+~^-]{0,250}\.rpm")
IMAGE_ID = re.compile(r"[0-9a-f]{64}")
INDEX = re.compile(r"\d{1,6}")
ADDRESS = re.compile(r"(\d{1,3}(?:\.\d{1,3}){3}):(\d{1,5})")
CHAIN_FIELDS = ("image", "listen", "lost", "leave")
SEED_KEY = re.compile(r"[0-9a-f]{32}")
HOST_HEADER = re.compile(r"[A-Za-z0-9.-]{1,253}(?::\d{1,5})?|\[[0-9A-Fa-f:.]{2,45}\](?::\d{1,5})?")
MAC_REFUSED = ("no plan for this MAC address: it is unknown, or the request lacks the token of the host "
               "that has it (send 'Authorization: Bearer <token>', the token of that host's HCD)")

# POST routes with a body: route -> (the check of the sender, run before the body is read; the answer)
BODY_ROUTES = {"report": ("report_host", "report"), "chain": ("report_host", "chain"),
               "swarm": ("swarm_member", "swarm")}


class HttpError(Exception):
    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


# ------------------------------------------------------------------ answers

@dataclass(frozen=True)
class Json:
    status: int
    obj: dict


@dataclass(frozen=True)
class Blob:
    data: bytes
    ctype: str
    etag: str
    sent: Callable[[int], None] | None = None  # told how many body bytes a GET answer carries
    headers: dict | None = None  # more response headers


@dataclass(frozen=True)
class Deferred:
    """An answer given once the monotonic time reaches `at()` (asked again while it waits: the time
    may come sooner); then() (run in the worker pool) makes it. The event loop waits, no worker
    thread does (the chain's gather window)."""
    at: Callable[[], float]
    then: Callable[[], "Json"]


@dataclass(frozen=True)
class File:
    path: Path
    size: int
    ctype: str
    etag: str
    sent: Callable[[int], None] | None = None  # told how many body bytes a GET answer carries


# ------------------------------------------------------------------ the routes (run in the worker threads)

class Routes:
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

    def plan(self, headers, ident: str) -> Json:
        snap = self.app.state.current()
        if MAC.fullmatch(ident) and ident not in snap.hosts:
            host = snap.macs.get(ident.lower().replace("-", ":"))
            if host is None or not _token_matches(host, headers):
                raise HttpError(403, MAC_REFUSED)  # the same answer, naming no host, whatever the reason
        else:
            host = _host_by_name(snap, ident)
            _authorise(host, headers)
        again = self._enter_window(host.name)
        try:
            plan = self.app.plan_for(snap, host)
        except BaseException:
            if not again:  # no plan, no install: the place goes to the next host
                self._leave_window(host.name, "its plan could not be made")
            raise
        if plan["image"] and plan["image"]["stream"]["transport"] == "chain":
            self.app.chains.expect(plan["image"]["id"], host.name)  # its chain waits for its join
        return Json(200, plan)

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
        host = _host_by_name(snap, name)
        _authorise(host, headers)
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

    def package_torrent(self, headers, filename: str) -> Blob:
        """The RPM's .torrent (its salted info-hash is the secret of its swarm): any host's token.
        X-AIS-Web-Seed-Rank says how many hosts asked for it before this one (ais.server.rpmtorrents)."""
        snap = self.app.state.current()
        host = _authorise_any(snap, headers)
        pkg = self.package(headers, filename)
        try:
            data = self.app.rpm_torrents.torrent(pkg.path, pkg.etag)
        except Exception as err:  # the RPM unreadable or cut, the cache not writable
            raise HttpError(503, f"cannot make the torrent of {filename}: {err}") from err
        rank = self.app.rpm_torrents.rank(filename, host)
        return Blob(data, "application/x-bittorrent", hashlib.sha256(data).hexdigest(),
                    headers={"X-AIS-Web-Seed-Rank": str(rank)})

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

    def ipxe(self, headers, mac: str) -> Blob:
        """The host's iPXE script; the server's address in it is the one the request was sent to."""
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
        text = ipxe_script(env, host, f"http://{where}", target, self.app.config.boot_append)
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
        host = _host_by_name(snap, name)
        _authorise(host, headers)
        return host

    def report(self, host, body: bytes) -> Json:
        report = parse_report(body)
        row = self.app.history.add(host.name, report)
        if report["status"] in ("ok", "failed"):  # the install is over; "rebooting" and "up" come after it
            self._leave_window(host.name, f"its {report['status']} report")
        return Json(201, {"stored": row, "host": host.name})

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
        _authorise_any(snap, headers)
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
        host = _host_by_name(snap, name)
        _authorise(host, headers)
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
        return Json(200, {"peers": list(board.peers), "seed": f"http://{where}/v1/seed/{board.key}/",
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


def _host_by_name(snap, ident: str):
    host = snap.hosts.get(ident)
    if host is not None:
        return host
    if MAC.fullmatch(ident):
        raise HttpError(400, "this resource takes a host name, not a MAC address")
    if ":" in ident:
        raise HttpError(400, f"malformed MAC address {ident[:40]!r} (expected aa:bb:cc:dd:ee:ff)")
    if not NAME.fullmatch(ident):
        raise HttpError(400, f"malformed host name {ident[:40]!r}")
    raise HttpError(404, f"unknown host {ident}: no HCD names it")


def _given_token(headers) -> str | None:
    scheme, _, given = headers.get(hdrs.AUTHORIZATION, "").partition(" ")
    return given.strip() if scheme.lower() == "bearer" and given.strip() else None


def _token_matches(host, headers) -> bool:
    given = _given_token(headers)
    return bool(host.token) and given is not None and hmac.compare_digest(given.encode(), host.token.encode())


def _authorise(host, headers) -> None:
    if not host.token:
        raise HttpError(403, f"host {host.name} has no <token> in its HCD; its plan and files are never served without one")
    if _given_token(headers) is None:
        raise HttpError(403, f"host {host.name}: send 'Authorization: Bearer <token>' (the token of its HCD)")
    if not _token_matches(host, headers):
        raise HttpError(403, f"host {host.name}: wrong token")


def _authorise_any(snap, headers) -> str:
    """The name of the host whose bearer token this is (every host's token is compared: constant time), or 403."""
    given = _given_token(headers)
    if given is None:
        raise HttpError(403, "send 'Authorization: Bearer <token>' (the token of a host of this site)")
    matches = [h.name for h in snap.hosts.values()
               if h.token and hmac.compare_digest(given.encode(), h.token.encode())]
    if not matches:
        raise HttpError(403, "wrong token: it is no host's")
    return matches[0]


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
