"""Progress posts: Session.phase tells notify each phase as it starts (never in a dry run, never failing
the phase), the Notifier posts them best effort (throttled counts, one failure said once, then a
pause), Api.progress is one short try, and the image's chunks are counted once each."""

import http.server
import json
import threading
from types import SimpleNamespace

import pytest

from ais.client.api import Api, ServerAnswer
from ais.client.disk import _heard
from ais.client.notify import Notifier
from ais.client.session import Session
from ais.client.steps import api_of


def session(tmp_path, **fields) -> Session:
    return Session(state_dir=str(tmp_path / "state"), server="http://127.0.0.1:9", host="db01", token="t", **fields)


# ------------------------------------------------------------ Session.phase

def test_phase_tells_notify_its_name_as_it_starts(tmp_path):
    s = session(tmp_path)
    told = []
    s.notify = lambda phase, *counts: told.append((phase, counts, s.phase_now, dict(s.timings)))
    with s.phase("image", "by unicast"):
        assert told == [("image", (), "image", {})]  # before the step's work, not after it
    assert len(told) == 1


def test_a_notify_that_raises_does_not_fail_the_phase(tmp_path):
    s = session(tmp_path)

    def broken(phase, *counts):
        raise OSError("no route to host")

    s.notify = broken
    ran = []
    with s.phase("grow"):
        ran.append(True)
    assert ran == [True] and "grow" in s.timings


def test_a_dry_run_tells_notify_nothing(tmp_path):
    s = session(tmp_path, dry_run=True)
    told = []
    s.notify = lambda *args: told.append(args)
    with s.phase("check"):
        pass
    assert told == []


def test_notify_is_not_saved_in_the_session_file(tmp_path):
    s = session(tmp_path)
    s.notify = lambda *args: None
    s.save()
    assert "notify" not in json.loads((tmp_path / "state" / "session.json").read_text())
    assert Session.load(tmp_path / "state").notify is None


def test_api_of_gives_the_session_one_notifier(tmp_path):
    s = session(tmp_path)
    api = api_of(s)
    first = s.notify
    assert isinstance(first, Notifier) and first.api is api
    api_of(s)
    assert s.notify is first  # a later Api (the image step's) keeps the notifier and its state


# ------------------------------------------------------------ Notifier

class FakeApi:
    def __init__(self, fail: BaseException | None = None):
        self.posts, self.fail = [], fail

    def progress(self, host, phase, done=None, total=None, *, timeout):
        self.posts.append((host, phase, done, total, timeout))
        if self.fail is not None:
            raise self.fail


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def notifier(tmp_path, api, **fields):
    clock = Clock()
    return Notifier(session(tmp_path, **fields), api, clock=clock), clock


def test_phase_starts_post_at_once_and_counts_at_most_every_two_seconds(tmp_path):
    api = FakeApi()
    notify, clock = notifier(tmp_path, api)
    notify("image")
    for done in range(1, 6):  # chunks arriving within the same 2 s
        clock.now += 0.3
        notify("image", done * 10, 100)
    clock.now = 1002.0
    notify("image", 70, 100)
    notify("image", 80, 100)
    notify("grow")  # a new phase is posted whatever the time
    assert [(p[1], p[2], p[3]) for p in api.posts] == [("image", None, None), ("image", 70, 100), ("grow", None, None)]
    assert all(p[0] == "db01" and p[4] == 2.0 for p in api.posts)


def test_the_plans_host_name_is_used_and_a_mac_is_not(tmp_path):
    api = FakeApi()
    notify, _ = notifier(tmp_path, api)
    notify.session.host = "52:54:00:00:0a:01"
    notify("identify")
    assert api.posts == []  # the report route takes a name
    notify.session.plan = {"host": "dc01"}
    notify("plan")
    assert [p[0] for p in api.posts] == ["dc01"]


def test_only_the_clients_own_phases_are_posted(tmp_path):
    api = FakeApi()
    notify, _ = notifier(tmp_path, api)
    notify("kexec-load")  # after the ok report: it would start a new entry on the board
    assert api.posts == []


def test_a_dry_run_posts_nothing(tmp_path):
    api = FakeApi()
    notify, _ = notifier(tmp_path, api, dry_run=True)
    notify("image")
    notify("image", 1, 2)
    assert api.posts == []


@pytest.mark.parametrize("error", [OSError("connection refused"), TimeoutError("timed out"),
                                   ServerAnswer(400, "the server refused it"), ValueError("odd")])
def test_a_failure_is_said_once_never_raised_and_posts_pause(tmp_path, capsys, error):
    api = FakeApi(fail=error)
    notify, clock = notifier(tmp_path, api)
    notify("image")
    notify("grow")  # within the pause: not tried
    clock.now += 31
    notify("mount")
    clock.now += 31
    notify("install")
    assert [p[1] for p in api.posts] == ["image", "mount", "install"]
    said = capsys.readouterr().err
    assert said.count("could not post progress") == 1 and str(error) in said


# ------------------------------------------------------------ Api.progress over HTTP

class Recorder(http.server.BaseHTTPRequestHandler):
    answers: list = []
    seen: list = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.seen.append((self.path, self.headers["Authorization"], json.loads(body)))
        status, reply = self.answers.pop(0)
        data = json.dumps(reply).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    Recorder.seen.clear()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def test_api_progress_posts_a_progress_report_once(server):
    Recorder.answers[:] = [(202, {"host": "db01"}), (400, {"error": "a progress report names its phase"})]
    api = Api(f"http://127.0.0.1:{server.server_address[1]}", "tok", retries=5)
    api.progress("db01", "image", 5, 10)
    with pytest.raises(ServerAnswer, match="names its phase"):
        api.progress("db01", "image")
    assert Recorder.seen == [
        ("/v1/hosts/db01/report", "Bearer tok", {"status": "progress", "phase": "image", "done": 5, "total": 10}),
        ("/v1/hosts/db01/report", "Bearer tok", {"status": "progress", "phase": "image", "done": None,
                                                 "total": None})]  # one try each: a refusal is not retried


def test_api_progress_is_not_retried_when_the_server_is_gone(server):
    port = server.server_address[1]
    server.shutdown()
    server.server_close()
    api = Api(f"http://127.0.0.1:{port}", "tok", retries=5, retry_delay=30)  # a retry would sleep 30 s
    with pytest.raises(OSError):
        api.progress("db01", "image")


# ------------------------------------------------------------ the image's bytes, summed

def test_each_written_chunk_advances_the_bar_and_the_sum_goes_to_the_server():
    advanced, told = [], []
    bar = SimpleNamespace(advance=advanced.append)
    heard = _heard(bar, 60, lambda done, total: told.append((done, total)))
    for count in (10, 20, 30):
        heard(count)
    assert advanced == [10, 20, 30]
    assert told == [(10, 60), (30, 60), (60, 60)]
    _heard(bar, 60, None)(5)  # no server to tell: only the bar
    assert advanced[-1] == 5
