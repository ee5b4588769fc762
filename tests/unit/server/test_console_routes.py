"""ais.server.console_routes in-process: who may look, and what each path answers, over the real demo cache.

A table of (method, path, credentials, local) -> status for a server with an admin token and one without:
the right Bearer or cookie opens every page and data endpoint from anywhere; no, a wrong or a host's token
gets 401 (even on localhost, even for a path that does not exist); without a token only a loopback
connection gets in (403 otherwise). Path tricks (dot segments, encoded slashes and brackets, empty
segments, names too long for a host) answer 4xx, never an exception (the server's 500). Refusals name
no host, image or SCD of the site.
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
from multidict import CIMultiDict

from ais.cache import manifest as manifests
from ais.cache.store import Store
from ais.console.queries import HistoryReader
from ais.console.render import Sources, view
from ais.server.answers import HttpError, Json, Page
from ais.server.console_routes import ConsoleRoutes
from tests.unit.console import conftest as console_fixtures

TOKEN = "unit-admin-token-0123456789"
MAIL_TOKEN = "9d4bf7abd55eb7e7da9043caf50c4203"  # mail01's own token: a host's token is not the admin's
LONG = "a" * 5000
# the console tests' fixtures: the demo site rebuilt for real, a history with a hostile failure message
demo_cache, demo_site, history = console_fixtures.demo_cache, console_fixtures.demo_site, console_fixtures.history


@pytest.fixture
def app(demo_cache, demo_site, history):
    def make(token: str | None):
        snap = SimpleNamespace(site=demo_site, manifest=manifests.read(Store(demo_cache)), cache_dir=demo_cache)
        return SimpleNamespace(state=SimpleNamespace(current=lambda: snap),
                               config=SimpleNamespace(admin_token=token, history=history))
    return make


def credentials(routes: ConsoleRoutes, how: str) -> CIMultiDict:
    return CIMultiDict({
        "none": {}, "bearer": {"Authorization": f"Bearer {TOKEN}"}, "cookie": {"Cookie": f"ais_console={routes.cookie_value}"},
        "wrong bearer": {"Authorization": f"Bearer {TOKEN[:-1]}x"}, "host token": {"Authorization": f"Bearer {MAIL_TOKEN}"},
        "basic": {"Authorization": f"Basic {TOKEN}"}, "wrong cookie": {"Cookie": "ais_console=" + "0" * 64},
        "broken cookie": {"Cookie": 'ais_console="\\x00;;; =;'}, "token as cookie": {"Cookie": f"ais_console={TOKEN}"},
        "other cookie": {"Cookie": f"session={routes.cookie_value}"},
    }[how])


def answer(routes: ConsoleRoutes, method: str, path: str, how: str, local: bool, body: bytes | None = None):
    """(status, the answer or the HttpError): anything else raised is a bug the server would answer 500."""
    try:
        got = routes.answer(method, path, credentials(routes, how), local, body)
    except HttpError as err:
        return err.status, err
    assert isinstance(got, (Page, Json))
    return got.status, got


PAGES = ["cache", "plan", "hosts", "hosts/mail01", "hosts/db01", "live"]
EVERY = [f"/console/{p}" for p in PAGES] + [f"/v1/console/{p}" for p in PAGES]
# (method, path, credentials, local) -> status, for a server started with --admin-token-file
WITH_TOKEN = [
    *[("GET", path, how, local, 200) for path in EVERY for how in ("bearer", "cookie") for local in (True, False)],
    *[("GET", path, how, local, 401) for path in EVERY
      for how in ("none", "wrong bearer", "host token", "basic", "wrong cookie", "broken cookie", "token as cookie",
                  "other cookie") for local in (True, False)],
    ("HEAD", "/console/cache", "bearer", False, 200),
    ("GET", "/console/cache/", "bearer", False, 200),
    ("GET", "/console/cache?x=<script>", "bearer", False, 200),
    ("GET", "/console", "bearer", False, 303),
    ("GET", "/console/", "bearer", False, 303),
    ("GET", "/v1/console", "bearer", False, 404),
    ("GET", "/v1/console/", "bearer", False, 404),
    ("GET", "/console/nosuch", "bearer", False, 404),
    ("GET", "/console/hosts/nosuchhost", "bearer", False, 404),
    ("GET", "/v1/console/hosts/nosuchhost", "bearer", False, 404),
    ("GET", "/console/hosts/../cache", "bearer", False, 404),
    ("GET", "/console/hosts/..", "bearer", False, 404),
    ("GET", "/console/hosts/%2e%2e", "bearer", False, 404),
    ("GET", "/console/hosts/mail01%2f..%2fcache", "bearer", False, 404),
    ("GET", "/console/hosts/mail01/../../cache", "bearer", False, 404),
    ("GET", "/console/hosts/mail01/extra", "bearer", False, 404),
    ("GET", "/v1/console/hosts/%3Cscript%3E", "bearer", False, 404),
    ("GET", "/console/hosts/<script>alert(1)</script>", "bearer", False, 404),
    ("GET", "/console/hosts/%00", "bearer", False, 404),
    ("GET", "/console/hosts/%ZZ", "bearer", False, 404),
    ("GET", "/console/hosts/%C3%A9t%C3%A9", "bearer", False, 404),
    ("GET", "/console//cache", "bearer", False, 404),
    ("GET", "/console/hosts//mail01", "bearer", False, 404),
    ("GET", "/v1/console//hosts", "bearer", False, 404),
    ("GET", "/console/hosts/" + "a" * 63, "bearer", False, 404),  # a host name's length, no such host
    ("GET", "/console/hosts/" + "a" * 64, "bearer", False, 404),  # longer than a host name
    ("GET", "/console/hosts/" + LONG, "bearer", False, 404),
    ("GET", "/v1/console/" + LONG, "bearer", False, 404),
    ("GET", "/console/hosts/../cache", "none", False, 401),  # refused before the path is even read
    ("GET", "/console/" + LONG, "none", True, 401),
    ("POST", "/console/cache", "bearer", False, 405),
    ("PUT", "/v1/console/hosts", "bearer", False, 405),
    ("DELETE", "/v1/console/hosts/mail01", "bearer", False, 405),
    ("POST", "/console/cache", "none", False, 401),
    ("GET", "/console/login", "none", False, 200),
    ("GET", "/console/login/", "none", False, 200),
    ("PUT", "/console/login", "none", False, 405),
]
# the same for a server without an admin token: loopback connections only
WITHOUT_TOKEN = [
    *[("GET", path, "none", True, 200) for path in EVERY],
    *[("GET", path, how, False, 403) for path in EVERY for how in ("none", "bearer", "wrong bearer")],
    ("GET", "/console/hosts/../cache", "none", False, 403),
    ("GET", "/console/hosts/../cache", "none", True, 404),
    ("GET", "/v1/console/hosts/%3Cscript%3E", "none", True, 404),
    ("GET", "/console//cache", "none", True, 404),
    ("GET", "/console/hosts/" + LONG, "none", True, 404),
    ("POST", "/v1/console/cache", "none", True, 405),
    ("GET", "/console/login", "none", True, 403),
    ("POST", "/console/login", "none", False, 403),
]


def row_id(row) -> str:
    method, path, how, local, status = row
    return f"{method} {path[:48]} {how} {'local' if local else 'far'} -> {status}"


@pytest.mark.parametrize("row", WITH_TOKEN, ids=row_id)
def test_with_an_admin_token(app, row):
    method, path, how, local, status = row
    got, _ = answer(ConsoleRoutes(app(TOKEN)), method, path, how, local)
    assert got == status


@pytest.mark.parametrize("row", WITHOUT_TOKEN, ids=row_id)
def test_without_an_admin_token(app, row):
    method, path, how, local, status = row
    got, _ = answer(ConsoleRoutes(app(None)), method, path, how, local)
    assert got == status


@pytest.mark.parametrize("token, how, local", [(TOKEN, "none", True), (TOKEN, "wrong bearer", False),
                                               (TOKEN, "wrong cookie", False), (None, "none", False)])
@pytest.mark.parametrize("path", EVERY)
def test_a_refusal_names_nothing_of_the_site(app, demo_site, path, token, how, local):
    routes = ConsoleRoutes(app(token))
    status, got = answer(routes, "GET", path, how, local)
    assert status in (401, 403)
    text = got.message if isinstance(got, HttpError) else got.data.decode()
    manifest = routes.app.state.current().manifest
    words = [h.name for h in demo_site.hosts] + [iid[:8] for iid in manifest["images"]]
    assert not [w for w in words if w in text], text
    assert "sign in" in text or "localhost" in text or "this machine" in text


@pytest.mark.parametrize("page", ["cache", "plan", "hosts", "live"])
def test_a_data_endpoint_sends_the_pages_view(app, page, demo_cache, demo_site, history):
    routes = ConsoleRoutes(app(TOKEN))
    status, got = answer(routes, "GET", f"/v1/console/{page}", "bearer", False)
    expected = view(page, Sources(manifests.read(Store(demo_cache)), manifests.read_generations(demo_cache), demo_site,
                                  HistoryReader(history)))
    if page == "live":
        got.obj.pop("now"), expected.pop("now")
    assert status == 200 and got.obj == expected


def test_pages_carry_a_policy_with_no_script(app):
    routes = ConsoleRoutes(app(TOKEN))
    for path in [f"/console/{p}" for p in PAGES] + ["/console/login"]:
        _, page = answer(routes, "GET", path, "bearer", False)
        policy = page.headers["Content-Security-Policy"]
        assert policy.startswith("default-src 'none'") and "script-src" not in policy
        assert b"<script" not in page.data.lower()


def test_the_hostile_message_is_escaped_on_the_pages(app):
    routes = ConsoleRoutes(app(TOKEN))
    for path in ("/console/hosts", "/console/hosts/db01"):
        _, page = answer(routes, "GET", path, "bearer", False)
        assert b"&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; &#34;quoted&#34;" in page.data


@pytest.mark.parametrize("body, status", [
    (f"token={TOKEN}".encode(), 303), (f"token={TOKEN}&token=x".encode(), 303),
    (f"token=%20{TOKEN}%20".encode(), 303),  # a pasted token's spaces are not part of it
    (b"token=" + TOKEN[:-1].encode(), 401), (b"token=", 401), (b"", 401), (None, 401),
    (b"nottoken=" + TOKEN.encode(), 401), (b"\xff\xfe\x00", 401), (b"token=" + b"%" * 4000, 401),
])
def test_login(app, body, status):
    routes = ConsoleRoutes(app(TOKEN))
    got, page = answer(routes, "POST", "/console/login", "none", False, body)
    assert got == status
    cookie = (page.headers or {}).get("Set-Cookie")
    if status == 303:
        assert cookie == f"ais_console={routes.cookie_value}; Path=/; HttpOnly; SameSite=Strict"
        assert TOKEN not in cookie and page.headers["Location"] == "/console/cache"
    else:
        assert cookie is None and b'name="token"' in page.data


def test_the_live_page_shows_the_servers_board(app):
    """Regression: the route asked the board for a snapshot without the time and every live page was a 500."""
    from ais.server.live import LiveBoard

    board = LiveBoard()
    now = time.time()
    board.planned("mail01", "mail", None, now)
    board.progress("mail01", "image", 5 << 20, 20 << 20, now)
    routes = ConsoleRoutes(SimpleNamespace(**vars(app(TOKEN)), live=board))
    status, got = answer(routes, "GET", "/v1/console/live", "bearer", False)
    assert status == 200 and [(e["host"], e["phase"], e["done"]) for e in got.obj["installing"]] == \
        [("mail01", "image", 5 << 20)]
    status, page = answer(routes, "GET", "/console/live", "bearer", False)
    assert status == 200 and b'data-host="mail01"' in page.data and b"25.0 %" in page.data
