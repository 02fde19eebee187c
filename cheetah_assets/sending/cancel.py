"""Cancellation: a campaign cancelled on our side is deleted in Cheetah Messaging too.

The two systems must never disagree, so cancelling works from the ledger *and* from Cheetah:
a send whose ledger row never learnt its campaign id (a lost reply) is still found by its
deterministic name and deleted, once checked to be ours (``deletion.py``: a campaign with our
name that we did not create is never deleted). Cancelling a campaign that has already gone out
is an error that says so; nothing is half-done (the schedule row is marked CANCELLED only when
every prepared send could be deleted or had not reached Cheetah yet).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Callable

import sqlalchemy as sa

from ..cheetah.client import CheetahClient
from ..cheetah.contract import ObjId
from ..customers.schema import campaign_schedule, send_ledger
from . import ledger as L
from . import statuses as S
from .deletion import cancel_row
from .errors import CancelError
from .protocol import Sender

__all__ = ["CancelError", "CancelOutcome", "cancel_campaign", "cancel_row", "mark_cancelled", "pending_cancellations"]


@dataclass(frozen=True)
class CancelOutcome:
    send_key: str
    cheetah_name: str
    action: str  # "deleted", "nothing in Cheetah", "already cancelled", "never prepared"
    camp_id: ObjId | None = None


def mark_cancelled(engine: sa.Engine, campaign_id: str) -> bool:
    """Mark the campaign CANCELLED in the schedule; False if the schedule has no such campaign."""
    with engine.begin() as conn:
        result = conn.execute(
            campaign_schedule.update()
            .where(campaign_schedule.c.campaign_id == campaign_id)
            .values(status="CANCELLED")
        )
    return result.rowcount == 1


def cancel_campaign(
    client: CheetahClient,
    engine: sa.Engine,
    campaign_id: str,
    *,
    owner: str,
    now: Callable[[], dt.datetime],
    owner_alive: Callable[[str], bool] = lambda _o: True,
    claim_wait_seconds: float = 60.0,
) -> list[CancelOutcome]:
    """Cancel ``campaign_id`` on our side and delete every send of it in Cheetah Messaging."""
    known = mark_cancelled(engine, campaign_id)
    sender = Sender(
        client=client, engine=engine, owner=owner, now=now, owner_alive=owner_alive,
        claim_wait_seconds=claim_wait_seconds,
    )
    rows = sender.ledger.for_campaign(campaign_id)
    if not known and not rows:
        raise CancelError(f"There is no campaign {campaign_id!r} in the schedule or the send ledger.")
    outcomes: list[CancelOutcome] = []
    for row in rows:
        if row.state == L.CANCELLED:
            outcomes.append(CancelOutcome(row.send_key, row.cheetah_name, "already cancelled", row.camp_id))
            continue
        if row.state in (L.MISSED, L.EMPTY) and row.camp_id is None:
            outcomes.append(CancelOutcome(row.send_key, row.cheetah_name, "never prepared", None))
            continue
        claimed = sender._claim(row)
        try:
            if claimed.state == L.CANCELLED:
                outcomes.append(CancelOutcome(row.send_key, row.cheetah_name, "already cancelled", claimed.camp_id))
                continue
            done = cancel_row(sender, claimed)
            action = "deleted" if done.camp_id is not None else "nothing in Cheetah"
            outcomes.append(CancelOutcome(row.send_key, row.cheetah_name, action, done.camp_id))
        finally:
            sender.ledger.release(row.send_key, owner)
    return outcomes


def pending_cancellations(engine: sa.Engine) -> dict[str, list[tuple[str, str]]]:
    """Campaigns cancelled on our side with sends that may still exist in Cheetah Messaging:
    {campaign_id: [(send_key, state), ...]}.

    "Cancelled" is any spelling :func:`.statuses.is_cancelled` accepts (``cancelled``,
    ``Canceled``, with surrounding whitespace, ...). The SQL selects every status containing
    "cancel" in any case, and the one parser the planner uses decides, so the two always agree.
    """
    out: dict[str, list[tuple[str, str]]] = {}
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(send_ledger.c.campaign_id, send_ledger.c.send_key, send_ledger.c.state, campaign_schedule.c.status)
            .join(campaign_schedule, campaign_schedule.c.campaign_id == send_ledger.c.campaign_id)
            .where(
                campaign_schedule.c.status.ilike("%cancel%"),  # every spelling, whatever its case
                send_ledger.c.state.in_(sorted(L.TOUCHED_CHEETAH)),
            )
            .order_by(send_ledger.c.campaign_id, send_ledger.c.send_key)
        )
        for r in rows:
            if S.is_cancelled(r.status):
                out.setdefault(r.campaign_id, []).append((r.send_key, r.state))
    return out
