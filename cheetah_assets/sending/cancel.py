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
from ..cheetah.errors import CheetahError
from ..customers.schema import campaign_schedule, send_ledger
from . import ledger, statuses
from .deletion import cancel_row
from .errors import CancelError, SendError
from .protocol import Sender

__all__ = [
    "CancelError", "CancelOutcome", "cancel_campaign", "cancel_claimed", "cancel_leftover", "cancel_row", "mark_cancelled",
    "pending_cancellations",
]


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
    problems: list[str] = []
    for row in rows:
        if row.state == ledger.CANCELLED:
            outcomes.append(CancelOutcome(row.send_key, row.cheetah_name, "already cancelled", row.camp_id))
        elif row.state in (ledger.MISSED, ledger.EMPTY) and row.camp_id is None:
            outcomes.append(CancelOutcome(row.send_key, row.cheetah_name, "never prepared", None))
        else:
            # One send that cannot be cancelled never leaves the campaign's other sends to go out.
            try:
                outcomes.append(cancel_claimed(sender, sender.claim(row)))
            except CheetahError as exc:
                problems.append(f"{row.send_key}: {exc}")
            except SendError as exc:
                problems.append(str(exc) if row.send_key in str(exc) else f"{row.send_key}: {exc}")
    if problems:
        done = f" Its other {len(outcomes)} send(s) will not go out." if outcomes else ""
        raise CancelError(" | ".join(problems) + done)
    return outcomes


def cancel_claimed(sender: Sender, row: ledger.LedgerRow) -> CancelOutcome:
    """Cancel a send whose claim ``sender`` holds (delete its campaign of ours in Cheetah, mark it
    CANCELLED), then let the claim go."""
    try:
        if row.state == ledger.CANCELLED:
            return CancelOutcome(row.send_key, row.cheetah_name, "already cancelled", row.camp_id)
        done = cancel_row(sender, row)
        action = "deleted" if done.camp_id is not None else "nothing in Cheetah"
        return CancelOutcome(row.send_key, row.cheetah_name, action, done.camp_id)
    finally:
        sender.ledger.release(row.send_key, sender.owner)


def cancel_leftover(sender: Sender, row: ledger.LedgerRow) -> str | None:
    """Cancel a send of the day whose campaign was cancelled on our side; a problem as one sentence
    (None if it was cancelled). A send another run holds is left to the cancellation sensor."""
    claimed = sender.ledger.claim(row.send_key, sender.owner, owner_alive=sender.owner_alive)
    if claimed is None:
        return f"{row.send_key}: cancelled, but another run holds it; the cancellation sensor will retry"
    try:
        cancel_claimed(sender, claimed)
    except (CancelError, CheetahError) as exc:
        return f"{row.send_key}: {exc}"
    return None


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
                send_ledger.c.state.in_(sorted(ledger.TOUCHED_CHEETAH)),
            )
            .order_by(send_ledger.c.campaign_id, send_ledger.c.send_key)
        )
        for r in rows:
            if statuses.is_cancelled(r.status):
                out.setdefault(r.campaign_id, []).append((r.send_key, r.state))
    return out
