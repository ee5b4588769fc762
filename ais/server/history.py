"""The install history: one SQLite row per report a client posts.

What it does: `History(path)` creates the database (and its directory) if
needed, `add(host, report)` stores one report with the time it was received,
`for_host(host)` lists a host's reports, newest first, `last_id()` is the newest
report's row id (0 when there is none). `read_reports(path,
host)` reads a host's reports, oldest first, opening the file read-only (for
`ais history`: it never creates the file nor changes it). SQLite in WAL mode with
one short connection per call, so the server's request threads never share a
connection and a reader (`sqlite3 build/history.sqlite`) never blocks a writer.

Reads: the report as a JSON object already checked by the HTTP layer (a dict).
Fails with `WorldError` when the database cannot be opened, read or written.
Returns the row id of a stored report, or lists of dicts.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from contextlib import closing
from pathlib import Path

from ais.console.queries import HistoryReader
from ais.errors import WorldError

SCHEMA = """
CREATE TABLE IF NOT EXISTS reports (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    host TEXT NOT NULL,
    received_at REAL NOT NULL,
    status TEXT NOT NULL,
    phase TEXT,
    image TEXT,
    generation INTEGER,
    message TEXT,
    report TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS reports_host ON reports (host, id);
CREATE INDEX IF NOT EXISTS reports_status ON reports (status, id);
"""


class History:
    """Install reports in one SQLite file."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()  # one writer at a time: no SQLITE_BUSY under load
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._connect() as db:
                db.execute("PRAGMA journal_mode=WAL")
                db.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as err:
            raise WorldError(f"cannot open the history database {self.path}: {err}") from err

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=30)

    def add(self, host: str, report: dict) -> int:
        """Store one report; returns its row id."""
        image = report.get("image")
        row = (
            host,
            time.time(),
            str(report.get("status", "unknown"))[:32],
            _text(report.get("phase"), 64),
            _text(image.get("id") if isinstance(image, dict) else image, 128),
            report.get("generation") if isinstance(report.get("generation"), int) else None,
            _text(report.get("message"), 4000),
            json.dumps(report, sort_keys=True),
        )
        try:
            with self._lock, self._connect() as db:
                cur = db.execute(
                    "INSERT INTO reports (host, received_at, status, phase, image, generation, message, report)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    row,
                )
                return int(cur.lastrowid)
        except sqlite3.Error as err:
            raise WorldError(f"cannot store a report in {self.path}: {err}") from err

    def for_host(self, host: str, limit: int = 100) -> list[dict]:
        """The host's reports, newest first, each with its stored JSON under 'report'."""
        with self._connect() as db:
            db.row_factory = sqlite3.Row
            rows = db.execute(
                "SELECT * FROM reports WHERE host = ? ORDER BY id DESC LIMIT ?", (host, limit)
            ).fetchall()
        return [{**dict(r), "report": json.loads(r["report"])} for r in rows]


    def last_id(self) -> int:
        """The row id of the newest report of any host; 0 for an empty history."""
        try:
            with closing(self._connect()) as db:
                return int(db.execute("SELECT COALESCE(MAX(id), 0) FROM reports").fetchone()[0])
        except sqlite3.Error as err:
            raise WorldError(f"cannot read the history database {self.path}: {err}") from err


def read_reports(path: str | Path, host: str) -> list[dict]:
    """A host's reports, oldest first, read without creating or changing anything.

    Fails with `WorldError` naming the file when it is missing, a directory, not
    a SQLite database, or has no reports table (not a history `ais serve` wrote).
    """
    path = Path(path)
    if not path.is_file():
        why = "is a directory" if path.is_dir() else "does not exist (`ais serve --history FILE` creates it)"
        raise WorldError(f"the history database {path} {why}")
    return HistoryReader(path).host_rows(host)


def _text(value, limit: int) -> str | None:
    return None if value is None else str(value)[:limit]
