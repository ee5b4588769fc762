"""ais.server.update_routes.parse_status: an agent's status body, checked field by field."""

import json

import pytest

from ais.server.answers import HttpError
from ais.server.update_routes import parse_status

GOOD = {"address": "10.0.0.21:8472", "online": True,
        "results": [{"seq": 3, "state": "applied", "message": "", "at": 12.5}, {"seq": 4, "state": "waiting"}],
        "gone": ["web02"], "stats": {"anything": 1}}


def body(**changes):
    doc = dict(GOOD)
    doc.update(changes)
    return json.dumps({k: v for k, v in doc.items() if v is not ...}).encode()


BAD = {
    "not JSON": b"{",
    "empty": b"",
    "not an object": b"[1, 2]",
    "a string": b'"status"',
    "missing address": body(address=...),
    "address not a string": body(address=8472),
    "empty address": body(address=""),
    "address too long": body(address="a" * 65),
    "missing online": body(online=...),
    "online not bool": body(online="yes"),
    "online a number": body(online=1),
    "results not a list": body(results={"seq": 1}),
    "gone not a list": body(gone="web02"),
    "result not an object": body(results=[3]),
    "result with unknown state": body(results=[{"seq": 1, "state": "done"}]),
    "result without state": body(results=[{"seq": 1}]),
    "seq not int": body(results=[{"seq": "1", "state": "applied"}]),
    "seq a float": body(results=[{"seq": 1.5, "state": "applied"}]),
    "seq a bool": body(results=[{"seq": True, "state": "applied"}]),
    "seq 0": body(results=[{"seq": 0, "state": "applied"}]),
    "at a bool": body(results=[{"seq": 1, "state": "failed", "at": True}]),
    "seq missing": body(results=[{"state": "applied"}]),
    "message not a string": body(results=[{"seq": 1, "state": "failed", "message": 5}]),
    "at not a number": body(results=[{"seq": 1, "state": "failed", "at": "now"}]),
    "gone with a non host name": body(gone=["Web_02"]),
    "gone with a number": body(gone=[2]),
    "gone with a path": body(gone=["../x"]),
}


@pytest.mark.parametrize("data", BAD.values(), ids=BAD.keys())
def test_bad_status_is_400(data):
    with pytest.raises(HttpError) as caught:
        parse_status(data)
    assert caught.value.status == 400


def test_good_status():
    assert parse_status(body()) == {"address": "10.0.0.21:8472", "online": True, "results": GOOD["results"],
                                    "gone": ["web02"]}


def test_minimal_status():
    assert parse_status(b'{"address": "h:1", "online": false}') == {"address": "h:1", "online": False,
                                                                   "results": [], "gone": []}
