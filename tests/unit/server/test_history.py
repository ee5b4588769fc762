"""The SQLite history: stored reports come back as sent, from many threads at once."""

import sqlite3
import threading

import pytest

from ais.errors import WorldError
from ais.server.history import History


def test_add_and_read_back(tmp_path):
    history = History(tmp_path / "sub" / "h.sqlite")
    first = history.add("mail01", {"status": "failed", "phase": "image", "message": "disk"})
    second = history.add("mail01", {"status": "ok", "image": {"id": "abc"}, "generation": 3})
    history.add("db01", {"status": "ok"})
    rows = history.for_host("mail01")
    assert [r["id"] for r in rows] == [second, first]
    assert rows[0]["status"] == "ok" and rows[0]["image"] == "abc" and rows[0]["generation"] == 3
    assert rows[1]["phase"] == "image" and rows[1]["report"]["message"] == "disk"
    with sqlite3.connect(tmp_path / "sub" / "h.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM reports").fetchone() == (3,)


def test_last_id_is_the_newest_report_of_any_host(tmp_path):
    history = History(tmp_path / "h.sqlite")
    assert history.last_id() == 0
    history.add("mail01", {"status": "ok"})
    newest = history.add("db01", {"status": "rebooting", "phase": "firmware"})
    assert history.last_id() == newest == 2


def test_concurrent_writers(tmp_path):
    history = History(tmp_path / "h.sqlite")
    errors = []

    def write(n):
        try:
            for i in range(10):
                history.add(f"h{n}", {"status": "ok", "i": i})
        except Exception as err:  # noqa: BLE001 - collected and asserted below
            errors.append(err)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sum(len(history.for_host(f"h{n}")) for n in range(20)) == 200


def test_unwritable_location(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(WorldError, match="history database"):
        History(tmp_path / "file" / "h.sqlite")
