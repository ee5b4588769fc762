"""The server's board of BitTorrent swarms: members, leases, seeds first, keys; bad join requests."""

import json
import random

import pytest

from ais.server.swarm import SwarmBoard, SwarmRequestError, parse_request

IMAGE, OTHER = "a" * 64, "b" * 64


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def board(**kw):
    clock = Clock()
    return SwarmBoard(clock=clock, rng=random.Random(1), **kw), clock


def test_a_member_learns_the_others_never_itself():
    b, _ = board()
    assert b.join(IMAGE, "h1", "198.51.100.2:6881", False).peers == ()
    assert b.join(IMAGE, "h2", "198.51.100.3:6881", False).peers == ("198.51.100.2:6881",)
    assert set(b.join(IMAGE, "h1", "198.51.100.2:6881", False).peers) == {"198.51.100.3:6881"}
    assert b.join(OTHER, "h3", "198.51.100.4:6881", False).peers == ()  # another image, another swarm


def test_a_host_joining_again_replaces_its_address():
    b, _ = board()
    b.join(IMAGE, "h1", "198.51.100.2:6881", False)
    b.join(IMAGE, "h1", "198.51.100.2:7000", False)  # restarted: a new port
    assert b.join(IMAGE, "h2", "198.51.100.3:6881", False).peers == ("198.51.100.2:7000",)


def test_seeds_come_first_and_answers_are_capped():
    b, _ = board(max_peers=3)
    for i in range(6):
        b.join(IMAGE, f"h{i}", f"198.51.100.{10 + i}:6881", done=i in (2, 4))
    peers = b.join(IMAGE, "new", "198.51.100.99:6881", False).peers
    assert len(peers) == 3 and set(peers[:2]) == {"198.51.100.12:6881", "198.51.100.14:6881"}


def test_a_member_that_stops_joining_falls_off_after_its_lease():
    b, clock = board(lease=30)
    b.join(IMAGE, "h1", "198.51.100.2:6881", False)
    clock.now += 29
    assert b.join(IMAGE, "h2", "198.51.100.3:6881", False).peers == ("198.51.100.2:6881",)
    clock.now += 2  # h1's lease ran out, h2's did not
    assert b.join(IMAGE, "h3", "198.51.100.4:6881", False).peers == ("198.51.100.3:6881",)
    assert set(b.members(IMAGE)) == {"h2", "h3"}


def test_all_done_only_when_every_current_member_is_done():
    b, clock = board(lease=30)
    assert b.join(IMAGE, "h1", "198.51.100.2:6881", True).all_done  # alone and done
    assert not b.join(IMAGE, "h2", "198.51.100.3:6881", False).all_done
    assert not b.join(IMAGE, "h1", "198.51.100.2:6881", True).all_done
    assert b.join(IMAGE, "h2", "198.51.100.3:6881", True).all_done
    clock.now += 20
    b.join(IMAGE, "h3", "198.51.100.4:6881", False)
    clock.now += 15  # h1, h2 gone; h3 is not done
    assert not b.join(IMAGE, "h3", "198.51.100.4:6881", False).all_done


def test_each_swarm_has_one_secret_key_for_its_web_seed():
    b, clock = board(lease=1)
    key = b.join(IMAGE, "h1", "198.51.100.2:6881", False).key
    other = b.join(OTHER, "h1", "198.51.100.2:6881", False).key
    assert len(key) == 32 and key != other
    clock.now += 100  # even once everyone left, the key stays the image's for this server's life
    assert b.join(IMAGE, "h2", "198.51.100.3:6881", False).key == key
    assert b.key_image(key) == IMAGE and b.key_image(other) == OTHER
    assert b.key_image("0" * 32) is None and b.key_image(IMAGE) is None


def test_web_seed_bytes_are_counted_per_image():
    b, _ = board()
    b.join(IMAGE, "h1", "198.51.100.2:6881", False)
    b.add_sent(IMAGE, 100)
    b.add_sent(IMAGE, 23)
    b.add_sent(OTHER, 5)  # no swarm: not counted
    assert b.stats() == {IMAGE: {"web_seed_bytes": 123, "members": 1}}


def req(**fields):
    return json.dumps({"image": IMAGE, "listen": "198.51.100.2:6881", "done": False, **fields}).encode()


BAD_REQUESTS = [
    ("not JSON", b"{", "JSON object"),
    ("a list", b"[]", "swarm request is"),
    ("a field missing", json.dumps({"image": IMAGE, "listen": "198.51.100.2:1"}).encode(), "swarm request is"),
    ("a field too many", req(extra=1), "swarm request is"),
    ("image not an id", req(image="../../etc/passwd"), "image must be"),
    ("image upper case", req(image="A" * 64), "image must be"),
    ("done not a bool", req(done="yes"), "done must be"),
    ("listen without port", req(listen="198.51.100.2"), "IPv4-ADDRESS:PORT"),
    ("listen a name", req(listen="peer.example:6881"), "IPv4-ADDRESS:PORT"),
    ("listen not a string", req(listen=6881), "IPv4-ADDRESS:PORT"),
    ("listen octet too big", req(listen="198.51.100.256:6881"), "not an IPv4 address"),
    ("port zero", req(listen="198.51.100.2:0"), "not 1..65535"),
    ("port too big", req(listen="198.51.100.2:70000"), "not 1..65535"),
    ("loopback", req(listen="127.0.0.1:6881"), "other hosts can reach"),
    ("unspecified", req(listen="0.0.0.0:6881"), "other hosts can reach"),
    ("multicast", req(listen="239.1.2.3:6881"), "other hosts can reach"),
    ("broadcast", req(listen="255.255.255.255:6881"), "other hosts can reach"),
    ("too long", req(listen="198.51.100.2:6881" + " " * 5000), "at most"),
]


@pytest.mark.parametrize("case, body, words", BAD_REQUESTS, ids=[c[0] for c in BAD_REQUESTS])
def test_bad_join_requests_are_refused_with_the_reason(case, body, words):
    with pytest.raises(SwarmRequestError, match=words):
        parse_request(body)


def test_a_good_request_parses():
    parsed = parse_request(req(done=True))
    assert (parsed.image, parsed.listen, parsed.done) == (IMAGE, "198.51.100.2:6881", True)
