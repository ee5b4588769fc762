"""ais.console.queries against real history databases: each answer equals the obvious query over every row,
also as reports arrive between two looks and when the file is replaced."""

import shutil
import sqlite3

from ais.console.queries import HistoryReader
from ais.server.history import History

STATUSES = ["ok", "rebooting", "up", "failed", "ok", "up", "failed", "rebooting"]


def fill(db: History, hosts: list[str], n: int, offset: int = 0) -> None:
    for k in range(n):
        db.add(hosts[(k * 7 + offset) % len(hosts)], {"status": STATUSES[(k + offset) % len(STATUSES)],
                                                      "phase": "install", "message": f"m{k}"})


def everything(path) -> tuple[dict, dict]:
    """(last ok/failed row per host, counts by status), by reading every row."""
    with sqlite3.connect(path) as db:
        db.row_factory = sqlite3.Row
        rows = db.execute("SELECT * FROM reports ORDER BY id").fetchall()
    last, counts = {}, {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
        if r["status"] in ("ok", "failed"):
            last[r["host"]] = {k: r[k] for k in ("host", "id", "received_at", "status", "phase", "image",
                                                 "generation", "message")}
    return last, counts


def test_last_installs_and_counts_equal_a_full_read(tmp_path):
    path = tmp_path / "history.sqlite"
    db = History(path)
    hosts = [f"h{i}" for i in range(9)]
    db.add("uponly", {"status": "up"})  # a host with no install: not among the last installs
    fill(db, hosts, 200)
    reader = HistoryReader(path)
    last, counts = everything(path)
    assert reader.last_installs() == last and "uponly" not in last
    assert reader.counts() == counts
    fill(db, hosts, 37, offset=3)  # reports arrive between two looks: only those are counted again
    assert reader.counts() == everything(path)[1] == HistoryReader(path).counts()
    assert reader.last_installs() == everything(path)[0]


def test_counts_of_a_replaced_file(tmp_path):
    path, other = tmp_path / "history.sqlite", tmp_path / "other.sqlite"
    fill(History(path), ["a", "b"], 50)
    fill(History(other), ["c"], 7, offset=1)
    first = HistoryReader(path).counts()
    assert first == everything(path)[1] and sum(first.values()) == 50
    shutil.copy(other, tmp_path / "new.sqlite")
    (tmp_path / "new.sqlite").replace(path)  # another file at the same path
    assert HistoryReader(path).counts() == everything(path)[1]
    fill(History(path), ["d"], 60)
    assert HistoryReader(path).counts() == everything(path)[1]


def test_a_missing_history_reads_as_empty(tmp_path):
    reader = HistoryReader(tmp_path / "none.sqlite")
    assert reader.counts() == {} and reader.last_installs() == {} and not (tmp_path / "none.sqlite").exists()
