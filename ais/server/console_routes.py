"""The web console's routes on `ais serve`: who may look, and which page or data each path answers.

What it does: `ConsoleRoutes(app).answer(method, path, headers, local, body)`
answers every path under /console/ (HTML pages) and /v1/console/ (their data
as JSON, the same dicts the pages draw: `ais.console.render.view`):
  /console/cache  /console/plan  /console/hosts  /console/hosts/<name>  /console/live
  /v1/console/cache  ...  /v1/console/hosts/<name>  /v1/console/live
  GET /console/login (a form), POST /console/login (token=...: sets the console's cookie)
Who may look: with `ais serve --admin-token-file FILE`, only a request that
carries that token (`Authorization: Bearer <token>`, or the cookie the login
form sets: an HMAC of the token, HttpOnly, SameSite=Strict) from anywhere;
without it, only a connection made to a loopback address of the server (the
console is "bound to localhost by default": a neighbour on the boot network
gets 403). Everything else answers 401 (no or wrong token) or 403 (not
local) before the path is even parsed, so a stranger learns nothing, not
even which hosts exist. Pages carry a Content-Security-Policy that allows no
script at all: the console has none, and an injected one would not run.

Reads: the app (`ais.server.service.Server`): state (site, manifest),
config (cache, history, admin token), live (the reinstalls board, when the
server keeps one). Fails with `HttpError` (401, 403, 404, 405, 400). Returns
`Page` and `Json` answers.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from dataclasses import asdict, is_dataclass
from http.cookies import CookieError, SimpleCookie
from urllib.parse import parse_qs, unquote

from aiohttp import hdrs

from ais.cache.manifest import read_generations
from ais.console.pages import Pages
from ais.console.queries import HistoryReader
from ais.console.render import ChartMemo, Sources, html, view
from ais.server.answers import NAME, HttpError, Json, Page, given_token

log = logging.getLogger("ais.server.console")

COOKIE = "ais_console"
PAGES = ("cache", "plan", "hosts", "live")
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store",
}


def is_console(path: str) -> bool:
    return path == "/console" or path.startswith(("/console/", "/v1/console/"))


class ConsoleRoutes:
    """The console of one server; see the module docstring."""

    def __init__(self, app):
        self.app = app
        self.token: str | None = app.config.admin_token
        self.cookie_value = (hmac.new(self.token.encode(), b"ais console cookie", hashlib.sha256).hexdigest()
                             if self.token else None)
        self.pages, self.memo = Pages("/console/"), ChartMemo()

    # ------------------------------------------------------------ who may look

    def _allowed(self, headers, local: bool) -> str | None:
        """None when the request may look, else why not (the status is chosen by the caller)."""
        if self.token is None:
            return None if local else ("the console is served only to this machine (localhost); start "
                                       "ais serve with --admin-token-file to open it to the network")
        given = given_token(headers)
        if given is not None and hmac.compare_digest(given.encode(), self.token.encode()):
            return None
        cookie = _cookie(headers)
        if cookie is not None and hmac.compare_digest(cookie.encode(), self.cookie_value.encode()):
            return None
        return "sign in with the admin token"

    def answer(self, method: str, path: str, headers, local: bool, body: bytes | None):
        path = path.split("?", 1)[0]
        if path in ("/console/login", "/console/login/"):
            return self._login(method, headers, body)
        why = self._allowed(headers, local)
        if why is not None:
            return self._refuse(path, why)
        if method not in ("GET", "HEAD"):
            raise HttpError(405, f"{method} is not served here: the console is read-only", {"Allow": "GET, HEAD"})
        page, host = _parse(path)
        if page is None:
            return Page(303, b"", "text/plain", {"Location": "/console/cache"})
        sources = self._sources(page)
        try:
            if path.startswith("/v1/"):
                return Json(200, view(page, sources, host))
            return self._page(200, html(self.pages, page, sources, host, self.memo))
        except KeyError:
            raise HttpError(404, f"no host {host} in the descriptors or the history") from None

    def _refuse(self, path: str, why: str):
        status = 401 if self.token is not None else 403
        if path.startswith("/v1/"):
            raise HttpError(status, why, {"WWW-Authenticate": "Bearer"} if status == 401 else None)
        page = self.pages.login(why, form=self.token is not None)
        return self._page(status, page)

    def _login(self, method: str, headers, body: bytes | None):
        if self.token is None:
            return self._page(403, self.pages.login("no admin token is set (--admin-token-file): the console is "
                                                    "served only to this machine", form=False))
        if method in ("GET", "HEAD"):
            return self._page(200, self.pages.login("This console shows the site's cache, plan and hosts.", form=True))
        if method != "POST":
            raise HttpError(405, f"{method} is not served here", {"Allow": "GET, HEAD, POST"})
        given = (parse_qs((body or b"").decode("utf-8", "replace")).get("token") or [""])[0].strip()
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            log.warning("console: a wrong admin token was given")
            return self._page(401, self.pages.login("That is not the admin token.", form=True))
        cookie = f"{COOKIE}={self.cookie_value}; Path=/; HttpOnly; SameSite=Strict"
        return Page(303, b"", "text/plain", {"Location": "/console/cache", "Set-Cookie": cookie})

    # ------------------------------------------------------------ what it shows

    def _sources(self, page: str) -> Sources:
        snap = self.app.state.current()
        live = getattr(self.app, "live", None)
        return Sources(manifest=snap.manifest,
                       generations=read_generations(snap.cache_dir) if page == "cache" else [],
                       site=snap.site, reader=HistoryReader(self.app.config.history),
                       live=[_plain(e) for e in live.snapshot(time.time())] if live is not None else [])

    @staticmethod
    def _page(status: int, text: str) -> Page:
        return Page(status, text.encode(), "text/html; charset=utf-8", SECURITY_HEADERS)


def _parse(path: str) -> tuple[str | None, str | None]:
    """(page, host) of a console path; 404 for anything else (an empty segment too: /console//cache)."""
    rest = path.removeprefix("/v1").removeprefix("/console")
    if rest in ("", "/") and not path.startswith("/v1/"):
        return None, None
    rest = rest.removeprefix("/").removesuffix("/")
    parts = [unquote(p) for p in rest.split("/")]
    if len(parts) == 1 and parts[0] in PAGES:
        return parts[0], None
    if len(parts) == 2 and parts[0] == "hosts" and NAME.fullmatch(parts[1]):
        return "host", parts[1]
    raise HttpError(404, f"no console page {rest[:60]!r}: there are {', '.join(PAGES)} and hosts/<name>")


def _cookie(headers) -> str | None:
    try:
        jar = SimpleCookie(headers.get(hdrs.COOKIE, ""))
    except CookieError:
        return None
    return jar[COOKIE].value if COOKIE in jar else None


def _plain(entry) -> dict:
    """A live board entry (a dataclass or a dict) as a dict."""
    return asdict(entry) if is_dataclass(entry) else dict(entry)
