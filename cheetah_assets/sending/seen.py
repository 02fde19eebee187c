"""When each scheduled campaign first became known (table ``cheetah_campaign_seen``).

A campaign is MISSED only when its send time had already passed when it was first seen; one
seen in time whose send time passed anyway (the integration down, a failure) is OVERDUE. The
preparation sensor and the plan record it, insert-if-absent: the first sighting wins.
"""

from __future__ import annotations

import datetime as dt
from typing import Iterable

import sqlalchemy as sa

from ..customers.schema import create_tables, insert_new, metadata
from ..timeutil import utc

campaign_seen = sa.Table(
    "cheetah_campaign_seen",
    metadata,
    sa.Column("campaign_id", sa.String(64), primary_key=True),
    sa.Column("send_date", sa.Date, primary_key=True),
    sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
)


def ensure_table(engine: sa.Engine) -> None:
    create_tables(engine, [campaign_seen])


def record_seen(engine: sa.Engine, keys: Iterable[tuple[str, dt.date]], now: dt.datetime) -> None:
    """Record ``now`` as the first sighting of each (campaign_id, send_date) not seen before."""
    rows = [{"campaign_id": c, "send_date": d, "first_seen_at": now} for c, d in sorted(set(keys))]
    if not rows:
        return
    insert_new(engine, campaign_seen, rows)


def first_seen(engine: sa.Engine, send_date: dt.date) -> dict[str, dt.datetime]:
    """campaign_id -> when it was first seen, for one send date."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(campaign_seen.c.campaign_id, campaign_seen.c.first_seen_at).where(campaign_seen.c.send_date == send_date)
        ).all()
    return {r.campaign_id: utc(r.first_seen_at) for r in rows}
