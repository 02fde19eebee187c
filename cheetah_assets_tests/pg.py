"""PostgreSQL for tests: a reachable server, and a fresh database per test.

``CHEETAH_TEST_PG_URL`` names the server (default: the local one, user postgres, database test).
Without a reachable server the tests that need it are skipped, except under ``CI=true``, where
they fail: CI must never silently skip them.
"""

from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from typing import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

DEFAULT_PG_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"


def _pg_url() -> str:
    from cheetah_assets.customers.engines import with_shipped_driver

    url = with_shipped_driver(sa.make_url(os.environ.get("CHEETAH_TEST_PG_URL") or DEFAULT_PG_URL))
    return url.render_as_string(hide_password=False)


def postgres_url_or_skip() -> str:
    """The URL of a reachable PostgreSQL server; skips the test if there is none (fails under CI)."""
    url = _pg_url()
    engine = sa.create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure to connect means "no server"
        shown = sa.make_url(url).render_as_string(hide_password=True)
        message = f"PostgreSQL is not reachable at {shown} ({type(exc).__name__})"
        if os.environ.get("CI", "").strip().lower() == "true":
            pytest.fail(message + "; CI=true requires it", pytrace=False)
        pytest.skip(message)
    finally:
        engine.dispose()
    return url


@contextmanager
def fresh_postgres_database(prefix: str = "cheetah_test") -> Iterator[str]:
    """Create a uniquely named database on the test server, yield its URL, drop it afterwards.

    Engines cached by ``cheetah_assets.customers.engines`` for that URL are disposed first.
    """
    server_url = postgres_url_or_skip()
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    quoted = admin.dialect.identifier_preparer.quote(name)
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {quoted}")
        # A throwaway database: its commits need not wait for the disk (a crash loses the test,
        # never data). Commits stay transactional; only their flush to disk is deferred.
        conn.exec_driver_sql(f"ALTER DATABASE {quoted} SET synchronous_commit = off")
    url = sa.make_url(server_url).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        try:
            from cheetah_assets.customers.engines import dispose_engine

            dispose_engine(url)
        finally:
            with admin.connect() as conn:
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)")
            admin.dispose()


@contextmanager
def postgres_dagster_instance(temp_dir: str | None = None) -> Iterator:
    """A Dagster test instance whose runs, event log and schedules live in a fresh PostgreSQL
    database (dagster-postgres), as production's do; dropped afterwards."""
    import dagster as dg

    with fresh_postgres_database("cheetah_instance") as url:
        overrides = {"storage": {"postgres": {"postgres_url": url}}}
        with dg.instance_for_test(temp_dir=temp_dir, overrides=overrides) as instance:
            assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
            assert type(instance.run_storage).__name__ == "PostgresRunStorage"
            yield instance
