"""SQLAlchemy engines of the customer database: the one place they are made (no Dagster here).

One engine per process and URL (:func:`engine_for`), shared by every asset and sensor of the
process. Every connection gets the identifier normalisation ``cheetah_norm`` (SQLite: registered
on connect; PostgreSQL: installed with the tables, see :mod:`.identifiers`). SQLite engines run in
WAL mode with a busy timeout, so that several processes (the Dagster daemon, the webserver, run
workers) can read while one writes, and a writer waits for another instead of failing with
"database is locked".

A SQLite file is never created by accident: a URL naming a file that does not exist fails with
:class:`CustomerDatabaseMissing` unless the caller asks for creation (``create=True``: the demo
and the seed command), and the file is opened read-write only (``mode=rw``), so a file deleted
while the process runs is not silently recreated empty either.

A URL can carry a password: only :func:`safe_url` is ever fit for logs and metadata.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import urllib.parse

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from .sqlite_norm import register_sqlite_function

#: How long (ms) a SQLite connection waits for another writer before "database is locked".
#: Generous on purpose: a writer may hold the lock for the whole freeze of a large list.
SQLITE_BUSY_TIMEOUT_MS = 120_000

_ENGINES: dict[tuple[int, str], Engine] = {}
_ENGINES_LOCK = threading.Lock()


class CustomerDatabaseError(ValueError):
    """The customer database cannot be used as configured (one sentence: what and what to do)."""


class CustomerDatabaseMissing(CustomerDatabaseError):
    """``CUSTOMER_DB_URL`` names a SQLite file that does not exist."""

    def __init__(self, path: str):
        super().__init__(
            f"The customer database file {path} does not exist; set CUSTOMER_DB_URL to the URL of "
            "the existing customer database (or create a demo one with cheetah-seed --url)."
        )
        self.path = path


def default_url() -> str:
    """``$CUSTOMER_DB_URL``, or the embedded demo SQLite file under the working directory."""
    return os.environ.get("CUSTOMER_DB_URL") or (
        "sqlite:///" + os.path.join(os.getcwd(), ".cheetah_demo", "customers.db")
    )


def safe_url(url: str | sa.URL) -> str:
    """``url`` with any password masked as ``***``: the only form fit for logs."""
    return sa.make_url(url).render_as_string(hide_password=True)


def with_shipped_driver(url: sa.URL) -> sa.URL:
    """``url``, with a bare ``postgresql://`` pinned to psycopg2, the driver this project ships
    (SQLAlchemy 2.1 reads the bare form as psycopg 3)."""
    return url.set(drivername="postgresql+psycopg2") if url.drivername == "postgresql" else url


def sqlite_file(url: str | sa.URL) -> str | None:
    """The absolute path of the file a SQLite URL names; None for in-memory databases, SQLite
    ``file:`` URIs (their own rules apply) and every other backend."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database or ""
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return os.path.abspath(database)


def _on_sqlite_connect(dbapi_connection, _record) -> None:
    register_sqlite_function(dbapi_connection)
    cur = dbapi_connection.cursor()
    try:
        # busy_timeout first: switching to WAL needs a lock and must wait for it, not fail.
        cur.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_MS)}")
        cur.execute("PRAGMA journal_mode = WAL")
    finally:
        cur.close()


def _create_engine(url: sa.URL) -> Engine:
    if url.get_backend_name() != "sqlite":
        return sa.create_engine(with_shipped_driver(url), pool_pre_ping=True)
    engine = sa.create_engine(url, pool_pre_ping=True)
    path = sqlite_file(url)
    if path is not None:
        read_write = "file:" + urllib.parse.quote(path) + "?mode=rw"

        def open_read_write(_dialect, _record, cargs, cparams) -> None:
            cargs[:] = [read_write]
            cparams["uri"] = True

        sa.event.listen(engine, "do_connect", open_read_write)
    sa.event.listen(engine, "connect", _on_sqlite_connect)
    return engine


def _create_file(path: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    sqlite3.connect(path).close()


def engine_for(url: str | sa.URL, *, create: bool = False) -> Engine:
    """The engine of ``url`` for this process (created on first use, then reused).

    A SQLite URL must name an existing file (:class:`CustomerDatabaseMissing` otherwise, and
    nothing is created), unless ``create=True``, which creates the directories and an empty file.
    """
    parsed = sa.make_url(url)
    path = sqlite_file(parsed)
    if path is not None and not os.path.exists(path):
        if not create:
            raise CustomerDatabaseMissing(path)
        _create_file(path)
    key = (os.getpid(), parsed.render_as_string(hide_password=False))
    engine = _ENGINES.get(key)
    if engine is None:
        with _ENGINES_LOCK:
            engine = _ENGINES.get(key)
            if engine is None:
                engine = _create_engine(parsed)
                _ENGINES[key] = engine
    return engine


def dispose_engine(url: str | sa.URL) -> None:
    """Close the pooled connections of ``url``'s engine and forget it (tests, before DROP DATABASE)."""
    parsed = sa.make_url(url)
    key = (os.getpid(), parsed.render_as_string(hide_password=False))
    with _ENGINES_LOCK:
        engine = _ENGINES.pop(key, None)
    if engine is not None:
        engine.dispose()
