"""The routes and the live board (a real snapshot of a small site, a real history database):
a "progress" report with the host's token updates the board and stores nothing; an answered plan
starts an entry; an ok or failed report is stored and finishes it; strangers and malformed
progress reports are refused as every report is (403, 400)."""

import json
import time
from types import SimpleNamespace

import pytest

from ais.server.answers import HttpError
from ais.server.history import History
from ais.server.live import LiveBoard
from ais.server.routes import Routes, parse_report
from ais.server.state import StateHolder
from ais.server.window import Window


@pytest.fixture(scope="module")
def state(small_site_dir, repo_dir, base_cache):
    return StateHolder(small_site_dir, repo_dir, base_cache, poll_seconds=3600)


@pytest.fixture
def routes(state, tmp_path):
    def plan_for(snap, host):
        return {"host": host.name, "scd": host.scd, "image": {"id": "i" * 64, "stream": {"transport": "unicast"}}}

    app = SimpleNamespace(state=state, history=History(tmp_path / "history.sqlite"), live=LiveBoard(),
                          window=Window(1, 1800.0), config=SimpleNamespace(window_retry=10), plan_for=plan_for,
                          chains=None)
    return Routes(app)


def token_of(small_site, name):
    return {"Authorization": f"Bearer {next(h.token for h in small_site.hosts if h.name == name)}"}


def post(routes, headers, name, report: dict):
    """What the HTTP side does for POST /v1/hosts/<name>/report: the sender checked, then the body."""
    host = routes.report_host(headers, name)
    return routes.report(host, json.dumps(report).encode())


def board(routes):
    return [(e.host, e.state, e.phase, e.step, e.done, e.total) for e in routes.app.live.snapshot(time.time())]


def test_a_progress_report_updates_the_board_and_stores_nothing(routes, small_site):
    auth = token_of(small_site, "mail01")
    answer = post(routes, auth, "mail01", {"status": "progress", "phase": "image", "done": 10, "total": 100})
    assert (answer.status, answer.obj) == (202, {"host": "mail01"})
    assert board(routes) == [("mail01", "installing", "image", 4, 10, 100)]
    assert routes.app.history.for_host("mail01") == [] and routes.app.history.last_id() == 0


def test_a_progress_report_does_not_touch_the_reboot_window(routes, small_site):
    routes.plan(token_of(small_site, "mail01"), "mail01")
    assert routes.app.window.holders() == ("mail01",)
    post(routes, token_of(small_site, "mail01"), "mail01", {"status": "progress", "phase": "install"})
    assert routes.app.window.holders() == ("mail01",)


def test_an_answered_plan_starts_an_entry_and_an_ok_report_finishes_it(routes, small_site):
    auth = token_of(small_site, "db01")
    routes.plan(auth, "db01")
    (entry,) = routes.app.live.snapshot(time.time())
    assert (entry.host, entry.scd, entry.image, entry.state, entry.phase) == ("db01", "db", "i" * 64,
                                                                                "installing", "plan")
    post(routes, auth, "db01", {"status": "progress", "phase": "report"})
    answer = post(routes, auth, "db01", {"status": "ok"})
    assert answer.status == 201 and answer.obj["stored"] == 1
    assert board(routes) == [("db01", "installed", "report", 14, None, None)]
    assert [r["status"] for r in routes.app.history.for_host("db01")] == ["ok"]
    assert routes.app.window.holders() == ()


def test_a_failed_report_shows_its_phase_and_message(routes, small_site):
    auth = token_of(small_site, "db01")
    post(routes, auth, "db01", {"status": "progress", "phase": "image", "done": 1, "total": 2})
    post(routes, auth, "db01", {"status": "failed", "phase": "image", "message": "disk gone"})
    (entry,) = routes.app.live.snapshot(time.time())
    assert (entry.state, entry.phase, entry.message) == ("failed", "image", "disk gone")


def test_a_refused_plan_starts_no_entry(routes, small_site):
    routes.plan(token_of(small_site, "mail01"), "mail01")  # the window's one place
    with pytest.raises(HttpError) as err:
        routes.plan(token_of(small_site, "db01"), "db01")
    assert err.value.status == 503
    assert [e.host for e in routes.app.live.snapshot(time.time())] == ["mail01"]


REFUSED = [  # (what, whose token, body, status)
    ("no token", None, {"status": "progress", "phase": "image"}, 403),
    ("another host's token", "db01", {"status": "progress", "phase": "image"}, 403),
    ("progress without a phase", "mail01", {"status": "progress"}, 400),
    ("progress with an empty phase", "mail01", {"status": "progress", "phase": ""}, 400),
    ("progress done over total", "mail01", {"status": "progress", "phase": "image", "done": 2, "total": 1}, 400),
    ("progress done negative", "mail01", {"status": "progress", "phase": "image", "done": -1}, 400),
    ("progress total not a number", "mail01", {"status": "progress", "phase": "image", "total": "all"}, 400),
    ("done on an ok report", "mail01", {"status": "ok", "done": 1, "total": 1}, 400),
]


@pytest.mark.parametrize("what,whose,report,status", REFUSED, ids=[r[0] for r in REFUSED])
def test_refused_progress_reports_change_nothing(routes, small_site, what, whose, report, status):
    with pytest.raises(HttpError) as err:
        post(routes, token_of(small_site, whose) if whose else {}, "mail01", report)
    assert err.value.status == status
    assert routes.app.live.snapshot(time.time()) == [] and routes.app.history.last_id() == 0


BAD_REPORTS = [  # (what, body, words in the 400)
    ("progress without a phase", b'{"status": "progress"}', "names its phase"),
    ("progress with done over total", b'{"status": "progress", "phase": "image", "done": 5, "total": 4}',
     "more than total"),
    ("progress with a huge done", b'{"status": "progress", "phase": "image", "done": %d}' % 2**70, "$.done"),
    ("failed with a total", b'{"status": "failed", "phase": "image", "total": 3}', "only a progress report"),
    ("an unknown status", b'{"status": "progressing", "phase": "image"}', "$.status"),
]


@pytest.mark.parametrize("what,body,words", BAD_REPORTS, ids=[b[0] for b in BAD_REPORTS])
def test_malformed_reports_are_400_naming_the_problem(what, body, words):
    with pytest.raises(HttpError) as err:
        parse_report(body)
    assert err.value.status == 400 and words in err.value.message


def test_older_reports_stay_valid():
    assert parse_report(b'{"status": "ok"}')["done"] is None
    assert parse_report(b'{"status": "up", "phase": "up"}')["total"] is None
