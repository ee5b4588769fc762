"""In-place updates under faults, on a small farm of real agents (aislab.update_farm): forged or
misdirected notices, a package whose bytes are not the signed ones, the server down, a host switched
off while rpm runs its transaction."""

import json
import re

import pytest

from aislab.update_farm import UpdateFarm
from ais.updates.records import as_dict, parse_update
from ais.updates.signing import load_or_make_key, sign
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

pytestmark = [pytest.mark.root, pytest.mark.rpm, pytest.mark.slow]
OPTIONS = ("--idle-seconds", "0.5", "--sample-seconds", "0.25", "--sync-seconds", "1", "--refresh-seconds", "3")
TIMEOUT = 120  # a safety net, never a moment the test relies on


@pytest.fixture
def farm(tmp_path, repo_dir):
    with UpdateFarm(tmp_path, repo_dir, hosts=4, agent_options=OPTIONS) as farm:
        yield farm


def _applied(farm, i, seq):
    return farm.results().get((farm.names[i], seq), {}).get("state") == "applied"


@pytest.fixture(scope="module")
def notice_farm(tmp_path_factory, repo_dir):
    """h01 (rack-a) running, with one genuine update applied: the notices below are forged from it."""
    with UpdateFarm(tmp_path_factory.mktemp("notices"), repo_dir, hosts=4, agent_options=OPTIONS) as farm:
        farm.start_agent(0)
        real = parse_update(farm.submit("all", [farm.op("upd-01", "2.0")])["update"])
        farm.wait(lambda: _applied(farm, 0, real.seq), TIMEOUT, "h01 to apply a genuine update")
        assert real.ops[0].nevra in farm.installed(0)
        yield farm, as_dict(real)


@pytest.mark.parametrize("case, expect", [
    ("forged sequence number", "signature is not the site update key's"),
    ("another key", "signature is not the site update key's"),
    ("another group", "is for group rack-b"),
    ("unsigned", "is not signed"),
    ("malformed", "not a valid document"),
])
def test_bad_notices_are_refused_and_nothing_is_installed(notice_farm, case, expect):
    farm, real = notice_farm
    before, refusals = farm.installed(0), farm.log(0).count("refused an update from h04")
    op = farm.op("upd-02", "3.0")
    if case == "forged sequence number":
        doc = {**real, "seq": 99, "ops": [op]}
    elif case == "another key":
        doc = as_dict(sign(parse_update({**real, "seq": 99, "ops": [op], "signature": None}),
                           Ed25519PrivateKey.generate()))
    elif case == "another group":
        doc = farm.submit("rack-b", [op])["update"]  # genuine, signed, but not h01's group
    elif case == "unsigned":
        doc = {**real, "seq": 99, "signature": None}
    else:
        doc = {**real, "seq": "ninety-nine"}
    status, text = farm.post(farm.address(0), "/v1/agent/notify", {"updates": [doc], "from": "h04", "tree": None})
    assert status == 403 and expect in text, (status, text)
    stats = json.loads(farm.post(farm.address(0), "/v1/agent/stats", None)[1])
    assert 99 not in stats["known"] and not set(stats["known"]) - {real["seq"]}
    assert farm.installed(0) == before
    assert farm.log(0).count("refused an update from h04") == refusals + 1


def test_a_package_with_other_bytes_is_refused_and_the_update_fails_cleanly(farm):
    farm.start_agent(0)
    before = None
    farm.wait(lambda: farm.post(farm.address(0), "/v1/agent/sync", {"groups": ["all"], "have": []})[0] == 200,
              TIMEOUT, "h01's agent to answer")
    before = farm.installed(0)
    op = {**farm.op("upd-03", "2.0"), "sha256": "0" * 64}  # signed by the site, but not these bytes
    seq = farm.submit("all", [op])["update"]["seq"]
    farm.wait(lambda: farm.results().get((farm.names[0], seq), {}).get("state") == "failed", TIMEOUT,
              "h01 to report the update failed")
    assert farm.installed(0) == before
    assert re.search(r"refused upd-03-2.0-1.noarch.rpm from server: .* the update says", farm.log(0)), farm.log(0)


def test_server_down_known_hosts_go_on_from_peers_new_hosts_wait(farm):
    for i in range(3):
        farm.start_agent(i)
    # each knows where the others are (a layout from before they all registered is refreshed)
    farm.wait(lambda: all(farm.knows_peers(i, {0, 1, 2} - {i}) for i in range(3)), TIMEOUT,
              "three agents to know each other's addresses")
    farm.stop_agent(1)
    farm.stop_agent(2)
    seq = farm.submit("all", [farm.op("upd-04", "2.0")])["update"]["seq"]
    farm.wait(lambda: _applied(farm, 0, seq), TIMEOUT, "h01 to apply the update")
    farm.stop_server()
    farm.start_agent(1)
    farm.start_agent(2)
    farm.start_agent(3)  # h04 never met the server
    nevra = farm.updates.nevra("upd-04", "2.0")
    farm.wait(lambda: nevra in farm.installed(1) and nevra in farm.installed(2), TIMEOUT,
              "h02 and h03 to install the update from their peer while the server is down")
    for i in (1, 2):
        assert "the server is unreachable" in farm.log(i)
        assert re.search(rf"learned update {seq} \(group all\) from h0\d", farm.log(i)), farm.log(i)
    farm.wait(lambda: "waiting for the server" in farm.log(3), TIMEOUT, "h04 to say it waits for the server")
    assert nevra not in farm.installed(3)
    farm.start_server()
    farm.wait(lambda: all(_applied(farm, i, seq) for i in range(4)), TIMEOUT,
              "every host's result to reach the server once it is back")
    assert nevra in farm.installed(3)


def test_a_notice_with_one_forged_update_keeps_none_of_it(notice_farm):
    """Before, the good updates of a partly forged notice were kept although the notice was refused."""
    farm, real = notice_farm
    key = load_or_make_key(farm.key_path)  # a genuine update h01 has not heard of (seq 500), and a forged one
    good = as_dict(sign(parse_update({**real, "seq": 500, "signature": None}), key))
    forged = {**good, "seq": 501}
    status, text = farm.post(farm.address(0), "/v1/agent/notify", {"updates": [good, forged], "from": "h04",
                                                                    "tree": None})
    assert status == 403, (status, text)
    stats = json.loads(farm.post(farm.address(0), "/v1/agent/stats", None)[1])
    assert 500 not in stats["known"] and 501 not in stats["known"]
