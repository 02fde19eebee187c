"""A send-ledger row as the send path leaves it, for tests that need one without running a send."""

from __future__ import annotations

import datetime as dt

from cheetah_assets.customers.schema import send_ledger


def insert_ledger_row(
    engine,
    *,
    campaign_id: str,
    template_id: str,
    send_date: dt.date,
    state: str,
    list_key: str | None = None,
    cheetah_name: str | None = None,
    send_at: dt.datetime | None = None,
    camp_id=None,
    stamp: dt.datetime | None = None,
) -> None:
    """One row, every NOT NULL column filled; ``stamp`` (default now) is its created/updated time."""
    stamp = stamp or dt.datetime.now(dt.timezone.utc)
    with engine.begin() as conn:
        conn.execute(
            send_ledger.insert().values(
                send_key=f"{campaign_id}/{template_id}/{send_date.isoformat()}",
                campaign_id=campaign_id,
                template_id=template_id,
                send_date=send_date,
                list_key=list_key or f"{campaign_id}/{send_date.isoformat()}",
                cheetah_name=cheetah_name or f"OPT-{campaign_id}-{template_id}-{send_date:%Y%m%d}",
                state=state,
                send_at=send_at,
                camp_id=camp_id,
                created_at=stamp,
                updated_at=stamp,
            )
        )
