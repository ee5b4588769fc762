"""ais.updates.store: sequence numbers (unique across submitters), filters, results and agents."""

import threading

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ais.updates.records import Op, UpdateRefused
from ais.updates.signing import public_hex, verify
from ais.updates.store import UpdateStore

SHA = "ab" * 32
KEY = Ed25519PrivateKey.generate()
OPS = (Op(action="install", name="bash", nevra="bash-0:5.2-1.x86_64", file="bash-5.2-1.x86_64.rpm", size=10,
          sha256=SHA),)


@pytest.fixture
def store(tmp_path):
    return UpdateStore(tmp_path / "history.sqlite")


def test_submit_numbers_from_one(store):
    seqs = [store.submit("rack-a", OPS, KEY).seq for _ in range(3)]
    assert seqs == [1, 2, 3]
    assert [u.seq for u in store.updates()] == [1, 2, 3]


def test_submit_refuses_bad_ops_and_stores_nothing(store):
    with pytest.raises(UpdateRefused):
        store.submit("rack-a", (Op(action="erase", name="a"), Op(action="erase", name="a")), KEY)
    assert store.updates() == []


def test_concurrent_submitters_never_share_a_seq(tmp_path):
    stores = [UpdateStore(tmp_path / "history.sqlite"), UpdateStore(tmp_path / "history.sqlite")]
    got, errors = [], []
    lock = threading.Lock()

    def submit(store):
        try:
            for _ in range(10):
                seq = store.submit("rack-a", OPS, KEY).seq
                with lock:
                    got.append(seq)
        except Exception as err:  # reported below: a thread's exception would be lost
            errors.append(err)

    threads = [threading.Thread(target=submit, args=(stores[i % 2],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(got) == list(range(1, 41))
    assert [u.seq for u in stores[0].updates()] == list(range(1, 41))


def test_updates_filter_by_group_and_after(store):
    for group in ("rack-a", "rack-b", "all", "rack-a"):
        store.submit(group, OPS, KEY)
    assert [u.seq for u in store.updates({"rack-a"})] == [1, 4]
    assert [u.seq for u in store.updates({"rack-b", "all"})] == [2, 3]
    assert [u.seq for u in store.updates(after=2)] == [3, 4]
    assert store.updates({"nobody"}) == []


def test_update_by_seq(store):
    store.submit("rack-a", OPS, KEY, urgent=True, origin="me")
    store.submit("rack-b", OPS, KEY)
    first = store.update(1)
    assert (first.seq, first.group, first.urgent, first.origin) == (1, "rack-a", True, "me")
    assert store.update(2).group == "rack-b"
    assert store.update(3) is None


def test_stored_update_verifies_with_the_public_key(store):
    store.submit("rack-a", OPS, KEY)
    stored = store.update(1)
    assert verify(stored, public_hex(KEY)) == stored
    with pytest.raises(UpdateRefused):
        verify(stored, public_hex(Ed25519PrivateKey.generate()))


def test_record_replaces_a_hosts_state_for_a_seq(store):
    store.record("web01", [{"seq": 1, "state": "waiting", "message": "busy", "at": 10.0}])
    store.record("web02", [{"seq": 1, "state": "applied", "at": 11.0}])
    store.record("web01", [{"seq": 1, "state": "applied", "at": 12.0}, {"seq": 2, "state": "failed",
                                                                        "message": "rpm said no", "at": 13.0}])
    rows = [(r["host"], r["seq"], r["state"], r["message"], r["at"]) for r in store.results()]
    assert rows == [("web01", 1, "applied", "", 12.0), ("web02", 1, "applied", "", 11.0),
                    ("web01", 2, "failed", "rpm said no", 13.0)]
    assert [r["host"] for r in store.results(seq=1)] == ["web01", "web02"]
    assert [r["seq"] for r in store.results(host="web01")] == [1, 2]
    assert [r["state"] for r in store.results(seq=2, host="web01")] == ["failed"]


def test_set_agent_and_agents(store):
    assert store.agents() == {}
    store.set_agent("web01", "10.0.0.1:8472", True)
    store.set_agent("web02", "10.0.0.2:8472", True)
    store.set_agent("web02", None, False)  # a peer says it is away: keep its address
    store.set_agent("web03", None, False)  # never seen: nothing to update
    agents = store.agents()
    assert {h: (a["address"], a["online"]) for h, a in agents.items()} == {
        "web01": ("10.0.0.1:8472", True), "web02": ("10.0.0.2:8472", False)}
    store.set_agent("web02", "10.0.0.9:8472", True)
    assert store.agents()["web02"]["address"] == "10.0.0.9:8472" and store.agents()["web02"]["online"]
