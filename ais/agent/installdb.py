"""The agent's installation database and local package repository, in its state directory.

What it does: `InstallDb(state)` keeps, in `state/agent.sqlite`: every update the host
knows (signed, as received, with the peer it came from), which it applied or failed
and when, the updates of an interrupted transaction (`applying`: set before rpm runs,
cleared after, so a host switched off mid-update re-applies them at its next start),
results not yet told to the server, and the last group layout the server gave (so a
known host can start while the server is down). `LocalRepo(state/packages)` holds the
RPMs the host installed, each stored only after its size and sha256 match the signed
update (a temporary file, then a rename), and serves them to peers.

Reads: signed updates. Fails with `WorldError` when the state directory cannot be
written. Returns `Update`s, sets of sequence numbers, paths.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time

from pathlib import Path

from ais.contracts import encode
from ais.errors import WorldError
from ais.updates.records import Op, Update, parse_update

FAILED_FOR_GOOD = "failed-for-good"  # rpm ran, a scriptlet failed: trying again would change nothing
SCHEMA = """
CREATE TABLE IF NOT EXISTS known (seq INTEGER PRIMARY KEY, grp TEXT NOT NULL, doc TEXT NOT NULL,
                                  heard_from TEXT, heard_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS done (seq INTEGER PRIMARY KEY, state TEXT NOT NULL, message TEXT, at REAL NOT NULL,
                                 reported INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS applying (seq INTEGER PRIMARY KEY);
CREATE TABLE IF NOT EXISTS layout (id INTEGER PRIMARY KEY CHECK (id = 1), doc TEXT NOT NULL, at REAL NOT NULL);
"""


class InstallDb:
    def __init__(self, state: Path):
        self.path = state / "agent.sqlite"
        self._lock = threading.Lock()
        try:
            state.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # a power cut must not lose a row rpm already acted on
            self._db.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as err:
            raise WorldError(f"cannot open the agent's database {self.path}: {err}") from err

    def _do(self, sql: str, args=(), many: bool = False):
        try:
            with self._lock:
                if many:
                    self._db.execute("BEGIN")
                    self._db.executemany(sql, args)
                    self._db.execute("COMMIT")
                    return []
                return self._db.execute(sql, args).fetchall()
        except sqlite3.Error as err:
            raise WorldError(f"the agent's database {self.path}: {err}") from err

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ------------------------------------------------------------------ updates known
    def learn(self, updates: list[Update], heard_from: str) -> list[Update]:
        """Store the updates not known yet; returns those (each once, the first of a sequence number)."""
        have = self.known_seqs()
        new = []
        for u in updates:
            if u.seq not in have:
                have.add(u.seq)
                new.append(u)
        self._do("INSERT OR IGNORE INTO known VALUES (?, ?, ?, ?, ?)",
                 [(u.seq, u.group, encode(u).decode(), heard_from, time.time()) for u in new], many=True)
        return new

    def known_seqs(self, groups=None) -> set[int]:
        rows = self._do("SELECT seq, grp FROM known")
        return {s for s, g in rows if groups is None or g in groups}

    def known(self, groups=None, seqs=None) -> list[Update]:
        rows = self._do("SELECT seq, grp, doc FROM known ORDER BY seq")
        return [parse_update(d) for s, g, d in rows
                if (groups is None or g in groups) and (seqs is None or s in seqs)]

    def heard_from(self, seq: int) -> str | None:
        rows = self._do("SELECT heard_from FROM known WHERE seq = ?", (seq,))
        return rows[0][0] if rows else None

    # ------------------------------------------------------------------ results
    def applied_seqs(self) -> set[int]:
        return {s for (s,) in self._do("SELECT seq FROM done WHERE state = 'applied'")}

    def settled_seqs(self) -> set[int]:
        """Updates not to try again: applied, or failed for good (rpm ran and a scriptlet failed)."""
        return {s for (s,) in self._do("SELECT seq FROM done WHERE state IN ('applied', ?)", (FAILED_FOR_GOOD,))}

    def mark(self, seqs, state: str, message: str = "") -> None:
        self._do("INSERT OR REPLACE INTO done VALUES (?, ?, ?, ?, 0)",
                 [(s, state, message[:2000], time.time()) for s in seqs], many=True)

    def unreported(self) -> list[dict]:
        """Results the server has not heard yet (a failure for good is a "failed" to it)."""
        rows = self._do("SELECT seq, state, message, at FROM done WHERE reported = 0 ORDER BY seq")
        return [{"seq": s, "state": "failed" if st == FAILED_FOR_GOOD else st, "message": m or "", "at": at}
                for s, st, m, at in rows]

    def reported(self, results: list[dict]) -> None:
        self._do("UPDATE done SET reported = 1 WHERE seq = ? AND at = ? AND (state = ? OR state = ?)",
                 [(r["seq"], r["at"], r["state"], FAILED_FOR_GOOD if r["state"] == "failed" else r["state"])
                  for r in results], many=True)

    def state_of(self, seq: int) -> str | None:
        rows = self._do("SELECT state FROM done WHERE seq = ?", (seq,))
        return rows[0][0] if rows else None

    # ------------------------------------------------------------------ an interrupted transaction
    def begin_applying(self, seqs) -> None:
        self._do("INSERT OR IGNORE INTO applying VALUES (?)", [(s,) for s in seqs], many=True)

    def end_applying(self) -> None:
        self._do("DELETE FROM applying")

    def interrupted(self) -> set[int]:
        return {s for (s,) in self._do("SELECT seq FROM applying")}

    # ------------------------------------------------------------------ the group layout
    def save_layout(self, layout: dict) -> None:
        self._do("INSERT OR REPLACE INTO layout VALUES (1, ?, ?)", (json.dumps(layout), time.time()))

    def layout(self) -> tuple[dict, float] | None:
        rows = self._do("SELECT doc, at FROM layout WHERE id = 1")
        return (json.loads(rows[0][0]), rows[0][1]) if rows else None


class LocalRepo:
    """RPMs this host installed, by file name, each checked against its signed digest."""

    def __init__(self, path: Path):
        self.path = path
        path.mkdir(parents=True, exist_ok=True)

    def get(self, op: Op) -> Path | None:
        """The RPM of an install op if held with the right size (its digest was checked when stored)."""
        path = self.path / op.file
        try:
            return path if path.stat().st_size == op.size else None
        except OSError:
            return None

    def file(self, name: str) -> Path | None:
        path = self.path / name
        return path if name.endswith(".rpm") and "/" not in name and path.is_file() else None

    def put(self, op: Op, data: bytes) -> Path:
        """Store data as op's RPM; ValueError when its size or sha256 is not the signed one."""
        if len(data) != op.size or hashlib.sha256(data).hexdigest() != op.sha256:
            raise ValueError(f"{op.file}: {len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()[:12]}; "
                             f"the update says {op.size} bytes, {op.sha256[:12]}")
        final = self.path / op.file
        tmp = final.with_name(f".{op.file}.{os.getpid()}.{threading.get_ident()}")
        try:
            tmp.write_bytes(data)
            os.replace(tmp, final)
        except OSError as err:
            tmp.unlink(missing_ok=True)
            raise WorldError(f"cannot store {op.file} in {self.path}: {err}") from err
        return final



