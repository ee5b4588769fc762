"""The global state of updates, in the server's history database (SQLite, WAL).

What it does: `UpdateStore(path)` adds three tables to the history database:
`updates` (each signed update, by its site-wide sequence number), `update_results`
(what each host reported for each update: applied, waiting for idle, failed and why)
and `agents` (each host's agent: its address, online or not, when last heard).
`submit(...)` gives the next sequence number and signs the update inside one write
transaction, so two submitters never share a number. The agents' init and status
requests (`ais.server.update_routes`) and the admin's commands (`ais update`,
`ais hosts`) read and write it; the data path between peers never does.

Reads: signed updates, agent reports. Fails with `WorldError` when the database
cannot be opened, read or written. Returns `Update`s and plain dicts.
"""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing
from pathlib import Path



from ais.contracts import encode
from ais.errors import WorldError
from ais.updates.records import Op, Update, check_ops, parse_update
from ais.updates.signing import sign

SCHEMA = """
CREATE TABLE IF NOT EXISTS updates (
    seq INTEGER PRIMARY KEY,
    grp TEXT NOT NULL,
    urgent INTEGER NOT NULL,
    submitted_at REAL NOT NULL,
    origin TEXT NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS updates_group ON updates (grp, seq);
CREATE TABLE IF NOT EXISTS update_results (
    host TEXT NOT NULL,
    seq INTEGER NOT NULL,
    state TEXT NOT NULL,
    message TEXT,
    at REAL NOT NULL,
    PRIMARY KEY (host, seq)
);
CREATE TABLE IF NOT EXISTS agents (
    host TEXT PRIMARY KEY,
    address TEXT,
    online INTEGER NOT NULL,
    seen_at REAL NOT NULL
);
"""
STATES = ("applied", "waiting", "failed", "refused")


class UpdateStore:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with closing(self._connect()) as db:
                db.execute("PRAGMA journal_mode=WAL")
                db.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as err:
            raise WorldError(f"cannot open the update database {self.path}: {err}") from err

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        db.row_factory = sqlite3.Row
        return db

    def _run(self, what: str, fn):
        try:
            with closing(self._connect()) as db:
                return fn(db)
        except sqlite3.Error as err:
            raise WorldError(f"cannot {what} in {self.path}: {err}") from err

    def submit(self, group: str, ops: tuple[Op, ...], key, *, urgent: bool = False, origin: str = "admin") -> Update:
        """Store a new update with the next sequence number, signed with key."""
        check_ops(ops)

        def insert(db):
            db.execute("BEGIN IMMEDIATE")
            try:
                seq = db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM updates").fetchone()[0]
                update = sign(Update(seq=seq, group=group, urgent=urgent, ops=tuple(ops), origin=origin[:200],
                                     submitted_at=round(time.time(), 3)), key)
                db.execute("INSERT INTO updates VALUES (?, ?, ?, ?, ?, ?)",
                           (seq, group, int(urgent), update.submitted_at, update.origin, encode(update).decode()))
                db.execute("COMMIT")
                return update
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return self._run("store an update", insert)

    def updates(self, groups=None, after: int = 0) -> list[Update]:
        """Updates (of these groups, or all), in sequence order."""
        def read(db):
            rows = db.execute("SELECT grp, doc FROM updates WHERE seq > ? ORDER BY seq", (after,)).fetchall()
            return [parse_update(r["doc"]) for r in rows if groups is None or r["grp"] in groups]
        return self._run("read updates", read)

    def update(self, seq: int) -> Update | None:
        found = self.updates(after=seq - 1)
        return found[0] if found and found[0].seq == seq else None

    def record(self, host: str, results: list[dict]) -> None:
        """A host's results: [{seq, state, message}]; a later state replaces an earlier one."""
        now = time.time()
        rows = [(host, int(r["seq"]), r["state"], (r.get("message") or "")[:2000], float(r.get("at") or now))
                for r in results]
        self._run("store update results", lambda db: db.executemany(
            "INSERT OR REPLACE INTO update_results VALUES (?, ?, ?, ?, ?)", rows))

    def results(self, seq: int | None = None, host: str | None = None) -> list[dict]:
        where, args = [], []
        if seq is not None:
            where.append("seq = ?"), args.append(seq)
        if host is not None:
            where.append("host = ?"), args.append(host)
        sql = "SELECT * FROM update_results" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY seq, host"
        return self._run("read update results", lambda db: [dict(r) for r in db.execute(sql, args)])

    def set_agent(self, host: str, address: str | None, online: bool) -> None:
        def write(db):
            if address is None:
                db.execute("UPDATE agents SET online = ?, seen_at = ? WHERE host = ?", (int(online), time.time(), host))
            else:
                db.execute("INSERT OR REPLACE INTO agents VALUES (?, ?, ?, ?)",
                           (host, address, int(online), time.time()))
        self._run("store an agent's state", write)

    def agents(self) -> dict[str, dict]:
        """{host: {address, online, seen_at}}."""
        return self._run("read agents", lambda db: {r["host"]: {"address": r["address"], "online": bool(r["online"]),
                                                                "seen_at": r["seen_at"]}
                                                    for r in db.execute("SELECT * FROM agents")})
