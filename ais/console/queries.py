"""Summaries of the history database for the console: one read-only query per question.

What it does: `HistoryReader(path)` opens the server's history database
read-only (it never creates or changes it; a missing file reads as empty) and
answers what the console pages need without loading a host's whole history:
`last_installs()` (each host's newest ok/failed report), `last_updates()`
(each host's newest applied update), `agents()` (who is online),
`recent_failures(limit)` (the newest failed installs, with their messages),
`counts()` and `host_rows(host)` (one host's reports, oldest first, for its
time line). Every query is an index walk or one GROUP BY over the reports;
`counts()` reads only the reports added since the last look at the same file
(bench/console.py measures them at 10,000 hosts and 100,000 installs).

Reads: the SQLite file `ais serve --history` writes (tables reports,
update_results, agents; the update tables exist only once the server has run
with updates, and their absence reads as no updates). Fails with `WorldError`
naming the file when it exists but is not a readable history. Returns plain
dicts.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from contextlib import closing
from pathlib import Path

from ais.errors import WorldError

# Each host's newest ok/failed report: per host (the index's distinct hosts), a walk back along the
# index (host, id) from its newest report to the first ok or failed, usually one or two steps. (A GROUP BY
# host over the ok and failed rows reads every row of the table: 5 times slower at 100,000 installs.)
_LAST_INSTALLS = """
SELECT r.host, r.id, r.received_at, r.status, r.phase, r.image, r.generation, r.message
FROM (SELECT DISTINCT host FROM reports) h JOIN reports r ON r.id = (
    SELECT id FROM reports WHERE host = h.host AND status IN ('ok', 'failed') ORDER BY id DESC LIMIT 1)
"""
# counts() per database file (path, inode): the reports counted up to a row id. The server only ever
# appends reports (AUTOINCREMENT ids, never reused), so a look counts only the rows added since, by
# row id range, instead of reading the whole table again; the last row counted must still be there with
# the time it was received, else everything is counted again.
_COUNTED: dict[tuple, tuple[int, float | None, dict[str, int]]] = {}  # key -> (last id, its received_at, counts)
_COUNTED_LOCK = threading.Lock()


class HistoryReader:
    """Read-only questions to one history database."""

    def __init__(self, path: str | Path | None):
        self.path = Path(path) if path is not None else None

    def _query(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        if self.path is None or not self.path.is_file():
            return []
        try:
            with closing(sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)) as db:
                db.row_factory = sqlite3.Row
                return db.execute(sql, args).fetchall()
        except sqlite3.OperationalError as err:
            if "no such table" in str(err) and ("update_results" in str(err) or "agents" in str(err)):
                return []  # a history from before updates, or a server that never ran them
            raise WorldError(f"cannot read the history database {self.path}: {err}") from err
        except sqlite3.Error as err:
            raise WorldError(f"cannot read the history database {self.path}: {err}") from err

    def last_installs(self) -> dict[str, dict]:
        return {r["host"]: dict(r) for r in self._query(_LAST_INSTALLS)}

    def last_updates(self) -> dict[str, dict]:
        rows = self._query("SELECT host, MAX(seq) AS seq, MAX(at) AS at FROM update_results "
                           "WHERE state = 'applied' GROUP BY host")
        return {r["host"]: {"seq": r["seq"], "at": r["at"]} for r in rows}

    def agents(self) -> dict[str, dict]:
        return {r["host"]: {"online": bool(r["online"]), "seen_at": r["seen_at"]}
                for r in self._query("SELECT host, online, seen_at FROM agents")}

    def recent_failures(self, limit: int = 50) -> list[dict]:
        rows = self._query("SELECT host, id, received_at, phase, image, generation, message FROM reports "
                           "WHERE status = 'failed' ORDER BY id DESC LIMIT ?", (limit,))
        return [dict(r) for r in rows]

    def counts(self) -> dict[str, int]:
        """Reports by status; the rows counted before are not read again (see _COUNTED)."""
        key = self._identity()
        with _COUNTED_LOCK:
            last, stamp, known = _COUNTED.get(key, (0, None, {}))
        if last and [r["received_at"] for r in self._query("SELECT received_at FROM reports WHERE id = ?",
                                                            (last,))] != [stamp]:
            last, known = 0, {}  # not the rows counted before (the file was rewritten in place): count again
        rows = self._query("SELECT status, COUNT(*) AS n, MAX(id) AS last FROM reports WHERE id > ? GROUP BY status",
                           (last,))
        counts = dict(known)
        for r in rows:
            counts[r["status"]] = counts.get(r["status"], 0) + int(r["n"])
        if key is not None and rows:
            newest = max(int(r["last"]) for r in rows)
            [stamp] = [r["received_at"] for r in self._query("SELECT received_at FROM reports WHERE id = ?", (newest,))]
            with _COUNTED_LOCK:
                if _COUNTED.get(key, (0,))[0] <= newest:  # a look that counted further meanwhile is kept
                    _COUNTED[key] = (newest, stamp, counts)
        return counts

    def _identity(self) -> tuple | None:
        """The database file's identity (another file at the same path is another database), None without one."""
        try:
            st = self.path.stat() if self.path is not None else None
        except OSError:
            return None
        return (str(self.path.resolve()), st.st_dev, st.st_ino) if st is not None else None

    def host_rows(self, host: str) -> list[dict]:
        """The host's reports, oldest first, as `ais.console.timeline.installs` takes them."""
        rows = self._query("SELECT * FROM reports WHERE host = ? ORDER BY id", (host,))
        return [{**dict(r), "report": _json_object(r["report"])} for r in rows]


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
