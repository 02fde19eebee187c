"""The customer database as a Dagster resource.

One SQLAlchemy engine per process and URL (:func:`engine_for`), shared by every asset and
sensor of the process. SQLite engines run in WAL mode with a busy timeout, so that several
processes (the Dagster daemon, the webserver, run workers) can read while one writes, and a
writer waits for another instead of failing with "database is locked".

A URL can carry a password: only :meth:`CustomerDatabaseResource.safe_url` (or
:func:`safe_url`) is ever fit for logs and metadata.
"""

from __future__ import annotations

import os
import threading

import dagster as dg
import sqlalchemy as sa
from pydantic import Field
from sqlalchemy.engine import Engine

from . import schema

#: How long (ms) a SQLite connection waits for another writer before "database is locked".
#: Generous on purpose: a writer may hold the lock for the whole freeze of a large list.
SQLITE_BUSY_TIMEOUT_MS = 120_000

_ENGINES: dict[tuple[int, str], Engine] = {}
_ENGINES_LOCK = threading.Lock()


def _on_sqlite_connect(dbapi_connection, _record) -> None:
    cur = dbapi_connection.cursor()
    try:
        # busy_timeout first: switching to WAL needs a lock and must wait for it, not fail.
        cur.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_MS)}")
        cur.execute("PRAGMA journal_mode = WAL")
    finally:
        cur.close()


def with_shipped_driver(url: sa.URL) -> sa.URL:
    """``url``, with a bare ``postgresql://`` pinned to psycopg2, the driver this project ships
    (SQLAlchemy 2.1 reads the bare form as psycopg 3)."""
    return url.set(drivername="postgresql+psycopg2") if url.drivername == "postgresql" else url


def _create_engine(url: sa.URL) -> Engine:
    if url.get_backend_name() == "sqlite":
        database = url.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            parent = os.path.dirname(os.path.abspath(database))
            os.makedirs(parent, exist_ok=True)
        engine = sa.create_engine(url, pool_pre_ping=True)
        sa.event.listen(engine, "connect", _on_sqlite_connect)
        return engine
    return sa.create_engine(with_shipped_driver(url), pool_pre_ping=True)


def engine_for(url: str | sa.URL) -> Engine:
    """The engine of ``url`` for this process (created on first use, then reused)."""
    parsed = sa.make_url(url)
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


def safe_url(url: str | sa.URL) -> str:
    """``url`` with any password masked as ``***``: the only form fit for logs."""
    return sa.make_url(url).render_as_string(hide_password=True)


def default_url() -> str:
    """``$CUSTOMER_DB_URL``, or the embedded demo SQLite file under the working directory."""
    return os.environ.get("CUSTOMER_DB_URL") or (
        "sqlite:///" + os.path.join(os.getcwd(), ".cheetah_demo", "customers.db")
    )


class CustomerDatabaseResource(dg.ConfigurableResource):
    """The Optimove-side customer database, and where this integration keeps its own tables."""

    url: str = Field(
        description=(
            "SQLAlchemy URL of the customer database, e.g. "
            "'postgresql+psycopg2://user:password@host:5432/crm' or 'sqlite:////data/customers.db'. "
            "Holds the customers, target_group_members, campaign_schedule and suppression tables, "
            "and the integration's own cheetah_* tables. Never logged with its password."
        )
    )
    chunk_size: int = Field(
        default=10_000,
        description="Rows per streamed chunk when reading or writing recipient lists.",
    )

    def get_engine(self) -> Engine:
        return engine_for(self.url)

    def safe_url(self) -> str:
        return self.get_engine().url.render_as_string(hide_password=True)

    def ensure_tables(self) -> None:
        """Create the integration's cheetah_* tables if missing (never the customer's tables)."""
        schema.create_integration_tables(self.get_engine())
