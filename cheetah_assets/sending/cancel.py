"""Cancellation: a campaign cancelled on our side is deleted in Cheetah Messaging too.

The two systems must never disagree, so cancelling works from the ledger *and* from Cheetah:
a send whose ledger row never learnt its campaign id (a lost reply) is still found by its
deterministic name and deleted, once checked to be ours (``deletion.py``: a campaign with our
name that we did not create is never deleted).

A send that went out before it was cancelled (ledger APPROVED and its send time passed, by the
clock: :func:`went_out`) has nothing left to undo: the cancel job and the day's run report it
("went out at HH:MM ... nothing to undo") and do not fail on it, the cancellation sensor does not
request it (:func:`pending_cancellations`) but reports it once (:func:`sent_before_cancelled`),
and its ledger row stays APPROVED (it was sent). Cheetah answering SENT for a send our clock
says is still ahead remains an error that says so.
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
from ..timeutil import utc
from . import ledger, statuses
from .deletion import cancel_row
from .errors import CancelError, SendError
from .protocol import Sender

__all__ = [
    "CancelError", "CancelOutcome", "cancel_campaign", "cancel_claimed", "cancel_leftover", "cancel_row", "mark_cancelled",
    "pending_cancellations", "sent_before_cancelled", "went_out", "went_out_note",
]

#: How far back (by send time) the cancellation sensor looks for sends that went out before their
#: campaign was cancelled, to report each once: a bounded range scan of the ledger's send_at index.
SENT_REPORT_WINDOW = dt.timedelta(days=7)


@dataclass(frozen=True)
class CancelOutcome:
    send_key: str
    cheetah_name: str
    action: str  # "deleted", "nothing in Cheetah", "already cancelled", "never prepared", or went_out_note's
    camp_id: ObjId | None = None


def went_out(row: ledger.LedgerRow, now: dt.datetime) -> bool:
    """Whether the send has gone out: approved in Cheetah (APPROVED) and its send time has come."""
    return row.state == ledger.APPROVED and row.send_at is not None and utc(row.send_at) <= utc(now)


def went_out_note(send_at: dt.datetime | None) -> str:
    """What a cancellation of a send that already went out says (without the send's name)."""
    at = f"at {utc(send_at):%H:%M} UTC " if send_at is not None else ""
    return f"went out {at}before it was cancelled; nothing to undo (the ledger keeps it APPROVED: it was sent)"


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
        elif went_out(row, now()):
            outcomes.append(CancelOutcome(row.send_key, row.cheetah_name, went_out_note(row.send_at), row.camp_id))
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


def _cancelled_sends(engine: sa.Engine, *where: sa.ColumnElement[bool]) -> list[sa.Row]:
    """The ledger rows (``where``) of campaigns cancelled on our side, by campaign and send key.

    "Cancelled" is any spelling :func:`.statuses.is_cancelled` accepts (``cancelled``,
    ``Canceled``, with surrounding whitespace, ...). The SQL selects every status containing
    "cancel" in any case, and the one parser the planner uses decides, so the two always agree.
    """
    t = send_ledger.c
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(t.campaign_id, t.send_key, t.state, t.cheetah_name, t.send_at, campaign_schedule.c.status)
            .join(campaign_schedule, campaign_schedule.c.campaign_id == t.campaign_id)
            .where(campaign_schedule.c.status.ilike("%cancel%"), *where)  # every spelling, whatever its case
            .order_by(t.campaign_id, t.send_key)
        ).all()
    return [r for r in rows if statuses.is_cancelled(r.status)]


def pending_cancellations(engine: sa.Engine, now: dt.datetime) -> dict[str, list[tuple[str, str]]]:
    """Campaigns cancelled on our side with sends that may still exist in Cheetah Messaging, and
    not yet gone out: {campaign_id: [(send_key, state), ...]}. An APPROVED send whose send time
    has come (``now``) went out: there is nothing to cancel (:func:`sent_before_cancelled`)."""
    t = send_ledger.c
    not_gone_out = sa.or_(t.state != ledger.APPROVED, t.send_at.is_(None), t.send_at > utc(now))
    out: dict[str, list[tuple[str, str]]] = {}
    for r in _cancelled_sends(engine, t.state.in_(sorted(ledger.TOUCHED_CHEETAH)), not_gone_out):
        out.setdefault(r.campaign_id, []).append((r.send_key, r.state))
    return out


def sent_before_cancelled(engine: sa.Engine, now: dt.datetime, window: dt.timedelta = SENT_REPORT_WINDOW) -> dict[str, str]:
    """The sends of campaigns cancelled on our side that went out first (APPROVED, send time
    within ``window`` before ``now``): {send_key: "<send_key>: <cheetah name> went out at ..."}."""
    t = send_ledger.c
    now = utc(now)
    rows = _cancelled_sends(engine, t.state == ledger.APPROVED, t.send_at <= now, t.send_at > now - window)
    return {r.send_key: f"{r.send_key}: campaign {r.cheetah_name} {went_out_note(r.send_at)}" for r in rows}
