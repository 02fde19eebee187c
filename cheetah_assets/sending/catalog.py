"""The template catalog: the templates saved in the account's "Optimove" folder, per day."""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass

import sqlalchemy as sa

from ..cheetah.client import CheetahClient
from ..cheetah.contract import Template
from ..cheetah.errors import BadRequest
from ..customers.queries import lock_for_replace
from ..customers.schema import template_catalog

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CatalogResult:
    catalog_date: dt.date
    folder_name: str
    templates: int
    preview: list[dict]


def refresh_catalog(
    client: CheetahClient,
    engine: sa.Engine,
    catalog_date: dt.date,
    *,
    now: dt.datetime,
    logger: logging.Logger = log,
    batch: int = 500,
) -> CatalogResult:
    """Fetch the folder's templates page by page and store them as the catalog of ``catalog_date``.

    The day's previous catalog is replaced in the same transaction, so a reader sees either the
    old or the new catalog, never half of one; other days' catalogs are kept.
    """
    try:
        folder = client.get_folder()
    except BadRequest as exc:  # an id of a shape the account does not take (ids are opaque: kept as given)
        raise BadRequest(f"Folder ID {client.settings.folder_id} was not accepted: {exc}") from None
    count, preview, rows = 0, [], []
    with engine.begin() as conn:
        lock_for_replace(conn, f"catalog/{catalog_date.isoformat()}")
        conn.execute(template_catalog.delete().where(template_catalog.c.catalog_date == catalog_date))
        for template in client.iter_templates():
            rows.append(_row(template, catalog_date, now))
            if len(preview) < 20:
                preview.append({"objId": template.obj_id, "name": template.display_name, "fields": ", ".join(template.fields)})
            if len(rows) >= batch:
                conn.execute(template_catalog.insert(), rows)
                count += len(rows)
                rows = []
                logger.info("template catalog %s: %d templates stored so far", catalog_date, count)
        if rows:
            conn.execute(template_catalog.insert(), rows)
            count += len(rows)
    return CatalogResult(catalog_date=catalog_date, folder_name=folder.name, templates=count, preview=preview)


def _row(t: Template, catalog_date: dt.date, now: dt.datetime) -> dict:
    return {
        "catalog_date": catalog_date,
        "obj_id": t.obj_id,
        "display_name": t.display_name,
        "subject": t.subject,
        "fields": json.dumps(list(t.fields)),
        "modified": t.modified,
        "fetched_at": now,
    }


@dataclass(frozen=True)
class CatalogEntry:
    obj_id: str
    display_name: str
    fields: tuple[str, ...]


def load_catalog(engine: sa.Engine, catalog_date: dt.date) -> dict[str, CatalogEntry] | None:
    """The catalog of ``catalog_date``; ``None`` if that day has no catalog (never fetched, or an empty folder)."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(template_catalog.c.obj_id, template_catalog.c.display_name, template_catalog.c.fields).where(
                template_catalog.c.catalog_date == catalog_date
            )
        ).all()
    if not rows:
        return None
    return {r.obj_id: CatalogEntry(r.obj_id, r.display_name, tuple(json.loads(r.fields))) for r in rows}
