"""The control API over HTTP: routes, checks, Range, one log line per request.

What it does: `make_handler(app)` returns a `BaseHTTPRequestHandler` class for
`ThreadingHTTPServer` answering (docs/server.md has the details):
  GET  /v1/health                          generation, counts
  GET  /v1/hosts/<name-or-mac>/plan        the host's install plan   (token)
  GET  /v1/hosts/<name>/files/<n>          host file n, Range        (token)
  GET  /v1/packages/<file>.rpm             an RPM of the site, Range
  GET  /v1/images/<id>/header              the image header (canonical JSON)
  POST /v1/hosts/<name>/report             store an install report   (token)
HEAD works wherever GET does. "(token)": `Authorization: Bearer <token>` must
carry the token of the host's HCD.

What it reads: the request line, headers and (for reports) a JSON body of at
most `app.max_report_bytes`. What it fails on: nothing escapes a handler; bad
input gets a 4xx with a JSON body {"error": ..., "status": ...} (400 malformed,
403 token, 404 unknown, 405 method, 411/413 body length, 416 range), a bug
gets a 500 and a logged traceback. What it returns: HTTP responses.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import time
from http.server import BaseHTTPRequestHandler
from urllib.parse import unquote, urlsplit

from ais.server.ranges import RangeNotSatisfiable, byte_range

log = logging.getLogger("ais.server.http")

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
MAC = re.compile(r"(?:[0-9a-fA-F]{2}[:-]){5}[0-9a-fA-F]{2}")
RPM_FILE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+~^-]{0,250}\.rpm")
IMAGE_ID = re.compile(r"[0-9a-f]{64}")
INDEX = re.compile(r"\d{1,6}")
REPORT_STATUSES = ("ok", "failed")


class HttpError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def make_handler(app) -> type[BaseHTTPRequestHandler]:
    class Handler(_Handler):
        pass

    Handler.app = app
    return Handler


class _Handler(BaseHTTPRequestHandler):
    app = None  # set by make_handler: the ais.server.service.Server
    protocol_version = "HTTP/1.1"
    server_version = "ais-serve/1"
    timeout = 30  # seconds a silent client may hold a thread
    default_request_version = "HTTP/1.0"  # so errors about a garbage request line carry a status line

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Errors the base class detects itself (bad request line, headers too long): JSON too."""
        self.close_connection = True
        text = message or self.responses.get(code, ("error",))[0]
        body = json.dumps({"error": text, "status": code}).encode() + b"\n"
        self.send_response(code, message)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if getattr(self, "command", None) != "HEAD":
            self.wfile.write(body)

    # -------------------------------------------------------------- plumbing

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def _dispatch(self, method: str) -> None:
        self._started = time.monotonic()
        self._status, self._sent, self._in_dispatch = 0, 0, True
        self._body_read = False
        try:
            self._route(method)
        except HttpError as err:
            self._error(err.status, err.message)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception:  # a bug: answer 500, keep serving
            log.exception("internal error on %s %s", method, self.path)
            if not self._status:
                self._error(500, "internal server error (see the server log)")
            self.close_connection = True
        finally:
            self._in_dispatch = False
            log.info('%s "%s %s" %d %d %.1fms', self.client_address[0], method, self.path[:200],
                     self._status, self._sent, (time.monotonic() - self._started) * 1000)

    def log_request(self, code="-", size="-") -> None:
        if not getattr(self, "_in_dispatch", False):  # errors the base class answers itself
            log.info('%s "%s" %s', self.client_address[0], (self.requestline or "")[:200], code)

    def log_message(self, format: str, *args) -> None:
        log.debug("%s %s", self.client_address[0], format % args)

    def _send_head(self, status: int, length: int, ctype: str, extra: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(length))
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self._status = status

    def _json(self, status: int, obj: dict) -> None:
        body = json.dumps(obj, sort_keys=True).encode() + b"\n"
        self._send_head(status, len(body), "application/json")
        if self.command != "HEAD":
            self.wfile.write(body)
            self._sent += len(body)

    def _error(self, status: int, message: str) -> None:
        if self.command == "POST" and not self._body_read:
            self.close_connection = True  # the unread body would be taken for the next request
        self._json(status, {"error": message, "status": status})

    def _bytes(self, data: bytes, ctype: str, etag: str | None = None) -> None:
        """Send in-memory bytes, honouring Range."""
        start, length, partial = self._range(len(data), etag)
        self._send_head(206 if partial else 200, length, ctype, self._range_headers(start, length, len(data), partial, etag))
        if self.command != "HEAD":
            self.wfile.write(data[start:start + length])
            self._sent += length

    def _file(self, path, ctype: str, etag: str | None = None) -> None:
        """Send a file with sendfile, honouring Range."""
        try:
            f = open(path, "rb")
        except OSError as err:
            raise HttpError(404, f"{path.name} is listed but missing on the server: {err.strerror}") from err
        with f:
            size = os.fstat(f.fileno()).st_size
            start, length, partial = self._range(size, etag)
            self._send_head(206 if partial else 200, length, ctype, self._range_headers(start, length, size, partial, etag))
            if self.command != "HEAD" and length:
                self.wfile.flush()
                self._sent += self.connection.sendfile(f, start, length)

    def _range(self, size: int, etag: str | None) -> tuple[int, int, bool]:
        header = self.headers.get("Range")
        if_range = self.headers.get("If-Range")
        if header and if_range is not None and if_range.strip() != f'"{etag}"':
            header = None  # the client's partial copy is of another version: send everything
        try:
            return byte_range(header, size)
        except RangeNotSatisfiable as err:
            self._status = 416
            body = json.dumps({"error": str(err), "status": 416}).encode() + b"\n"
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            raise _Answered() from err

    @staticmethod
    def _range_headers(start: int, length: int, size: int, partial: bool, etag: str | None) -> dict:
        headers = {"Accept-Ranges": "bytes"}
        if etag:
            headers["ETag"] = f'"{etag}"'
        if partial:
            headers["Content-Range"] = f"bytes {start}-{start + length - 1}/{size}"
        return headers

    # -------------------------------------------------------------- routing

    def _route(self, method: str) -> None:
        raw = urlsplit(self.path).path
        if not raw.startswith("/"):
            raise HttpError(400, "request target must be an absolute path")
        parts = [unquote(p) for p in raw.split("/")[1:]]
        if any("/" in p or "\x00" in p for p in parts):
            raise HttpError(400, "encoded '/' or NUL in the path")
        if parts[:1] != ["v1"]:
            raise HttpError(404, f"no such resource {raw[:100]}; the API lives under /v1/")
        route, args = _match(parts[1:])
        if route is None:
            raise HttpError(404, f"no such resource {raw[:100]}")
        allowed = ("POST",) if route == "report" else ("GET", "HEAD")
        if method not in allowed:
            self.close_connection = True
            raise HttpError(405, f"{method} is not allowed on {raw[:100]} (use {' or '.join(allowed)})")
        try:
            getattr(self, f"_r_{route}")(*args)
        except _Answered:
            pass

    # -------------------------------------------------------------- routes

    def _r_health(self) -> None:
        snap = self.app.state.current()
        self._json(200, {"status": "ok", "generation": snap.generation, "hosts": len(snap.hosts),
                         "images": len(snap.manifest.get("images", {}))})

    def _r_plan(self, ident: str) -> None:
        snap = self.app.state.current()
        host = self._host(snap, ident, by_mac=True)
        self._authorise(host)
        self._json(200, self.app.plan_for(snap, host))

    def _r_file(self, name: str, index: str) -> None:
        snap = self.app.state.current()
        host = self._host(snap, name)
        self._authorise(host)
        if not INDEX.fullmatch(index):
            raise HttpError(400, f"file index must be a number, not {index[:40]!r}")
        n = int(index)
        if n >= len(host.files):
            raise HttpError(404, f"host {host.name} has {len(host.files)} files; there is no file {n}")
        content = host.files[n].content
        self._bytes(content, "application/octet-stream", etag=hashlib.sha256(content).hexdigest())

    def _r_package(self, filename: str) -> None:
        if not RPM_FILE.fullmatch(filename) or ".." in filename:
            raise HttpError(400, f"not an RPM file name: {filename[:80]!r}")
        snap = self.app.state.current()
        pkg = snap.files.get(filename)
        if pkg is None:
            raise HttpError(404, f"package {filename} is not in the repository")
        self._file(snap.repo_dir / pkg.filename, "application/x-rpm", etag=pkg.digest)

    def _r_header(self, iid: str) -> None:
        if not IMAGE_ID.fullmatch(iid):
            raise HttpError(400, "an image id is 64 lower-case hex digits")
        snap = self.app.state.current()
        if iid not in snap.manifest.get("images", {}):
            raise HttpError(404, f"image {iid[:12]} is not in the published manifest (generation {snap.generation})")
        header, why = self.app.checker.check(snap, iid)
        if header is None:
            raise HttpError(503, why)
        self._bytes(header.to_json().encode(), "application/json", etag=header.sha256())

    def _r_report(self, name: str) -> None:
        snap = self.app.state.current()
        host = self._host(snap, name)
        self._authorise(host)
        report = self._read_json()
        status = report.get("status")
        if status not in REPORT_STATUSES:
            raise HttpError(400, f"report status must be one of {', '.join(REPORT_STATUSES)}, not {status!r}")
        row = self.app.history.add(host.name, report)
        self._json(201, {"stored": row, "host": host.name})

    # -------------------------------------------------------------- checks

    def _host(self, snap, ident: str, *, by_mac: bool = False):
        if MAC.fullmatch(ident):
            if not by_mac:
                raise HttpError(400, "this resource takes a host name, not a MAC address")
            host = snap.macs.get(ident.lower().replace("-", ":"))
            if host is None:
                raise HttpError(404, f"no host with MAC {ident.lower()} in the descriptors (add it to an HCD)")
            return host
        if ":" in ident or (by_mac and re.fullmatch(r"[0-9a-fA-F:-]{12,}", ident)):
            raise HttpError(400, f"malformed MAC address {ident[:40]!r} (expected aa:bb:cc:dd:ee:ff)")
        if not NAME.fullmatch(ident):
            raise HttpError(400, f"malformed host name {ident[:40]!r}")
        host = snap.hosts.get(ident)
        if host is None:
            raise HttpError(404, f"unknown host {ident}: no HCD names it")
        return host

    def _authorise(self, host) -> None:
        if not host.token:
            raise HttpError(403, f"host {host.name} has no <token> in its HCD; its plan and files are never served without one")
        header = self.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not given:
            raise HttpError(403, f"host {host.name}: send 'Authorization: Bearer <token>' (the token of its HCD)")
        if not hmac.compare_digest(given.strip().encode(), host.token.encode()):
            raise HttpError(403, f"host {host.name}: wrong token")

    def _read_json(self) -> dict:
        length = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding"):
            raise HttpError(411, "send the report with a Content-Length (no chunked encoding)")
        if length is None:
            raise HttpError(411, "a report needs a Content-Length")
        if not length.strip().isdigit():
            raise HttpError(400, f"bad Content-Length {length[:40]!r}")
        if int(length) > self.app.max_report_bytes:
            raise HttpError(413, f"report of {length} bytes is larger than the limit of {self.app.max_report_bytes}")
        body = self.rfile.read(int(length))
        self._body_read = True
        if len(body) != int(length):
            raise HttpError(400, "the body ended before Content-Length bytes")
        try:
            report = json.loads(body)
        except (ValueError, UnicodeDecodeError) as err:
            raise HttpError(400, f"report is not valid JSON: {err}") from err
        if not isinstance(report, dict):
            raise HttpError(400, "report must be a JSON object")
        return report


class _Answered(Exception):
    """The response was already sent (e.g. a 416)."""


def _match(parts: list[str]) -> tuple[str | None, tuple]:
    """(route name, arguments) for the path segments after /v1."""
    if parts == ["health"]:
        return "health", ()
    if len(parts) == 3 and parts[0] == "hosts" and parts[2] == "plan":
        return "plan", (parts[1],)
    if len(parts) == 4 and parts[0] == "hosts" and parts[2] == "files":
        return "file", (parts[1], parts[3])
    if len(parts) == 3 and parts[0] == "hosts" and parts[2] == "report":
        return "report", (parts[1],)
    if len(parts) == 2 and parts[0] == "packages":
        return "package", (parts[1],)
    if len(parts) == 3 and parts[0] == "images" and parts[2] == "header":
        return "header", (parts[1],)
    return None, ()
