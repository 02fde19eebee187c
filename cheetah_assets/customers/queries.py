"""Reads and writes on the customer database (SQLAlchemy Core; no Dagster here).

This module is where the rest of the code imports the customer database's functions from: the
campaign schedule lives here; the customer table, frozen lists and their reading in
:mod:`.recipients`; the freeze in :mod:`.freeze`; the one normalisation of identifiers
(``strip(casefold(NFKC(s)))``, ``cheetah_norm`` in SQL) in :mod:`.identifiers`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .freeze import freeze_recipient_list
from .identifiers import normalise_identifier
from .recipients import (
    PG_LOCK_NAMESPACE,
    UNLOCKED_STATES,
    Bind,
    CustomerSchemaError,
    FreezeResult,
    connect,
    count_recipients,
    get_frozen_list,
    identifier_column_problem,
    is_list_locked,
    iter_recipient_chunks,
    iter_recipient_rows,
    list_key,
    lock_for_replace,
    missing_columns,
    recipient_preview,
    reflect_customers,
    template_for,
    unique_in_order,
)
from .schema import campaign_schedule

__all__ = [
    "PG_LOCK_NAMESPACE",
    "SCHEDULE_STATUSES",
    "UNLOCKED_STATES",
    "CustomerSchemaError",
    "FreezeResult",
    "ScheduledCampaign",
    "count_recipients",
    "freeze_recipient_list",
    "get_frozen_list",
    "identifier_column_problem",
    "is_list_locked",
    "iter_recipient_chunks",
    "iter_recipient_rows",
    "list_key",
    "load_schedule",
    "lock_for_replace",
    "missing_columns",
    "normalise_identifier",
    "parse_template_ids",
    "recipient_preview",
    "reflect_customers",
    "set_campaign_status",
    "template_for",
]

#: ``campaign_schedule.status`` values.
SCHEDULE_STATUSES = ("SCHEDULED", "CANCELLED")


# ------------------------------------------------------------------------------------------------
# the campaign schedule
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ScheduledCampaign:
    campaign_id: str
    name: str
    send_date: dt.date
    send_time: str  # local wall time "HH:MM" in time_zone
    time_zone: str | None  # IANA name; None means the plan's default
    template_ids: tuple[str, ...]
    target_group: str
    status: str  # as stored; sending.statuses.parse_status says what it means


def parse_template_ids(raw: str | None) -> tuple[str, ...]:
    """``"1001, 1003,,1001"`` -> ``("1001", "1003")``: stripped, empties dropped, order kept, no repeats."""
    if not raw:
        return ()
    return unique_in_order(part.strip() for part in str(raw).split(",") if part.strip())


def load_schedule(engine: Bind, send_date: dt.date) -> list[ScheduledCampaign]:
    """Every campaign scheduled on ``send_date`` (any status), ordered by campaign id."""
    stmt = (
        sa.select(campaign_schedule)
        .where(campaign_schedule.c.send_date == send_date)
        .order_by(campaign_schedule.c.campaign_id)
    )
    with connect(engine) as conn:
        rows = conn.execute(stmt).mappings().all()
    return [
        ScheduledCampaign(
            campaign_id=r["campaign_id"],
            name=r["name"],
            send_date=r["send_date"],
            send_time=str(r["send_time"]).strip(),
            time_zone=(r["time_zone"] or "").strip() or None,
            template_ids=parse_template_ids(r["template_ids"]),
            target_group=r["target_group"],
            status="" if r["status"] is None else str(r["status"]),  # as stored: sending.statuses parses it
        )
        for r in rows
    ]


def set_campaign_status(engine: Bind, campaign_id: str, status: str) -> bool:
    """Set a campaign's status (SCHEDULED or CANCELLED); False if there is no such campaign."""
    if status not in SCHEDULE_STATUSES:
        raise ValueError(f"status must be one of {SCHEDULE_STATUSES}, not {status!r}")
    stmt = (
        sa.update(campaign_schedule)
        .where(campaign_schedule.c.campaign_id == campaign_id)
        .values(status=status)
    )
    if isinstance(engine, Connection):
        return engine.execute(stmt).rowcount > 0
    with engine.begin() as conn:
        return conn.execute(stmt).rowcount > 0
