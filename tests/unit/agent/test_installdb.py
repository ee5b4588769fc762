"""ais.agent.installdb: the agent's known updates, results, interrupted transactions, layout and local RPMs."""

import hashlib

import pytest

from ais.agent.installdb import FAILED_FOR_GOOD, InstallDb, LocalRepo
from ais.updates.records import Op, Update

DATA = b"an rpm's bytes"
SHA = hashlib.sha256(DATA).hexdigest()


def install(name="bash", data=DATA):
    return Op(action="install", name=name, nevra=f"{name}-0:1.0-1.x86_64", file=f"{name}-1.0-1.x86_64.rpm",
              size=len(data), sha256=hashlib.sha256(data).hexdigest())


def update(seq, group="rack-a"):
    return Update(seq=seq, group=group, ops=(Op(action="erase", name=f"pkg{seq}"),))


@pytest.fixture
def db(tmp_path):
    db = InstallDb(tmp_path / "state")
    yield db
    db.close()


def test_learn_stores_only_new_updates_and_returns_them(db):
    assert db.learn([update(1), update(2)], "server") == [update(1), update(2)]
    assert db.learn([update(2), update(3)], "peer-b") == [update(3)]
    assert db.learn([update(1)], "peer-c") == []
    assert db.known_seqs() == {1, 2, 3}
    assert db.heard_from(2) == "server" and db.heard_from(3) == "peer-b" and db.heard_from(9) is None


def test_learn_the_same_update_twice_in_one_batch_returns_it_once(db):
    assert db.learn([update(4), update(4)], "peer") == [update(4)]
    assert db.known() == [update(4)]


def test_known_filters_by_group_and_seq(db):
    db.learn([update(1, "rack-a"), update(2, "rack-b"), update(3, "all")], "server")
    assert [u.seq for u in db.known()] == [1, 2, 3]
    assert [u.seq for u in db.known({"rack-a", "all"})] == [1, 3]
    assert db.known({"nobody"}) == []
    assert [u.seq for u in db.known(seqs={2, 3})] == [2, 3]
    assert db.known_seqs({"rack-b"}) == {2}


def test_known_survives_a_restart(tmp_path):
    first = InstallDb(tmp_path)
    first.learn([update(1)], "server")
    first.close()
    again = InstallDb(tmp_path)
    assert again.known() == [update(1)]
    again.close()


def test_mark_unreported_reported_cycle(db):
    db.mark([1, 2], "applied")
    db.mark([3], "failed", "rpm said no")
    assert [(r["seq"], r["state"], r["message"]) for r in db.unreported()] == [
        (1, "applied", ""), (2, "applied", ""), (3, "failed", "rpm said no")]
    sent = db.unreported()
    db.reported(sent[:2])
    assert [r["seq"] for r in db.unreported()] == [3]
    db.reported(sent[2:])
    assert db.unreported() == []
    assert db.applied_seqs() == {1, 2}
    assert db.state_of(3) == "failed" and db.state_of(4) is None


def test_a_new_state_after_sending_stays_unreported(db):
    db.mark([5], "waiting")
    sent = db.unreported()
    db.mark([5], "applied")  # applied while the report of 'waiting' was on its way
    db.reported(sent)
    assert [(r["seq"], r["state"]) for r in db.unreported()] == [(5, "applied")]


def test_a_failure_for_good_is_settled_and_reported_as_failed(db):
    db.mark([6], FAILED_FOR_GOOD, "scriptlet failed")
    db.mark([7], "failed", "no network")
    assert db.settled_seqs() == {6}  # 7 is tried again, 6 is not
    sent = db.unreported()
    assert [(r["seq"], r["state"]) for r in sent] == [(6, "failed"), (7, "failed")]
    db.reported(sent)
    assert db.unreported() == []


def test_applying_survives_until_ended(tmp_path):
    db = InstallDb(tmp_path)
    assert db.interrupted() == set()
    db.begin_applying([1, 2])
    db.begin_applying([2, 3])
    db.close()
    db = InstallDb(tmp_path)  # switched off mid-transaction
    assert db.interrupted() == {1, 2, 3}
    db.end_applying()
    assert db.interrupted() == set()
    db.close()


def test_layout_save_and_load(db):
    assert db.layout() is None
    db.save_layout({"members": {"a": {"address": "x:1"}}})
    db.save_layout({"members": {"b": {"address": "y:2", "groups": ["rack-a"]}}})
    doc, at = db.layout()
    assert doc == {"members": {"b": {"address": "y:2", "groups": ["rack-a"]}}} and at > 0


BAD_DATA = {
    "short": DATA[:-1],
    "long": DATA + b"x",
    "same size, other bytes": DATA[:-1] + b"?",
    "empty": b"",
}


@pytest.mark.parametrize("data", BAD_DATA.values(), ids=BAD_DATA.keys())
def test_put_refuses_wrong_bytes_and_stores_nothing(tmp_path, data):
    repo = LocalRepo(tmp_path / "packages")
    op = install()
    with pytest.raises(ValueError):
        repo.put(op, data)
    assert list(repo.path.iterdir()) == []
    assert repo.get(op) is None


def test_put_stores_the_right_bytes(tmp_path):
    repo = LocalRepo(tmp_path / "packages")
    op = install()
    path = repo.put(op, DATA)
    assert path.read_bytes() == DATA and path.name == op.file
    assert repo.get(op) == path
    assert repo.file(op.file) == path
    assert [p.name for p in repo.path.iterdir()] == [op.file]  # no temporary file left


def test_get_refuses_a_file_of_another_size(tmp_path):
    repo = LocalRepo(tmp_path)
    (tmp_path / install().file).write_bytes(DATA + b"more")
    assert repo.get(install()) is None


@pytest.mark.parametrize("name", ["../bash-1.0-1.x86_64.rpm", "sub/bash.rpm", "bash-1.0-1.x86_64", "agent.sqlite",
                                  "missing.rpm", ".bash-1.0-1.x86_64.rpm.1.2", "sub"])
def test_file_refuses(tmp_path, name):
    repo = LocalRepo(tmp_path / "packages")
    repo.put(install(), DATA)
    (repo.path / "sub").mkdir()
    (repo.path / "sub" / "bash.rpm").write_bytes(DATA)
    (repo.path / "agent.sqlite").write_bytes(b"")
    (tmp_path / "bash-1.0-1.x86_64.rpm").write_bytes(DATA)
    assert repo.file(name) is None
