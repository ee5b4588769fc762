"""The control API over HTTP, on aiohttp's web server: routes, checks, Range, limits, one log line per request.

What it does: `HttpServer(app, sock, limits, tls)` serves, on an already bound
listening socket, over TLS when `tls` is an `ssl.SSLContext` (ais.siteca), else plain HTTP
(docs/server.md has the details):
  GET  /v1/health                          generation, counts
  GET  /v1/hosts/<name-or-mac>/plan        the host's install plan   (token)
  GET  /v1/hosts/<name>/files/<n>          host file n, Range        (token)
  GET  /v1/packages/<file>.rpm             an RPM of the site, Range (sendfile)
  GET  /v1/packages/<file>.rpm/torrent     the RPM's .torrent        (a token of any host)
  GET  /v1/images/<id>/header              the image header (canonical JSON)
  POST /v1/hosts/<name>/report             store an install report   (token; "progress": the live board only)
  POST /v1/hosts/<name>/chain              join an image's chain     (token)
  GET  /v1/images/<id>/torrent             the image's .torrent      (a token of any host)
  POST /v1/hosts/<name>/swarm              join the image's BitTorrent swarm: peers, web seed (token)
  GET  /v1/seed/<key>/<name>/<chunk>       the web seed: a chunk's stored bytes, Range (the swarm's key)
  GET  /v1/boot/vmlinuz, /v1/boot/initrd   the boot environment, Range (sendfile)
  GET  /v1/boot/ipxe/<mac>                 the iPXE script of the host with that MAC
HEAD works wherever GET does. "(token)": `Authorization: Bearer <token>` must
carry the token of the host's HCD. A plan asked for by MAC answers the same
403, naming no host, for an unknown MAC and for a missing or wrong token. A boot
listener (`boot_only`, `ais serve --boot-listen`) answers /v1/boot/* only, in plain HTTP,
for firmware that cannot check the site CA.

The routes themselves (what each request answers, tokens, the report's
schema) are `ais.server.routes`; this module is the HTTP side.
aiohttp parses HTTP (request line and header sizes, duplicate or malformed
Content-Length, bodies on any method, keep-alive, pipelining), parses Range
(`request.http_range`) and sends files (`FileResponse`, sendfile). This
module adds: a total deadline for a request's line and headers (aiohttp's
keep-alive timer, armed from the connection's start and after each answer,
closes a connection whose next request is not complete by then), a deadline
for a report body, a cap on open connections (over it the oldest connection
with no request in progress is closed), a bounded thread pool that runs
everything that touches the disk or SQLite (the event loop only moves bytes),
and JSON bodies for every error, including those of aiohttp's own parser.

Reads: requests; the app (`ais.server.service.Server`): state, checker,
history, max_report_bytes, plan_for. Fails on nothing a client sends: bad input
gets a 4xx with a JSON body {"error": ..., "status": ...} (400 malformed,
403 token, 404 unknown, 405 method, 408 body too slow, 411/413 body length,
416 range); a bug gets a 500 and a logged traceback. Returns HTTP responses.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from aiohttp import hdrs, web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_protocol import RequestHandler
from multidict import CIMultiDict

from ais.server.answers import Blob, Deferred, File, HttpError, Json, Page
from ais.server.console_routes import ConsoleRoutes, is_console
from ais.server.routes import BODY_ROUTES, Routes, route_of

log = logging.getLogger("ais.server.http")

BOOT_PREFIX = "/v1/boot/"  # all a boot listener (--boot-listen) answers
CONSOLE_BODY = 4096  # bytes of a console form (the login's token)
DEFERRED_POLL = 0.05  # seconds between looks at a deferred answer's time, which may come sooner
SERVER = {"Server": "ais-serve/1"}  # not aiohttp's name and version
# Conditional headers aiohttp's FileResponse would judge by mtime; this API judges by sha256 ETag itself,
# and Accept-Encoding would make FileResponse look for a .gz/.br sibling of the file.
_FILE_IGNORED = (hdrs.IF_RANGE, hdrs.IF_MATCH, hdrs.IF_NONE_MATCH, hdrs.IF_MODIFIED_SINCE,
                 hdrs.IF_UNMODIFIED_SINCE, hdrs.ACCEPT_ENCODING)


@dataclass(frozen=True)
class Limits:
    """What one client may hold of the server (docs/server.md, "Limits")."""

    header_timeout: float = 10.0  # request line + headers complete within this; also the idle keep-alive
    body_timeout: float = 30.0  # a report body complete within this after its headers
    max_connections: int = 256  # open client connections; over it the oldest idle one is closed
    workers: int = 8  # threads for disk, plans and SQLite
    max_line_size: int = 8190  # request line and each header line, bytes
    max_field_size: int = 8190  # one header value, bytes
    max_headers: int = 64
    lingering_seconds: float = 2.0  # after an answer, unread body bytes are drained this long, then closed


# ------------------------------------------------------------------ responses

def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def error_response(status: int, message: str, headers: dict | None = None, *, close: bool = False) -> web.Response:
    body = json.dumps({"error": message, "status": status}).encode() + b"\n"
    resp = web.Response(status=status, body=body, content_type="application/json", headers={**SERVER, **(headers or {})})
    if close:
        resp.force_close()
    return resp


def json_response(status: int, obj: dict) -> web.Response:
    body = json.dumps(obj, sort_keys=True).encode() + b"\n"
    return web.Response(status=status, body=body, content_type="application/json", headers=SERVER)


def byte_range(request: web.BaseRequest, size: int, etag: str) -> tuple[int, int, bool]:
    """(start, length, partial) of what to send, from aiohttp's parse of Range; the same arithmetic
    as FileResponse, so in-memory bytes and files answer alike. 416 for a Range aiohttp cannot
    parse or that starts past the end."""
    if hdrs.RANGE not in request.headers:
        return 0, size, False
    if_range = request.headers.get(hdrs.IF_RANGE)
    if if_range is not None and if_range.strip() != f'"{etag}"':
        return 0, size, False  # the client's partial copy is of another version: send everything
    unsatisfiable = {"Content-Range": f"bytes */{size}"}
    try:
        rng = request.http_range
    except ValueError as err:
        raise HttpError(416, f"Range {request.headers[hdrs.RANGE][:40]!r} not understood: send one range, "
                             "bytes=A-B, bytes=A- or bytes=-N", unsatisfiable) from err
    start, end = rng.start, rng.stop
    if start < 0 and end is None:  # suffix: the last -start bytes
        start = max(size + start, 0)
        length = size - start
    else:
        length = min(end if end is not None else size, size) - start
    if start >= size:
        raise HttpError(416, f"range starts at byte {start}, the file has {size} bytes", unsatisfiable)
    return start, length, True


def range_headers(start: int, length: int, size: int, partial: bool, etag: str) -> dict:
    headers = {**SERVER, "Accept-Ranges": "bytes", "ETag": f'"{etag}"'}
    if partial:
        headers["Content-Range"] = f"bytes {start}-{start + length - 1}/{size}"
    return headers


class _DigestFileResponse(web.FileResponse):
    """FileResponse whose ETag is the file's sha256 (what plans list and clients send in If-Range),
    not aiohttp's mtime-size tag, and which answers `view`: a copy of the request that keeps only
    the headers this API decided to honour."""

    def __init__(self, path: Path, digest: str, view: web.BaseRequest, **kwargs):
        super().__init__(path, **kwargs)
        self._digest, self._view = digest, view

    etag = property(web.StreamResponse.etag.fget,
                    lambda self, _value: web.StreamResponse.etag.fset(self, self._digest))

    async def prepare(self, request: web.BaseRequest):
        return await super().prepare(self._view)


# ------------------------------------------------------------------ the asynchronous side

class Api:
    """The request handler aiohttp calls: reads, hands the blocking work to the pool, answers."""

    def __init__(self, app, limits: Limits, *, scheme: str = "http", boot_only: bool = False):
        self.routes, self.limits, self.scheme, self.boot_only = Routes(app), limits, scheme, boot_only
        self.console = ConsoleRoutes(app)
        self.max_report_bytes = app.max_report_bytes

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        try:
            if self.boot_only and not request.raw_path.startswith(BOOT_PREFIX):
                raise HttpError(404, "this listener serves the boot files only (/v1/boot/...); the API is on "
                                     "the server's other port, over TLS")
            if is_console(request.path):
                answer = await self._console(request)
                return await self._respond(request, answer)
            route, args = route_of(request.method, request.raw_path)
            if route in BODY_ROUTES:  # the sender is checked before its body is read
                check, handle = BODY_ROUTES[route]
                who = await self._blocking(getattr(self.routes, check), request.headers, *args)
                body = await self._read_body(request)
                answer = await self._blocking(getattr(self.routes, handle), who, body)
            else:
                extra = (self.scheme,) if route == "ipxe" else ()  # the script points back at this listener
                answer = await self._blocking(getattr(self.routes, route), request.headers, *args, *extra)
            if isinstance(answer, Deferred):
                while (wait := answer.at() - time.monotonic()) > 0:
                    await asyncio.sleep(min(wait, DEFERRED_POLL))
                answer = await self._blocking(answer.then)
            return await self._respond(request, answer)
        except HttpError as err:
            return error_response(err.status, err.message, err.headers, close=err.status in (408, 411, 413))
        except (ConnectionError, asyncio.CancelledError):
            raise
        except Exception:  # a bug: answer 500, keep serving
            log.exception("internal error on %s %s", request.method, request.raw_path[:200])
            return error_response(500, "internal server error (see the server log)", close=True)

    async def _console(self, request: web.BaseRequest):
        """The console (ais.server.console_routes): told whether the connection came to a loopback address;
        a login form's body is read first (at most CONSOLE_BODY bytes)."""
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        local = bool(sockname) and _is_loopback(sockname[0])
        body = None
        if request.method == "POST":
            if (request.content_length or 0) > CONSOLE_BODY:
                raise HttpError(413, f"a console form is at most {CONSOLE_BODY} bytes")
            async with asyncio.timeout(self.limits.body_timeout):
                body = await request.content.read(CONSOLE_BODY)
        return await self._blocking(self.console.answer, request.method, request.raw_path, request.headers,
                                    local, body)

    @staticmethod
    async def _blocking(func, *args):
        return await asyncio.get_running_loop().run_in_executor(None, func, *args)

    async def _read_body(self, request: web.BaseRequest) -> bytes:
        if request.headers.get(hdrs.TRANSFER_ENCODING):
            raise HttpError(411, "send the body with a Content-Length (no chunked encoding)")
        length = request.content_length
        if length is None:
            raise HttpError(411, "a report or swarm request needs a Content-Length")
        if length > self.max_report_bytes:
            raise HttpError(413, f"report of {length} bytes is larger than the limit of {self.max_report_bytes}")
        if request.headers.get(hdrs.EXPECT, "").lower() == "100-continue":
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # checks passed: send the body
        try:
            async with asyncio.timeout(self.limits.body_timeout):
                return await request.content.readexactly(length)
        except TimeoutError as err:
            raise HttpError(408, f"the report body did not arrive within {self.limits.body_timeout:g} s "
                                 f"of its headers ({length} bytes announced)") from err
        except asyncio.IncompleteReadError as err:
            raise HttpError(400, "the body ended before Content-Length bytes") from err

    async def _respond(self, request: web.BaseRequest, answer) -> web.StreamResponse:
        if isinstance(answer, Page):
            return web.Response(status=answer.status, body=answer.data, content_type=answer.ctype.split(";")[0],
                                charset="utf-8" if "charset" in answer.ctype else None,
                                headers={**SERVER, **(answer.headers or {})})
        if isinstance(answer, Json):
            return json_response(answer.status, answer.obj)
        if isinstance(answer, Blob):
            start, length, partial = byte_range(request, len(answer.data), answer.etag)
            if answer.sent is not None and request.method == "GET":
                answer.sent(length)
            return web.Response(status=206 if partial else 200, body=answer.data[start:start + length],
                                content_type=answer.ctype,
                                headers={**range_headers(start, length, len(answer.data), partial, answer.etag),
                                         **(answer.headers or {})})
        return self._file(request, answer)

    @staticmethod
    def _file(request: web.BaseRequest, answer: File) -> web.StreamResponse:
        """aiohttp's FileResponse (sendfile, Range) on a copy of the request that keeps Range only
        when this API decided to honour it (If-Range by sha256 ETag)."""
        _, length, partial = byte_range(request, answer.size, answer.etag)
        if answer.sent is not None and request.method == "GET":
            answer.sent(length)
        dropped = {name.lower() for name in _FILE_IGNORED} | (set() if partial else {"range"})
        headers = CIMultiDict((k, v) for k, v in request.headers.items() if k.lower() not in dropped)
        return _DigestFileResponse(answer.path, answer.etag, request.clone(headers=headers),
                                   headers={**SERVER, hdrs.CONTENT_TYPE: answer.ctype})


# ------------------------------------------------------------------ connections, errors, logging

class _Connection(RequestHandler):
    """aiohttp's per-connection protocol, with JSON bodies for the errors its parser finds, and
    answers for clients that half-close after their request (busybox nc, the installed system's
    firstboot report): aiohttp lets asyncio close the transport at the client's EOF, so the answer
    to a complete request was lost; returning True keeps the sending side open (the idle
    keep-alive timeout still closes such a connection). Plain HTTP only: over TLS a half-close
    ends the connection (asyncio's SSL transport allows nothing else)."""

    def eof_received(self) -> bool:
        super().eof_received()
        # Over TLS asyncio closes at the peer's EOF whatever this says (and logs a warning if it is True).
        return self.transport is not None and self.transport.get_extra_info("sslcontext") is None

    def handle_error(self, request, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if status >= 500:
            log.error("error handling a request from %s", request.remote, exc_info=exc)
            text = "internal server error (see the server log)"
        else:
            first_line = (message or str(exc) or "bad HTTP").split("\n", 1)[0].rstrip(": ")
            text = f"malformed request: {first_line[:200]}"
        if request.writer.output_size > 0:
            raise ConnectionError("the answer was already under way: closing the connection")
        resp = error_response(status, text, close=True)
        resp.ais_parser_error = True
        return resp


class _BoundedServer(web.Server):
    """aiohttp's low-level server with at most `max_connections` client connections open:
    one more closes the oldest connection that has no request in progress (slow or idle
    clients go first), or the newcomer when every connection is busy."""

    def __init__(self, handler, *, max_connections: int, **kwargs):
        super().__init__(handler, **kwargs)
        self.max_connections = max_connections
        self._open: dict[RequestHandler, None] = {}  # insertion order = age

    def __call__(self) -> RequestHandler:
        return _Connection(self, loop=self._loop, **self._kwargs)

    def connection_made(self, handler: RequestHandler, transport) -> None:
        super().connection_made(handler, transport)
        self._open[handler] = None
        if len(self._open) > self.max_connections:
            victim = next((h for h in self._open if h is not handler and not h._request_in_progress), handler)
            log.debug("%d connections open (--max-connections): closing one from %s", len(self._open),
                      victim.peername)
            del self._open[victim]
            victim.force_close()

    def connection_lost(self, handler: RequestHandler, exc: BaseException | None = None) -> None:
        self._open.pop(handler, None)
        super().connection_lost(handler, exc)


class _AccessLog(AbstractAccessLogger):
    """One line per answer: client "METHOD path" status bytes time."""

    def log(self, request, response, time: float) -> None:
        what = "-" if getattr(response, "ais_parser_error", False) else f"{request.method} {request.raw_path[:200]}"
        self.logger.info('%s "%s" %d %d %.1fms', request.remote, what, response.status,
                         response.body_length, time * 1000)

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)


class HttpServer:
    """The control API on a bound socket, in an event loop on its own thread (start/stop)."""

    def __init__(self, app, sock, limits: Limits, tls=None, *, boot_only: bool = False):
        self.sock, self.limits, self.tls = sock, limits, tls
        self.api = Api(app, limits, scheme="https" if tls else "http", boot_only=boot_only)
        self.executor = ThreadPoolExecutor(max_workers=limits.workers, thread_name_prefix="ais-serve-work")
        self.loop: asyncio.AbstractEventLoop | None = None
        self.runner: web.ServerRunner | None = None
        self._thread = None

    @property
    def address(self) -> tuple[str, int]:
        return self.sock.getsockname()[:2]

    async def _start(self) -> None:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(self.executor)  # FileResponse's stat/open run here too
        limits = self.limits
        server = _BoundedServer(
            self.api, max_connections=limits.max_connections,
            keepalive_timeout=limits.header_timeout, max_line_size=limits.max_line_size,
            max_field_size=limits.max_field_size, max_headers=limits.max_headers,
            lingering_time=limits.lingering_seconds, access_log_class=_AccessLog, access_log=log,
            auto_decompress=False)
        self.runner = web.ServerRunner(server, handle_signals=False, shutdown_timeout=5.0)
        await self.runner.setup()
        await web.SockSite(self.runner, self.sock, ssl_context=self.tls).start()

    def start(self) -> None:
        import threading

        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="ais-serve-http")
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(timeout=30)

    def stop(self) -> None:
        if self.loop is None:
            self.sock.close()
            self.executor.shutdown(wait=False)
            return
        if self.runner is not None:
            try:
                asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(timeout=15)
            except Exception as err:  # stopping anyway
                log.warning("the HTTP server did not stop cleanly: %s", err)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()
        self.loop = None
        self.sock.close()
        self.executor.shutdown(wait=False, cancel_futures=True)
