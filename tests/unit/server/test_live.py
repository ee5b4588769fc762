"""ais.server.live.LiveBoard: the reinstalls in progress, in order, numbered by the client's phases,
silent when a host says nothing, expiring and bounded (times passed in: no clock, no sleeping)."""

import threading

from ais.contracts import CLIENT_PHASES
from ais.server.live import LiveBoard, LiveInstall


def states(board, now):
    return [(e.host, e.state) for e in board.snapshot(now)]


def test_a_plan_starts_an_install_at_phase_plan():
    board = LiveBoard()
    board.planned("db01", "db", "abc123", 100.0)
    assert board.snapshot(101.0) == [LiveInstall(
        host="db01", scd="db", image="abc123", state="installing", phase="plan", step=2, steps=len(CLIENT_PHASES),
        done=None, total=None, started_at=100.0, updated_at=100.0, message=None)]


def test_step_is_the_place_of_the_phase_in_the_clients_order():
    board = LiveBoard()
    board.planned("db01", "db", None, 100.0)
    for n, phase in enumerate(CLIENT_PHASES, start=1):
        board.progress("db01", phase, None, None, 100.0 + n)
        (entry,) = board.snapshot(100.0 + n)
        assert (entry.phase, entry.step, entry.steps) == (phase, n, 14)
    board.progress("db01", "kexec-load", None, None, 200.0)
    assert board.snapshot(200.0)[0].step is None  # not a step of the client's order


def test_progress_updates_phase_and_counts_and_keeps_the_start():
    board = LiveBoard()
    board.planned("db01", "db", "img", 100.0)
    board.progress("db01", "image", 10, 1000, 110.0)
    board.progress("db01", "image", 600, 1000, 112.0)
    (entry,) = board.snapshot(113.0)
    assert (entry.phase, entry.step, entry.done, entry.total) == ("image", 4, 600, 1000)
    assert (entry.started_at, entry.updated_at, entry.scd, entry.image) == (100.0, 112.0, "db", "img")
    board.progress("db01", "grow", None, None, 115.0)
    (entry,) = board.snapshot(116.0)
    assert (entry.phase, entry.done, entry.total) == ("grow", None, None)  # counts belong to their phase


def test_progress_from_a_host_not_on_the_board_starts_an_entry():
    board = LiveBoard()
    board.progress("web01", "identify", None, None, 50.0)
    (entry,) = board.snapshot(51.0)
    assert (entry.host, entry.state, entry.phase, entry.step, entry.scd, entry.started_at) == \
        ("web01", "installing", "identify", 1, None, 50.0)
    board.planned("web01", "web", "img", 52.0)  # the plan it asked for next: the same install
    (entry,) = board.snapshot(53.0)
    assert (entry.phase, entry.scd, entry.image, entry.started_at) == ("plan", "web", "img", 50.0)


def test_finished_marks_installed_or_failed_with_the_phase_and_message():
    board = LiveBoard()
    board.planned("a", "s", None, 10.0)
    board.planned("b", "s", None, 11.0)
    board.progress("a", "report", None, None, 20.0)
    board.progress("b", "image", 5, 9, 21.0)
    board.finished("a", "ok", None, None, 30.0)
    board.finished("b", "failed", "image", "the disk is gone", 31.0)
    a, b = sorted(board.snapshot(32.0), key=lambda e: e.host)
    assert (a.state, a.phase, a.step, a.started_at, a.updated_at) == ("installed", "report", 14, 10.0, 30.0)
    assert (b.state, b.phase, b.message, b.done, b.total) == ("failed", "image", "the disk is gone", None, None)


def test_rebooting_and_up_change_nothing():
    board = LiveBoard()
    board.planned("a", "s", None, 10.0)
    board.finished("a", "ok", None, None, 20.0)
    board.finished("a", "rebooting", "kexec", None, 21.0)
    board.finished("a", "up", "up", None, 40.0)
    assert [(e.state, e.updated_at) for e in board.snapshot(41.0)] == [("installed", 20.0)]


def test_a_new_install_after_a_finished_one_starts_afresh():
    board = LiveBoard()
    board.planned("a", "s", "old", 10.0)
    board.finished("a", "failed", "check", "too small", 20.0)
    board.progress("a", "identify", None, None, 30.0)
    (entry,) = board.snapshot(31.0)
    assert (entry.state, entry.phase, entry.started_at, entry.message, entry.image) == \
        ("installing", "identify", 30.0, None, None)


def test_order_installing_oldest_first_then_finished_newest_first():
    board = LiveBoard()
    board.planned("late", "s", None, 30.0)
    board.planned("early", "s", None, 10.0)
    board.planned("done-first", "s", None, 1.0)
    board.planned("done-last", "s", None, 2.0)
    board.planned("middle", "s", None, 20.0)
    board.finished("done-first", "ok", None, None, 40.0)
    board.finished("done-last", "failed", "image", "x", 50.0)
    assert [e.host for e in board.snapshot(60.0)] == ["early", "middle", "late", "done-last", "done-first"]


def test_an_install_with_no_word_for_silent_after_shows_silent():
    board = LiveBoard(silent_after=300)
    board.planned("quiet", "s", None, 0.0)
    board.planned("talking", "s", None, 0.0)
    board.progress("talking", "install", 1, 3, 250.0)
    assert states(board, 300.0) == [("quiet", "installing"), ("talking", "installing")]
    assert states(board, 300.5) == [("quiet", "silent"), ("talking", "installing")]
    board.progress("quiet", "image", 1, 2, 301.0)  # it speaks again
    assert states(board, 302.0) == [("quiet", "installing"), ("talking", "installing")]


def test_a_silent_host_asking_for_its_plan_again_starts_a_new_install():
    board = LiveBoard(silent_after=300)
    board.planned("a", "s", None, 0.0)
    board.planned("a", "s", None, 100.0)  # asked again within the silence limit: the same install
    assert board.snapshot(101.0)[0].started_at == 0.0
    board.planned("a", "s", None, 1000.0)
    assert board.snapshot(1001.0)[0].started_at == 1000.0


def test_finished_entries_drop_after_keep_seconds_installing_ones_stay():
    board = LiveBoard(keep_seconds=3600)
    board.planned("a", "s", None, 0.0)
    board.finished("a", "ok", None, None, 100.0)
    board.planned("b", "s", None, 0.0)
    assert states(board, 3700.0) == [("b", "silent"), ("a", "installed")]
    assert states(board, 3700.5) == [("b", "silent")]


def test_the_board_is_bounded_and_the_oldest_finished_go_first():
    board = LiveBoard(max_entries=3)
    board.planned("run", "s", None, 0.0)
    for n, host in enumerate(("old", "new")):
        board.planned(host, "s", None, 1.0 + n)
        board.finished(host, "ok", None, None, 10.0 + n)
    board.planned("next", "s", None, 20.0)
    assert [e.host for e in board.snapshot(21.0)] == ["run", "next", "new"]
    board.progress("run", "image", 1, 2, 22.0)  # an entry on the board: nothing goes
    assert len(board.snapshot(23.0)) == 3


def test_when_all_are_installing_the_one_silent_longest_goes():
    board = LiveBoard(max_entries=2)
    board.planned("a", "s", None, 0.0)
    board.planned("b", "s", None, 1.0)
    board.progress("a", "image", 1, 2, 5.0)
    board.progress("c", "identify", None, None, 6.0)
    assert [e.host for e in board.snapshot(7.0)] == ["a", "c"]


def test_many_threads_one_board():
    board = LiveBoard(max_entries=50)

    def work(t):
        for n in range(200):
            host = f"h{t}-{n % 20}"
            board.planned(host, "s", None, float(n))
            board.progress(host, "image", n, 200, float(n))
            if n % 3 == 0:
                board.finished(host, "ok", None, None, float(n))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    snap = board.snapshot(200.0)
    assert len(snap) == 50 and len({e.host for e in snap}) == 50
