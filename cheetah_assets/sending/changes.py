"""Changes after hand-over: a send whose schedule changed once Cheetah had it is re-created or refused.

The Cheetah Messaging API has no call to change a campaign's start time, template or list. So
when, before its send time, a handed-over send's campaign gets another send time, other
templates or another target group (its fingerprint, ``fingerprint.py``, no longer matches the
schedule), the only safe way is:

1. claim the send (the ledger's lease, like every step of the protocol);
2. delete its campaign in Cheetah and read the deletion back (``deletion.delete_ours``); if it
   cannot be confirmed, stop there: nothing is created in its place (fail closed);
3. re-base the row to PENDING as revision N+1 under a new name (``-r{N+1}``: the deleted
   campaign's name may stay taken), with the new send time and a history line;
4. re-freeze the campaign's list from the new target group and templates (the caller's
   ``refreeze``), and send it again through the normal protocol.

A crash between 2 and 3 leaves the row as it was, with its campaign CANCELLED in Cheetah: the
next run finds the deletion done and re-bases. A send whose template was removed from its
campaign, or whose campaign is no longer scheduled that day (moved to another day, removed), is
deleted like a cancellation. When the change comes too late (less than :data:`MIN_LEAD` before
the old or the new send time) or the old campaign went out already, it is refused: the stale
campaign is deleted if it still can be, and the refusal is one sentence in the ledger and in the
run's failure. Cancellation is left to the cancellation path (``cancel.py``). A recipient
suppressed after hand-over is the other change a handed-over send can need: ``suppression_changes.py``
deletes and re-bases it the same way (claim, confirmed deletion, revision N+1), without a re-freeze.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Callable, Protocol

import sqlalchemy as sa

from ..cheetah.client import CheetahClient
from ..cheetah.errors import CheetahError
from ..customers import queries
from ..customers.schema import campaign_plan, campaign_schedule
from . import ledger, statuses
from .deletion import AlreadySent, delete_ours
from .errors import SendError
from .fingerprint import differences, fingerprint
from .plan import AGAIN_LEAD, PlanProblem, resolve_send_at
from .timing import fmt_utc

#: A changed send is re-created only if its old and its new send time are both at least this far
#: ahead: deleting, re-importing, creating, launching and approving take a few minutes at most
#: (an import is polled), a start time in the past is refused by Cheetah, and deleting a campaign
#: minutes before it starts races its going out.
MIN_LEAD = dt.timedelta(minutes=5)

log = logging.getLogger(__name__)
RECREATED, DROPPED = "re-created", "dropped"


class Reconciler(Protocol):
    """What reconciling needs of the sender (``protocol.Sender`` is one)."""

    client: CheetahClient
    engine: sa.Engine
    ledger: ledger.Ledger
    owner: str
    account: ledger.Account
    now: Callable[[], dt.datetime]
    owner_alive: Callable[[str], bool]
    step_attempts: int
    step_backoff_seconds: float

    def before_cheetah_call(self, row: ledger.LedgerRow, step: str) -> None: ...


@dataclass
class Reconciled:
    #: sends re-based to PENDING (new revision) with their list re-frozen: to be sent in this run.
    recreated: list[str] = field(default_factory=list)
    #: what was done, one sentence per send (for logs and metadata).
    notes: list[str] = field(default_factory=list)
    #: refusals and failures, one sentence per send: the run must fail with them.
    problems: list[str] = field(default_factory=list)
    #: campaigns whose list could not be re-frozen after a change: none of their sends goes out in
    #: this run (the frozen list is the old one).
    blocked: set[str] = field(default_factory=set)
    #: recipients suppressed after hand-over whom a campaign still mails: found too late to re-create
    #: it (``suppression_changes.py``).
    still_mailed: int = 0


def scheduled(c: queries.ScheduledCampaign) -> tuple[str | None, dt.datetime | None, str | None]:
    """The campaign's fingerprint and UTC send time as scheduled now, or why it has none."""
    try:
        send_at = resolve_send_at(c.send_date, c.send_time, c.time_zone)
    except PlanProblem as exc:
        return None, None, str(exc)
    return fingerprint(send_at, c.template_ids, c.target_group), send_at, None


def _schedule_of(engine: sa.Engine, campaign_id: str, day: dt.date) -> queries.ScheduledCampaign | None:
    with engine.connect() as conn:
        scheduled_on = conn.execute(
            sa.select(campaign_schedule.c.send_date).where(campaign_schedule.c.campaign_id == campaign_id)
        ).scalar()
    if scheduled_on != day:
        return None
    return next((c for c in queries.load_schedule(engine, day) if c.campaign_id == campaign_id), None)


def _planned(engine: sa.Engine, campaign_id: str, day: dt.date) -> tuple[tuple[str, ...], str] | None:
    """The templates (in order) and target group the day's plan, and so the frozen list, has."""
    t = campaign_plan.c
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(t.template_id, t.target_group)
            .where(t.send_date == day, t.campaign_id == campaign_id)
            .order_by(t.template_index)
        ).all()
    return (tuple(r.template_id for r in rows), rows[0].target_group) if rows else None


def handed_over(engine: sa.Engine, row: ledger.LedgerRow, now: dt.datetime) -> dict:
    """The ledger values to record as a send leaves PENDING: its fingerprint, and the schedule's
    send time if the schedule moved it (still ahead) since the row was written.

    The fingerprint holds the scheduled send time, and the templates and target group of the
    day's plan, from which the list was frozen: a change of the schedule between the freeze and
    the hand-over then shows as a change on the next run (never as a stale list sent in silence)."""
    c = _schedule_of(engine, row.campaign_id, row.send_date)
    fp, send_at, _problem = scheduled(c) if c is not None else (None, None, None)
    if fp is None:
        return {}
    planned = _planned(engine, row.campaign_id, row.send_date)
    values: dict = {"fingerprint": fingerprint(send_at, *planned) if planned is not None else fp}
    if send_at != row.send_at and send_at is not None and send_at > now:
        values["send_at"] = send_at
    return values


def reconcile_changes(
    sender: Reconciler,
    day: dt.date,
    *,
    refreeze: Callable[[queries.ScheduledCampaign], None],
    min_lead: dt.timedelta = MIN_LEAD,
) -> Reconciled:
    """Bring the day's handed-over sends in line with the schedule (see the module's docstring).

    ``refreeze(campaign)`` re-freezes a campaign's list once its sends are re-based. One bad send
    never stops the others: each failure is a problem of its own. Cheap when nothing changed:
    one ledger query, and one schedule query only if something was handed over."""
    out = Reconciled()
    rows = [
        r for r in sender.ledger.for_day(day)
        if r.state in ledger.TOUCHED_CHEETAH and r.fingerprint is not None and not ledger.other_account(r, sender.account)
    ]
    if not rows:
        return out
    schedule = {c.campaign_id: c for c in queries.load_schedule(sender.engine, day)}
    for campaign_id in sorted({r.campaign_id for r in rows}):
        c = schedule.get(campaign_id)
        if c is not None and statuses.is_cancelled(c.status):
            continue  # the cancellation path deletes it
        recreated, touched = [], False
        for row in (r for r in rows if r.campaign_id == campaign_id):
            try:
                action = _reconcile(sender, row, c, day, min_lead, out)
            except (SendError, CheetahError) as exc:
                out.problems.append(f"{row.send_key}: {exc}")
                continue
            touched = touched or action is not None
            if action == RECREATED:
                recreated.append(row.send_key)
        # The campaign's list is re-derived whenever one of its sends changed: the templates split
        # the recipients between them, so a template added or removed changes every send's list.
        if touched and c is not None and scheduled(c)[0] is not None:
            try:
                recreated += _rebase_empty(sender, campaign_id, day, scheduled(c)[1])
                refreeze(c)
            except Exception as exc:  # noqa: BLE001 - the next run's recipient_lists re-freezes it
                out.blocked.add(campaign_id)
                out.problems.append(
                    f"campaign {campaign_id}: its sends were re-based after a change, but its list could not be "
                    f"re-frozen ({type(exc).__name__}: {exc}); nothing was sent for them: re-execute the run."
                )
                continue
            out.recreated.extend(recreated)
    return out


def _rebase_empty(sender: Reconciler, campaign_id: str, day: dt.date, send_at: dt.datetime | None) -> list[str]:
    """Re-base the campaign's EMPTY sends to PENDING before its list is re-derived: the templates
    split the new list between them, so a send that had nobody may have recipients now (and an
    EMPTY send must not keep the list locked). Nothing of theirs is in Cheetah to delete."""
    keys = []
    for row in sender.ledger.for_day(day):
        if row.campaign_id != campaign_id or row.state != ledger.EMPTY or ledger.other_account(row, sender.account):
            continue
        claimed = _claim(sender, row)
        try:
            if claimed.state == ledger.EMPTY:
                note = "its campaign's list is re-derived after a change; prepared again from the new list"
                sender.ledger.recreate(claimed.send_key, sender.owner, send_at=send_at, note=note)
                keys.append(claimed.send_key)
        finally:
            sender.ledger.release(row.send_key, sender.owner)
    return keys


@dataclass(frozen=True)
class _Decision:
    action: str  # RECREATE, DROP or REFUSE
    why: str
    current: str | None = None
    send_at: dt.datetime | None = None


RECREATE, DROP, REFUSE = "recreate", "drop", "refuse"


def _decide(
    row: ledger.LedgerRow, c: queries.ScheduledCampaign | None, day: dt.date, now: dt.datetime, min_lead: dt.timedelta
) -> _Decision | None:
    """What a handed-over send needs, given the schedule now (None: nothing, or not handed over)."""
    if row.state not in ledger.TOUCHED_CHEETAH or row.fingerprint is None:
        return None
    if c is None:
        return _Decision(DROP, f"campaign {row.campaign_id} is no longer scheduled on {day}")
    if row.template_id not in c.template_ids:
        return _Decision(DROP, f"template {row.template_id} was removed from campaign {row.campaign_id}")
    current, send_at, problem = scheduled(c)
    if current is None:
        return _Decision(REFUSE, f"its schedule is no longer valid ({problem})")
    if row.fingerprint == current:
        return None
    what = "; ".join(differences(row.fingerprint, current)) or "the schedule changed"
    times = [t for t in (row.send_at, send_at) if t is not None]
    deadline = min(times) - min_lead if times else now
    if now >= deadline:
        return _Decision(
            REFUSE,
            f"changed after it was handed over ({what}), found at {now:%Y-%m-%d %H:%M} UTC: too late to re-create it "
            f"before {deadline + min_lead:%H:%M} UTC (it takes at least {int(min_lead.total_seconds() // 60)} minutes "
            "before the old and the new send time)",
            current,
            send_at,
        )
    return _Decision(RECREATE, f"changed after hand-over: {what}", current, send_at)


def _reconcile(
    sender: Reconciler,
    row: ledger.LedgerRow,
    c: queries.ScheduledCampaign | None,
    day: dt.date,
    min_lead: dt.timedelta,
    out: Reconciled,
) -> str | None:
    """Reconcile one handed-over send: :data:`RECREATED` if it was re-based to be sent again,
    :data:`DROPPED` if it was deleted (or refused), None if it matches the schedule. The decision
    is taken again on the row as claimed: another run may have reconciled it meanwhile."""
    if _decide(row, c, day, sender.now(), min_lead) is None:
        return None
    claimed = _claim(sender, row)
    try:
        decision = _decide(claimed, c, day, sender.now(), min_lead)
        if decision is None:
            return None
        try:
            campaign = delete_ours(sender, claimed, attempts=sender.step_attempts, backoff_seconds=sender.step_backoff_seconds)
        except AlreadySent:
            note = f"{decision.why}; the prepared send {claimed.cheetah_name} was already sent"
            # Recorded once: the fingerprint now says what the schedule says (or nothing is left to compare).
            sender.ledger.note_history(claimed.send_key, sender.owner, note, fingerprint=decision.current)
            out.problems.append(f"{claimed.send_key}: {note}" + ("; it was not re-created." if decision.action == RECREATE else "."))
            return None
        if decision.action == RECREATE:
            new_name = ledger.cheetah_name(claimed.campaign_id, claimed.template_id, claimed.send_date, claimed.revision + 1)
            note = f"{decision.why}; {claimed.cheetah_name} deleted in Cheetah Messaging, re-created as {new_name}"
            sender.ledger.recreate(claimed.send_key, sender.owner, send_at=decision.send_at, note=note)
            out.notes.append(f"{claimed.send_key}: {note}")
            return RECREATED
        done = "was deleted in Cheetah Messaging" if campaign is not None else "had not reached Cheetah Messaging"
        note = f"{decision.why}; the prepared send {claimed.cheetah_name} {done}, so nothing goes out for it"
        sender.ledger.note_history(claimed.send_key, sender.owner, note, state=ledger.CANCELLED)
        if decision.action == REFUSE:
            out.problems.append(f"{claimed.send_key}: {note}: {_after_refusal(claimed, decision, sender.now())}")
        else:
            out.notes.append(f"{claimed.send_key}: {note}.")
        return DROPPED
    finally:
        sender.ledger.release(row.send_key, sender.owner)


def _after_refusal(row: ledger.LedgerRow, decision: _Decision, now: dt.datetime) -> str:
    """What happens next to a send whose change was refused (it is CANCELLED now): a new send time
    at least AGAIN_LEAD ahead is prepared again by the day's next run (plan._again); otherwise
    nothing goes out unless the campaign is scheduled again."""
    new = decision.send_at
    if new is not None and new != row.send_at and new - now >= AGAIN_LEAD:
        return (
            f"it is prepared again for its new time {fmt_utc(new)} by the day's next run (the preparation sensor "
            "requests it; or re-execute the day)."
        )
    return "schedule it again (a new time or day) if it is still wanted."


def _claim(sender: Reconciler, row: ledger.LedgerRow) -> ledger.LedgerRow:
    claimed = sender.ledger.claim(row.send_key, sender.owner, owner_alive=sender.owner_alive)
    if claimed is None:
        raise SendError(
            f"its schedule changed after hand-over, but run {row.claimed_by} holds it; it was left alone and is "
            "reconciled on the next run."
        )
    return claimed


def refreezer(sender: Reconciler, chunk_size: int = 10_000) -> Callable[[queries.ScheduledCampaign], None]:
    """``refreeze`` for :func:`reconcile_changes`: re-freeze a campaign's list exactly as the
    ``recipient_lists`` asset does (the Data Map's identifier and the fields the customer table has)."""

    def refreeze(c: queries.ScheduledCampaign) -> None:
        data_map = sender.client.get_data_map()
        columns = set(queries.reflect_customers(sender.engine).columns.keys())
        result = queries.freeze_recipient_list(
            sender.engine, campaign_id=c.campaign_id, send_date=c.send_date, target_group=c.target_group,
            identifier_column=data_map.identifier.map_to,
            fields={f.name: f.map_to for f in data_map.fields if not f.is_identifier and f.map_to in columns},
            template_ids=list(c.template_ids), chunk_size=chunk_size, now=sender.now(),
        )
        if result.reused:
            raise SendError(f"the list {result.list_key} is still locked by a send that was not re-based")

    return refreeze
