"""The customer database as a Dagster resource.

Engines are made in one place, :mod:`.engines` (one per process and URL, SQLite in WAL mode with
the ``cheetah_norm`` function on every connection); import its names from there.
A URL naming a SQLite file that does not exist fails the step with one sentence naming the path;
only an explicit ``create=True`` (the demo and the seed command) creates it.

A URL can carry a password: only :meth:`CustomerDatabaseResource.safe_url` (or
:func:`.engines.safe_url`) is ever fit for logs and metadata.
"""

from __future__ import annotations

import dagster as dg
import sqlalchemy as sa
from pydantic import Field
from sqlalchemy.engine import Engine

from . import schema
from .engines import CustomerDatabaseError, engine_for, safe_url, with_shipped_driver
from .identifiers import IdentifierNormalisationError, ensure_sql_function


class CustomerDatabaseResource(dg.ConfigurableResource):
    """The Optimove-side customer database, and where this integration keeps its own tables."""

    url: str = Field(
        description=(
            "SQLAlchemy URL of the customer database, e.g. "
            "'postgresql+psycopg2://user:password@host:5432/crm' or 'sqlite:////data/customers.db'. "
            "Holds the customers, target_group_members, campaign_schedule and suppression tables, "
            "and the integration's own cheetah_* tables. Never logged with its password. A SQLite "
            "file must already exist: it is never created."
        )
    )
    chunk_size: int = Field(
        default=10_000,
        description="Rows per streamed chunk when reading or writing recipient lists.",
    )

    def get_engine(self, create: bool = False) -> Engine:
        """The shared engine; a missing SQLite file fails the step with one sentence (nothing is
        created) unless ``create=True``."""
        try:
            return engine_for(self.url, create=create)
        except CustomerDatabaseError as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from None

    def safe_url(self) -> str:
        return safe_url(with_shipped_driver(sa.make_url(self.url)))

    def ensure_tables(self) -> None:
        """Create the integration's cheetah_* tables if missing (never the customer's tables),
        and the identifier normalisation function ``cheetah_norm`` (PostgreSQL)."""
        engine = self.get_engine()
        schema.create_integration_tables(engine)
        try:
            ensure_sql_function(engine)
        except IdentifierNormalisationError as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from None
