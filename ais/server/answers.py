"""What a route answers, and who may ask: the answer types and the token checks of the control API.

What it does: `Json`, `Blob` (bytes with a sha256 ETag), `File` (a path to send) and
`Deferred` (an answer made once its time comes: the chain's gather window) are what the
routes (`ais.server.routes`, `ais.server.peer_routes`) return; `HttpError` is every refusal,
with a status and a message. `host_by_name` finds a host (400 for a malformed name or a MAC
where a name belongs, 404 for an unknown one); `authorise` wants the bearer token of that
host's HCD, `authorise_any` the token of any host of the site (every token compared, in
constant time).

Reads: request headers and the snapshot's hosts. Fails with `HttpError`. Returns answers
and host names.
"""

from __future__ import annotations

import hmac
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from aiohttp import hdrs

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
MAC = re.compile(r"(?:[0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}|(?:[0-9a-fA-F]{2}-){5}[0-9a-fA-F]{2}")
IMAGE_ID = re.compile(r"[0-9a-f]{64}")
INDEX = re.compile(r"\d{1,6}")
HOST_HEADER = re.compile(r"[A-Za-z0-9.-]{1,253}(?::\d{1,5})?|\[[0-9A-Fa-f:.]{2,45}\](?::\d{1,5})?")


class HttpError(Exception):
    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


# ------------------------------------------------------------------ answers

def json_body(obj: dict) -> bytes:
    """The bytes of a JSON answer: keys sorted, one line (as `Json` answers are sent)."""
    return json.dumps(obj, sort_keys=True).encode() + b"\n"


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
class Page:
    """A whole answer with its status: the console's HTML pages and redirects (no Range)."""
    status: int
    data: bytes
    ctype: str
    headers: dict | None = None


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


# ------------------------------------------------------------------ who may ask

def host_by_name(snap, ident: str):
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


def given_token(headers) -> str | None:
    scheme, _, given = headers.get(hdrs.AUTHORIZATION, "").partition(" ")
    return given.strip() if scheme.lower() == "bearer" and given.strip() else None


def token_matches(host, headers) -> bool:
    given = given_token(headers)
    return bool(host.token) and given is not None and hmac.compare_digest(given.encode(), host.token.encode())


def authorise(host, headers) -> None:
    if not host.token:
        raise HttpError(403, f"host {host.name} has no <token> in its HCD; its plan and files are never served without one")
    if given_token(headers) is None:
        raise HttpError(403, f"host {host.name}: send 'Authorization: Bearer <token>' (the token of its HCD)")
    if not token_matches(host, headers):
        raise HttpError(403, f"host {host.name}: wrong token")


def authorise_any(snap, headers) -> str:
    """The name of the host whose bearer token this is (every host's token is compared: constant time), or 403."""
    given = given_token(headers)
    if given is None:
        raise HttpError(403, "send 'Authorization: Bearer <token>' (the token of a host of this site)")
    matches = [h.name for h in snap.hosts.values()
               if h.token and hmac.compare_digest(given.encode(), h.token.encode())]
    if not matches:
        raise HttpError(403, "wrong token: it is no host's")
    return matches[0]
