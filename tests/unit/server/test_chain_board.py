"""The chain board (ais.server.chain) and the chain request's checks (ais.server.routes): order, gap
closing, the gather window, leases, leaving, and malformed requests. The clock is given, never slept on."""

import json
import logging

import pytest

from ais.server.chain import ChainBoard
from ais.server.answers import HttpError
from ais.server.peer_routes import parse_chain_request

IMAGE, OTHER = "a" * 64, "b" * 64


def board_of(*hosts, gather=2.0, lease=600.0, image=IMAGE) -> ChainBoard:
    board = ChainBoard(gather=gather, lease=lease)
    for i, host in enumerate(hosts):
        board.join(image, host, f"10.0.0.{i + 1}:900{i}", now=100.0 + i * 0.1)
    return board


def test_joins_form_a_chain_in_order_behind_the_server():
    board = board_of("n1", "n2", "n3")
    answers = [board.answer(IMAGE, h) for h in ("n1", "n2", "n3")]
    assert [a["upstream"] for a in answers] == [None, "10.0.0.1:9000", "10.0.0.2:9001"]
    assert [a["position"] for a in answers] == [0, 1, 2]
    assert [a["downstream"] for a in answers] == [True, True, False]
    keys = {a["key"] for a in answers}
    assert len(keys) == 1 and len(keys.pop()) == 64  # one key per chain, 32 random bytes in hex


def test_each_image_has_its_own_chain_and_key():
    board = board_of("n1", "n2")
    board.join(OTHER, "n2", "10.0.0.2:9001", now=100.0)
    assert board.answer(OTHER, "n2")["upstream"] is None  # the first of OTHER's chain
    assert board.answer(OTHER, "n2")["key"] != board.answer(IMAGE, "n2")["key"]


def test_a_lost_upstream_is_skipped_and_the_gap_closes(caplog):
    board = board_of("n1", "n2", "n3", "n4")
    with caplog.at_level(logging.INFO, logger="ais.server.chain"):
        board.join(IMAGE, "n3", "10.0.0.3:9002", lost="10.0.0.2:9001", now=110.0)
    assert board.answer(IMAGE, "n3")["upstream"] == "10.0.0.1:9000"
    assert board.answer(IMAGE, "n4")["upstream"] == "10.0.0.3:9002"  # behind the gap nothing changes
    assert board.answer(IMAGE, "n1")["downstream"] is True
    assert [alive for _, _, alive in board.members(IMAGE)] == [True, False, True, True]
    lines = [r.getMessage() for r in caplog.records]
    assert any("n3 reports its upstream n2" in line for line in lines)
    assert any("gap closed: n3 now follows n1" in line for line in lines)


def test_losing_the_head_makes_the_next_one_fetch_from_the_server():
    board = board_of("n1", "n2", "n3")
    board.join(IMAGE, "n2", "10.0.0.2:9001", lost="10.0.0.1:9000", now=110.0)
    assert board.answer(IMAGE, "n2")["upstream"] is None
    board.join(IMAGE, "n3", "10.0.0.3:9002", lost="10.0.0.2:9001", now=111.0)
    assert board.answer(IMAGE, "n3")["upstream"] is None


def test_a_lost_report_about_someone_else_than_the_upstream_is_ignored():
    """A stale report (the asker already follows someone else) must not kill a live member."""
    board = board_of("n1", "n2", "n3")
    board.join(IMAGE, "n3", "10.0.0.3:9002", lost="10.0.0.1:9000", now=110.0)
    assert [alive for _, _, alive in board.members(IMAGE)] == [True, True, True]
    assert board.answer(IMAGE, "n3")["upstream"] == "10.0.0.2:9001"


def test_a_member_marked_lost_stays_out_even_when_it_asks_again():
    board = board_of("n1", "n2", "n3")
    board.join(IMAGE, "n3", "10.0.0.3:9002", lost="10.0.0.2:9001", now=110.0)
    board.join(IMAGE, "n2", "10.0.0.2:9001", lost="10.0.0.1:9000", now=111.0)  # n2 was only slow
    assert board.answer(IMAGE, "n2")["upstream"] is None  # from the server: n1 is n3's now
    assert board.answer(IMAGE, "n3")["upstream"] == "10.0.0.1:9000"
    assert [alive for _, _, alive in board.members(IMAGE)] == [True, False, True]


def test_a_late_joiner_goes_to_the_tail_and_a_restarted_host_leaves_its_old_place():
    board = board_of("n1", "n2", "n3")
    assert board.join(IMAGE, "n4", "10.0.0.4:9003", now=200.0) == 200.0  # after the window: no wait
    assert board.answer(IMAGE, "n4")["upstream"] == "10.0.0.3:9002"
    board.join(IMAGE, "n2", "10.0.0.2:9555", now=201.0)  # n2 restarted: a fresh join
    assert board.answer(IMAGE, "n2") == {"upstream": "10.0.0.4:9003", "key": board.answer(IMAGE, "n1")["key"],
                                         "position": 4, "downstream": False}
    assert board.answer(IMAGE, "n3")["upstream"] == "10.0.0.1:9000"


def test_answers_wait_for_the_gather_window_of_the_first_join():
    board = ChainBoard(gather=2.0)
    assert board.join(IMAGE, "n1", "10.0.0.1:9000", now=50.0) == 52.0
    assert board.join(IMAGE, "n2", "10.0.0.2:9000", now=51.5) == 52.0
    assert board.join(IMAGE, "n3", "10.0.0.3:9000", now=53.0) == 53.0
    assert ChainBoard(gather=0.0).join(IMAGE, "n1", "10.0.0.1:9000", now=7.0) == 7.0


def test_a_chain_whose_members_all_left_is_forgotten_and_the_next_gets_a_new_key():
    board = board_of("n1", "n2")
    key = board.answer(IMAGE, "n1")["key"]
    board.leave(IMAGE, "n1", now=120.0)
    assert board.answer(IMAGE, "n2")["upstream"] is None  # n1 forwards nothing more
    board.leave(IMAGE, "n2", now=121.0)
    assert board.members(IMAGE) == []
    board.join(IMAGE, "n3", "10.0.0.3:9002", now=130.0)
    assert board.answer(IMAGE, "n3")["upstream"] is None and board.answer(IMAGE, "n3")["key"] != key


def test_members_not_heard_of_for_the_lease_are_dropped():
    board = board_of("n1", "n2", lease=60.0)
    board.join(IMAGE, "n2", "10.0.0.2:9001", lost="10.0.0.9:1", now=150.0)  # n2 is heard of; n1 is not
    board.join(OTHER, "x", "10.0.0.9:9000", now=170.0)  # any call expires leases
    assert [alive for _, _, alive in board.members(IMAGE)] == [False, True]
    board.join(OTHER, "x", "10.0.0.9:9000", now=300.0)
    assert board.members(IMAGE) == []  # everyone gone: forgotten


def test_an_unknown_host_reporting_a_loss_joins_at_the_tail():
    """The server restarted and forgot its chains: a report of a loss is taken as a join."""
    board = board_of("n1")
    board.join(IMAGE, "n9", "10.0.0.9:9000", lost="10.0.0.5:1", now=150.0)
    assert board.answer(IMAGE, "n9")["upstream"] == "10.0.0.1:9000"


def test_a_host_never_in_the_chain_is_sent_to_the_server():
    assert ChainBoard().answer(IMAGE, "nobody") == {"upstream": None, "key": None, "position": 0,
                                                    "downstream": False}


GOOD = {"image": IMAGE, "listen": "10.0.0.1:9000", "lost": None}

BAD_REQUESTS = [
    ("not json", b"{", "not JSON"),
    ("an array", b"[]", "must be a JSON object"),
    ("unknown field", json.dumps({**GOOD, "upstream": "x"}).encode(), "unknown field 'upstream'"),
    ("no image", json.dumps({"listen": "10.0.0.1:9000"}).encode(), "image must be an image id"),
    ("short image", json.dumps({**GOOD, "image": "abc"}).encode(), "image must be an image id"),
    ("upper-case image", json.dumps({**GOOD, "image": "A" * 64}).encode(), "image must be an image id"),
    ("no listen", json.dumps({"image": IMAGE}).encode(), "listen must be"),
    ("listen without port", json.dumps({**GOOD, "listen": "10.0.0.1"}).encode(), "listen must be"),
    ("listen port 0", json.dumps({**GOOD, "listen": "10.0.0.1:0"}).encode(), "listen must be"),
    ("listen port too big", json.dumps({**GOOD, "listen": "10.0.0.1:70000"}).encode(), "listen must be"),
    ("listen not an address", json.dumps({**GOOD, "listen": "300.0.0.1:80"}).encode(), "listen must be"),
    ("listen a number", json.dumps({**GOOD, "listen": 9000}).encode(), "listen must be"),
    ("lost a name", json.dumps({**GOOD, "lost": "n1:9000"}).encode(), "lost must be null"),
    ("lost a list", json.dumps({**GOOD, "lost": ["10.0.0.1:9000"]}).encode(), "lost must be null"),
    ("leave a string", json.dumps({**GOOD, "leave": "yes"}).encode(), "leave must be true or false"),
]


@pytest.mark.parametrize("body, message", [c[1:] for c in BAD_REQUESTS], ids=[c[0] for c in BAD_REQUESTS])
def test_malformed_chain_requests_get_a_clear_400(body, message):
    with pytest.raises(HttpError) as err:
        parse_chain_request(body)
    assert err.value.status == 400 and message in err.value.message


def test_a_good_chain_request_is_read_with_its_defaults():
    assert parse_chain_request(json.dumps(GOOD).encode()) == {**GOOD, "leave": False}
    assert parse_chain_request(json.dumps({**GOOD, "lost": "10.0.0.2:1", "leave": True}).encode())["leave"] is True


# ------------------------------------------------------------ expected hosts end the gather early

IMG = "e" * 64


def test_the_chain_starts_when_every_expected_host_has_joined():
    board = ChainBoard(gather=30.0, quiet=0.0)
    board.expect(IMG, "a", now=0.0)
    board.expect(IMG, "b", now=0.5)
    assert board.join(IMG, "a", "10.0.0.1:9000", now=1.0) == 31.0  # b is still to come
    assert board.ready_at(IMG, now=2.0) == 31.0
    assert board.join(IMG, "b", "10.0.0.2:9000", now=3.0) == 3.0  # the last one expected
    assert board.ready_at(IMG, now=3.5) == 3.5  # a's answer goes too
    assert [board.answer(IMG, h)["upstream"] for h in ("a", "b")] == [None, "10.0.0.1:9000"]


def test_an_expected_host_that_never_joins_holds_the_chain_only_for_the_gather_window():
    board = ChainBoard(gather=30.0, quiet=0.0)
    board.expect(IMG, "a", now=0.0)
    board.expect(IMG, "dead", now=0.0)
    assert board.join(IMG, "a", "10.0.0.1:9000", now=1.0) == 31.0
    assert board.ready_at(IMG, now=20.0) == 31.0


def test_an_old_expectation_is_forgotten():
    board = ChainBoard(gather=30.0, expect_for=60.0, quiet=0.0)
    board.expect(IMG, "a", now=0.0)
    board.expect(IMG, "gone", now=0.0)  # its plan is 100 s old when the chain starts
    board.expect(IMG, "a", now=99.0)
    assert board.join(IMG, "a", "10.0.0.1:9000", now=100.0) == 100.0


def test_without_expected_hosts_the_gather_window_decides():
    board = ChainBoard(gather=30.0, quiet=0.0)
    assert board.join(IMG, "a", "10.0.0.1:9000", now=1.0) == 31.0
    assert board.ready_at(IMG, now=5.0) == 31.0


def test_an_answered_join_is_no_longer_expected_by_the_next_chain():
    board = ChainBoard(gather=30.0, lease=10.0, quiet=0.0)
    board.expect(IMG, "a", now=0.0)
    assert board.join(IMG, "a", "10.0.0.1:9000", now=1.0) == 1.0
    board.answer(IMG, "a")
    board.leave(IMG, "a", now=40.0)  # the chain is forgotten
    board.expect(IMG, "b", now=41.0)
    assert board.join(IMG, "b", "10.0.0.2:9000", now=42.0) == 42.0  # a is not waited for


def test_an_early_start_waits_a_quiet_moment_after_the_last_plan():
    """db01 got its plan and joined before the others asked for theirs (seen in a fresh-clone run):
    the chain must not start with it alone the moment it joins."""
    board = ChainBoard(gather=60.0, quiet=3.0)
    board.expect(IMG, "a", now=0.0)
    assert board.join(IMG, "a", "10.0.0.1:9000", now=1.0) == 3.0  # all expected so far, but quiet until 3.0
    board.expect(IMG, "b", now=2.0)  # b's plan: b is waited for
    assert board.ready_at(IMG, now=2.5) == 61.0
    assert board.join(IMG, "b", "10.0.0.2:9000", now=4.0) == 5.0  # 3 s after b's plan
    assert board.ready_at(IMG, now=5.5) == 5.5
