"""Where the simulator keeps recipients: on disk, in SQLite, never all in memory.

Three tables: the rows of an import being read (``job_rows``), the rows of each recipient list
(``list_rows``, in list order: a re-imported identifier replaces its row and moves to the end),
and the recipients of each campaign as it was sent (``sent_rows``). A persisted simulator keeps
them in its state file (:mod:`.persist`), so they survive a restart with the world; otherwise
they live in a temporary file removed when the simulator stops.
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
import threading
import weakref
from pathlib import Path
from typing import Any, Iterable

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS job_rows (import_id INTEGER NOT NULL, identifier TEXT NOT NULL, "
    "fields TEXT NOT NULL, n INTEGER NOT NULL)",
    "CREATE INDEX IF NOT EXISTS job_rows_job ON job_rows (import_id)",
    "CREATE TABLE IF NOT EXISTS list_rows (list_id INTEGER NOT NULL, identifier TEXT NOT NULL, "
    "fields TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (list_id, identifier))",
    "CREATE INDEX IF NOT EXISTS list_rows_order ON list_rows (list_id, seq)",
    "CREATE TABLE IF NOT EXISTS sent_rows (camp_id INTEGER NOT NULL, identifier TEXT NOT NULL, "
    "fields TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (camp_id, seq))",
)


def _close(db: sqlite3.Connection, remove: str | None) -> None:
    db.close()
    for suffix in ("", "-wal", "-shm") if remove else ():
        try:
            os.unlink(remove + suffix)
        except FileNotFoundError:
            pass


class RowStore:
    """The recipient rows of the simulated world, in a SQLite file (``path``; default a
    temporary file of its own)."""

    def __init__(self, path: str | Path | None = None):
        self._own = path is None
        if path is None:
            fd, name = tempfile.mkstemp(prefix="cheetah-sim-rows-", suffix=".db")
            os.close(fd)
            path = name
        else:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.path = str(path)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # A temporary store needs no durability; a state file's rows are as durable as its world.
        self._db.execute("PRAGMA synchronous=OFF" if self._own else "PRAGMA synchronous=FULL")
        for statement in _SCHEMA:
            self._db.execute(statement)
        # A temporary file goes when the store does (or at exit); a state file stays.
        self._finalizer = weakref.finalize(self, _close, self._db, self.path if self._own else None)

    def close(self) -> None:
        with self._lock:
            self._finalizer()

    def clear(self) -> None:
        """Drop every row (a reset of the world)."""
        with self._lock:
            self._db.executescript("DELETE FROM job_rows; DELETE FROM list_rows; DELETE FROM sent_rows;")

    # --- imports -------------------------------------------------------------------------------
    def start_job(self, import_id: int) -> None:
        """Forget what an import of this id staged before (an id reused after a restart)."""
        with self._lock:
            self._db.execute("DELETE FROM job_rows WHERE import_id = ?", (import_id,))

    def stage(self, import_id: int, rows: Iterable[tuple[int, str, dict[str, str]]]) -> None:
        """Add ``(row number, identifier, fields)`` to an import (a later row of an identifier wins
        when the import completes)."""
        with self._lock, self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO job_rows (import_id, identifier, fields, n) VALUES (?, ?, ?, ?)",
                ((import_id, ident, json.dumps(fields), n) for n, ident, fields in rows),
            )

    def complete(self, import_id: int, list_id: int) -> int:
        """Move an import's rows into its list (replacing rows of the same identifier, which move
        to the end); returns the list's row count."""
        with self._lock, self._db:
            self._db.execute("BEGIN")
            base = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM list_rows WHERE list_id = ?",
                                    (list_id,)).fetchone()[0]
            self._db.execute(
                "INSERT OR REPLACE INTO list_rows (list_id, identifier, fields, seq) "
                "SELECT ?, identifier, fields, ? + n FROM job_rows WHERE import_id = ? ORDER BY n",
                (list_id, base, import_id),
            )
            self._db.execute("DELETE FROM job_rows WHERE import_id = ?", (import_id,))
            return self._db.execute("SELECT COUNT(*) FROM list_rows WHERE list_id = ?", (list_id,)).fetchone()[0]

    def list_rows(self, list_id: int) -> list[dict[str, Any]]:
        """A list's rows as the API shows them (``{"identifier", "fields"}``), in list order (the
        admin read-back: a whole list, in memory)."""
        return self._read("list_rows", "list_id", list_id)

    def _read(self, table: str, key: str, value: int) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT identifier, fields FROM {table} WHERE {key} = ? ORDER BY seq", (value,)
            ).fetchall()
        return [{"identifier": i, "fields": json.loads(f)} for i, f in rows]

    def replace_list(self, list_id: int, rows: Iterable[tuple[str, dict]]) -> None:
        """Set a list's rows (a world saved before rows lived here)."""
        self._replace("list_rows", "list_id", list_id, ({"identifier": i, "fields": f} for i, f in rows))

    def _replace(self, table: str, key: str, value: int, rows: Iterable[dict[str, Any]]) -> None:
        with self._lock, self._db:
            self._db.execute("BEGIN")
            self._db.execute(f"DELETE FROM {table} WHERE {key} = ?", (value,))
            self._db.executemany(
                f"INSERT INTO {table} ({key}, identifier, fields, seq) VALUES (?, ?, ?, ?)",
                ((value, r["identifier"], json.dumps(r["fields"]), n) for n, r in enumerate(rows, start=1)),
            )

    # --- sends ---------------------------------------------------------------------------------
    def snapshot(self, camp_id: int, list_id: int) -> int:
        """Record a list's rows as a campaign's recipients at its send; returns how many."""
        with self._lock, self._db:
            self._db.execute("BEGIN")
            self._db.execute("DELETE FROM sent_rows WHERE camp_id = ?", (camp_id,))
            self._db.execute(
                "INSERT INTO sent_rows (camp_id, identifier, fields, seq) "
                "SELECT ?, identifier, fields, seq FROM list_rows WHERE list_id = ?",
                (camp_id, list_id),
            )
            return self._db.execute("SELECT COUNT(*) FROM sent_rows WHERE camp_id = ?", (camp_id,)).fetchone()[0]

    def sent_rows(self, camp_id: int) -> list[dict[str, Any]]:
        """Who a campaign's last send went to, in list order."""
        return self._read("sent_rows", "camp_id", camp_id)

    def replace_sent(self, camp_id: int, recipients: Iterable[dict[str, Any]]) -> None:
        """Set a campaign's recipients (a world saved before rows lived here)."""
        self._replace("sent_rows", "camp_id", camp_id, recipients)
