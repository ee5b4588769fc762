"""Summaries of the history database for the console: one read-only query per question.

What it does: `HistoryReader(path)` opens the server's history database
read-only (it never creates or changes it; a missing file reads as empty) and
answers what the console pages need without loading a host's whole history:
`last_installs()` (each host's newest ok/failed report), `last_updates()`
(each host's newest applied update), `agents()` (who is online),
`recent_failures(limit)` (the newest failed installs, with their messages),
`counts()` and `host_rows(host)` (one host's reports, oldest first, for its
time line). Every query walks an index of the reports table (host, id) or
(status, id), never the rows with their JSON (bench/console.py measures
them at 10,000 hosts and 100,000 installs).

Reads: the SQLite file `ais serve --history` writes (tables reports,
update_results, agents; the update tables exist only once the server has run
with updates, and their absence reads as no updates). Fails with `WorldError`
naming the file when it exists but is not a readable history. Returns plain
dicts.
"""

from __future__ import annotations

import json
import sqlite3
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
        """Reports by status: a walk of the index (status, id), not of the rows and their JSON."""
        return {r["status"]: int(r["n"]) for r in self._query("SELECT status, COUNT(*) AS n FROM reports GROUP BY status")}

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
