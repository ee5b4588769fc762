"""The server's RPM torrents: made once and cached atomically, the askers' ranks, and the route
GET /v1/packages/<file>.rpm/torrent refusing strangers and bad names (a real snapshot of a small site)."""

from types import SimpleNamespace

import pytest

from ais.server.answers import Blob, HttpError
from ais.server.routes import Routes, route_of
from ais.server.rpmtorrents import RpmTorrents
from ais.server.state import StateHolder
from ais.stream.torrent import file_torrent_info


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_a_torrent_is_made_once_and_kept_in_the_cache(tmp_path):
    rpm = tmp_path / "a-1-1.x86_64.rpm"
    rpm.write_bytes(b"rpm" * 5000)
    digest = "a" * 64
    first = RpmTorrents(tmp_path / "cache")
    data = first.torrent(rpm, digest)
    assert first.torrent(rpm, digest) == data  # the same salt, the same swarm
    assert RpmTorrents(tmp_path / "cache").torrent(rpm, digest) == data  # and after a restart
    kept = tmp_path / "cache" / "torrents"
    assert [p.name for p in kept.iterdir()] == [f"{digest}.torrent"]  # no temporary file left
    assert kept.joinpath(f"{digest}.torrent").stat().st_mode & 0o077 == 0
    assert first.stats() == {"bytes_sent": 0, "torrents_made": 1, "torrents_served": 2}
    file_torrent_info(data, rpm.name, rpm.stat().st_size)


def test_ranks_follow_the_order_of_asking_within_the_lease():
    clock = Clock()
    board = RpmTorrents("/nonexistent", lease=100, clock=clock)
    assert [board.rank("a.rpm", h) for h in ("db01", "db02", "db01")] == [0, 1, 0]
    assert board.rank("b.rpm", "db02") == 0  # per file
    clock.now = 60
    assert board.rank("a.rpm", "db02") == 1  # asking again keeps the place and the lease
    clock.now = 150  # db01's lease is over, db02's is not
    assert (board.rank("a.rpm", "db02"), board.rank("a.rpm", "db01")) == (0, 1)


@pytest.fixture(scope="module")
def routes(small_site_dir, repo_dir, base_cache, tmp_path_factory):
    state = StateHolder(small_site_dir, repo_dir, base_cache, poll_seconds=3600)
    app = SimpleNamespace(state=state, history=SimpleNamespace(last_id=lambda: 0),
                          rpm_torrents=RpmTorrents(tmp_path_factory.mktemp("cache")))
    return Routes(app)


def test_a_host_gets_the_rpms_torrent_and_its_rank(routes, small_site):
    snap = routes.app.state.current()
    name, pkg = next(iter(snap.files.items()))
    tokens = [h.token for h in small_site.hosts]
    answers = [routes.package_torrent({"Authorization": f"Bearer {t}"}, name) for t in tokens]
    assert all(isinstance(a, Blob) and a.data == answers[0].data for a in answers)
    assert [a.headers["X-AIS-Web-Seed-Rank"] for a in answers] == [str(i) for i in range(len(tokens))]
    path = snap.repo_dir / pkg.filename
    file_torrent_info(answers[0].data, name, path.stat().st_size)


BAD = [  # (what, headers, file name, status)
    ("no token", {}, None, 403),
    ("not bearer", {"Authorization": "Basic abc"}, None, 403),
    ("no host's token", {"Authorization": "Bearer " + "0" * 32}, None, 403),
    ("not an rpm name", "good", "notes.txt", 400),
    ("a path", "good", "../x.rpm", 400),
    ("not in the repository", "good", "nosuch-1-1.x86_64.rpm", 404),
]


@pytest.mark.parametrize("what,headers,name,status", BAD, ids=[b[0] for b in BAD])
def test_bad_requests_for_an_rpm_torrent_are_refused(routes, small_site, what, headers, name, status):
    good = {"Authorization": f"Bearer {small_site.hosts[0].token}"}
    name = name or next(iter(routes.app.state.current().files))
    with pytest.raises(HttpError) as err:
        routes.package_torrent(good if headers == "good" else headers, name)
    assert err.value.status == status


@pytest.mark.parametrize("method,target,route", [
    ("GET", "/v1/packages/a-1-1.x86_64.rpm/torrent", "package_torrent"),
    ("HEAD", "/v1/packages/a-1-1.x86_64.rpm/torrent", "package_torrent"),
    ("GET", "/v1/packages/a-1-1.x86_64.rpm", "package"),
])
def test_the_route(method, target, route):
    assert route_of(method, target)[0] == route


def test_posting_to_the_route_is_refused():
    with pytest.raises(HttpError) as err:
        route_of("POST", "/v1/packages/a-1-1.x86_64.rpm/torrent")
    assert err.value.status == 405
