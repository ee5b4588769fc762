"""The reboot window (ais.server.window) on a fake clock: each case is a script of calls and what each answers.

A script step is (call, host, now, expected): call "admit" expects (admitted, again, holders after);
"release" expects whether the host held a place; "expire" expects the hosts whose lease ran out;
"report" stands for what routes.py does on a report of that status (ok/failed release, rebooting/up
do not) and expects the holders after it.
"""

import pytest

from ais.server.window import Window

LEASE = 100.0

CASES = [
    ("admit up to N, refuse N+1", 2, [
        ("admit", "a", 0, (True, False, ("a",))),
        ("admit", "b", 1, (True, False, ("a", "b"))),
        ("admit", "c", 2, (False, False, ("a", "b"))),
    ]),
    ("a holder asking again keeps its place, even when the window is full", 1, [
        ("admit", "a", 0, (True, False, ("a",))),
        ("admit", "a", 5, (True, True, ("a",))),
        ("admit", "b", 6, (False, False, ("a",))),
    ]),
    ("an ok report frees a place for the next host", 1, [
        ("admit", "a", 0, (True, False, ("a",))),
        ("admit", "b", 1, (False, False, ("a",))),
        ("report:ok", "a", 2, ()),
        ("admit", "b", 3, (True, False, ("b",))),
    ]),
    ("a failed report frees a place", 1, [
        ("admit", "a", 0, (True, False, ("a",))),
        ("report:failed", "a", 2, ()),
        ("admit", "b", 3, (True, False, ("b",))),
    ]),
    ("rebooting and up reports do not touch the window", 1, [
        ("admit", "a", 0, (True, False, ("a",))),
        ("report:rebooting", "a", 1, ("a",)),
        ("report:up", "a", 2, ("a",)),
        ("admit", "b", 3, (False, False, ("a",))),
    ]),
    ("a report from a host without a place changes nothing", 1, [
        ("admit", "a", 0, (True, False, ("a",))),
        ("release", "b", 1, False),
        ("release", "a", 2, True),
        ("release", "a", 3, False),
    ]),
    ("a lease runs out: the dead host's place goes to the next", 1, [
        ("admit", "a", 0, (True, False, ("a",))),
        ("admit", "b", LEASE - 1, (False, False, ("a",))),
        ("expire", None, LEASE - 0.5, ()),
        ("expire", None, LEASE, ("a",)),
        ("admit", "b", LEASE, (True, False, ("b",))),
    ]),
    ("admit frees expired places itself", 1, [
        ("admit", "a", 0, (True, False, ("a",))),
        ("admit", "b", LEASE + 1, (True, False, ("b",))),
    ]),
    ("asking again renews the lease", 1, [
        ("admit", "a", 0, (True, False, ("a",))),
        ("admit", "a", LEASE - 1, (True, True, ("a",))),
        ("expire", None, LEASE + 1, ()),
        ("admit", "b", LEASE + 1, (False, False, ("a",))),
        ("expire", None, 2 * LEASE - 1, ("a",)),
    ]),
    ("N=0: no limit", 0, [
        ("admit", "a", 0, (True, False, ("a",))),
        ("admit", "b", 0, (True, False, ("a", "b"))),
        ("admit", "c", 0, (True, False, ("a", "b", "c"))),
        ("report:ok", "b", 1, ("a", "c")),
    ]),
]


def step(window: Window, call: str, host, now: float):
    if call == "admit":
        got = window.admit(host, now)
        return got.admitted, got.again, got.holders
    if call == "release":
        return window.release(host)
    if call == "expire":
        return window.expire(now)
    status = call.split(":", 1)[1]  # what routes.Routes.report does with the window
    if status in ("ok", "failed"):
        window.release(host)
    return window.holders()


@pytest.mark.parametrize("size, script", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_window(size, script):
    window = Window(size, LEASE)
    for n, (call, host, now, expected) in enumerate(script):
        assert step(window, call, host, now) == expected, f"step {n}: {call} {host} at {now}"


def test_an_admission_says_which_leases_ran_out():
    window = Window(2, LEASE)
    window.admit("a", 0)
    window.admit("b", 10)
    got = window.admit("c", LEASE + 5)
    assert got.expired == ("a",) and got.admitted and got.holders == ("b", "c")


def test_retry_after_is_the_base_plus_a_stable_per_host_share():
    window = Window(1, LEASE)
    waits = {host: window.retry_after(host, 10) for host in (f"node{i:02d}" for i in range(40))}
    assert all(10 <= w <= 15 for w in waits.values())
    assert len(set(waits.values())) > 1  # a refused rack does not retry in lock-step
    assert waits == {host: window.retry_after(host, 10) for host in waits}  # the same host, the same wait
    assert window.retry_after("node01", 1) == 1


@pytest.mark.parametrize("size, lease", [(-1, LEASE), (1, 0), (1, -5)])
def test_a_window_that_cannot_work_is_refused(size, lease):
    with pytest.raises(ValueError):
        Window(size, lease)
