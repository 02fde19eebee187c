"""The simulator's state and clock in a SQLite file (``cheetah-sim --state PATH``,
``SimulatorServer(state_path=...)``): the demo's ``.cheetah_demo/simulator.db``, shared by
``./run demo``, ``./run dev`` and restarts. Without a path the simulator stays in memory (the tests).

Every request's reply is held back until the world it leaves is committed (``synchronous=FULL``):
what the simulator confirmed survives a ``kill -9``. The world is written whole (a pickle of the
accounts, imports, campaigns and faults, with the simulated time) and only when it changed; the
request log starts empty after a restart. The recipient rows are not in that pickle: they are in
tables of their own in the same file (:mod:`.rowstore`), written as imports are read. The file is the simulator's own: never edit it by hand.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import pickle
import sqlite3
import threading
from pathlib import Path
from typing import Any

from .requestlog import RequestLog

_PARTS = ("directory", "access", "imports", "campaigns", "reports", "faults")


class _Pickler(pickle.Pickler):
    def __init__(self, file: io.BytesIO, state: Any):
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self._shared = {id(state.lock): "lock", id(state.clock): "clock", id(state.rows): "rows"}

    def persistent_id(self, obj: Any) -> str | None:  # the process's own lock and clock
        return self._shared.get(id(obj))


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, state: Any):
        super().__init__(file)
        self._shared = {"lock": state.lock, "clock": state.clock, "rows": state.rows}

    def persistent_load(self, pid: str) -> Any:
        return self._shared[pid]


class StateFile:
    """One SQLite file holding the simulated world and its clock."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("CREATE TABLE IF NOT EXISTS world (id INTEGER PRIMARY KEY CHECK (id = 1), "
                         "saved_now TEXT NOT NULL, live INTEGER NOT NULL, digest TEXT NOT NULL, data BLOB NOT NULL)")
        self._write = threading.Lock()
        self._digest: str | None = None
        self._clock_base: Any = None

    def load(self, state: Any) -> bool:
        """Restore ``state`` from the file (False: the file holds none yet). The clock resumes at
        the stored simulated time (a live clock runs on from there)."""
        row = self._db.execute("SELECT saved_now, live, digest, data FROM world WHERE id = 1").fetchone()
        if row is None:
            return False
        saved_now, live, digest, data = row
        with state.lock:
            world = _Unpickler(io.BytesIO(data), state).load()
            for name in _PARTS:
                setattr(state, name, world[name])
            _rows_to_disk(state)
            state.seed, state.string_ids, state.generation = world["seed"], world["string_ids"], world["generation"]
            state.clock.set(dt.datetime.fromisoformat(saved_now))
            state.log = RequestLog(state.lock, state.clock, state.faults)
        self._digest, self._clock_base = digest, state.clock.setting()
        return True

    def save(self, state: Any) -> None:
        """Commit ``state`` if it changed since the last save (before its reply is sent)."""
        with self._write, state.lock:
            buffer = io.BytesIO()
            world = {name: getattr(state, name) for name in _PARTS}
            world.update(seed=state.seed, string_ids=state.string_ids, generation=state.generation)
            _Pickler(buffer, state).dump(world)
            now = state.clock.now()
            data = buffer.getvalue()
            digest = hashlib.sha256(data).hexdigest()
            base = state.clock.setting()  # moves only when the clock is set
            if digest == self._digest and base == self._clock_base:
                return
            self._db.execute(
                "INSERT INTO world (id, saved_now, live, digest, data) VALUES (1, ?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET saved_now = excluded.saved_now, live = excluded.live, "
                "digest = excluded.digest, data = excluded.data",
                (now.isoformat(), int(state.clock.live), digest, data),
            )
            self._digest, self._clock_base = digest, base

    def close(self) -> None:
        self._db.close()


def _rows_to_disk(state: Any) -> None:
    """A world saved when rows lived in memory: its lists' and sends' rows move to the row store."""
    imports = state.imports
    if not hasattr(imports, "store"):
        imports.store = state.rows
    for lst in imports.lists.values():
        if "rows" in vars(lst):
            rows = vars(lst).pop("rows")
            state.rows.replace_list(lst.list_id, rows.items())
            lst.count = len(rows)
    for c in state.campaigns.by_id.values():
        if "recipients" in vars(c):
            recipients = vars(c).pop("recipients")
            state.rows.replace_sent(c.camp_id, recipients)
            c.recipient_count = len(recipients)


def persisting(app: Any, state: Any, store: StateFile) -> Any:
    """``app`` (ASGI) with every HTTP reply held back until ``store`` has committed the world."""

    async def wrapped(scope: dict, receive: Any, send: Any) -> None:
        if scope.get("type") != "http":
            await app(scope, receive, send)
            return

        async def send_after_commit(message: dict) -> None:
            if message.get("type") == "http.response.start":
                store.save(state)
            await send(message)

        await app(scope, receive, send_after_commit)

    return wrapped
