"""ais.agent.peers: the urgent distribution tree and who is online in a group."""

import pytest

from ais.agent.peers import Members, tree_children

TREE = ["r", "a", "b", "c", "d", "e", "f"]


@pytest.mark.parametrize("me, children", [
    ("r", ["a", "b"]), ("a", ["c", "d"]), ("b", ["e", "f"]),
    ("c", []), ("f", []), ("stranger", []),
])
def test_tree_children(me, children):
    assert tree_children(TREE, me) == children


def test_tree_children_of_an_uneven_tree():
    assert tree_children(["r", "a", "b", "c"], "a") == ["c"]
    assert tree_children([], "r") == []


LAYOUT = {"members": {
    "me": {"address": "10.0.0.1:8472", "online": True, "groups": ["rack-a", "all"]},
    "up": {"address": "10.0.0.2:8472", "online": True, "groups": ["rack-a", "all"]},
    "silent": {"address": "10.0.0.3:8472", "groups": ["rack-a"]},  # online not said: online
    "down": {"address": "10.0.0.4:8472", "online": False, "groups": ["rack-a"]},
    "never": {"address": None, "online": True, "groups": ["rack-a"]},
    "other": {"address": "10.0.0.5:8472", "online": True, "groups": ["rack-b", "all"]},
}}


def test_online_excludes_self_offline_and_other_groups():
    members = Members(LAYOUT, "me")
    assert members.online("rack-a") == ["silent", "up"]
    assert members.online("all") == ["other", "up"]
    assert members.online("rack-c") == []
    assert members.of_group("rack-a") == ["down", "never", "silent", "up"]


def test_gone_and_back():
    members = Members(LAYOUT, "me")
    members.gone("up")
    assert members.online("rack-a") == ["silent"]
    assert members.online("all") == ["other"]
    members.back("up")
    assert members.online("rack-a") == ["silent", "up"]
    members.back("never-gone")  # no error


def test_random_peers():
    members = Members(LAYOUT, "me")
    assert sorted(members.random_peers("rack-a", 5)) == ["silent", "up"]
    assert len(members.random_peers("rack-a", 1)) == 1
    assert members.random_peers("rack-a", 5, exclude=("up",)) == ["silent"]
    assert members.random_peers("rack-c", 3) == []


def test_address():
    members = Members(LAYOUT, "me")
    assert members.address("up") == "10.0.0.2:8472"
    assert members.address("stranger") is None
    assert Members({}, "me").online("rack-a") == []
