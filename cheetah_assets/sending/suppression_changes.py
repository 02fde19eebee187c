"""Suppressed after hand-over: a send whose list in Cheetah holds someone suppressed since is sent again without them.

``late_suppression.check`` finds them (the preparation sensor every minute, and the day's run
before it sends); this is what the run does about them, through the machinery of ``changes.py``:

* **In time** (the send time at least :data:`~.changes.MIN_LEAD` ahead): claim the send, delete
  its campaign in Cheetah and read the deletion back (``deletion.delete_ours``: only a campaign
  provably ours; if the deletion cannot be confirmed nothing is created in its place), re-base the
  row to PENDING as revision N+1 (a new name, the same send time, a line in its history), and
  send it again through the normal protocol in the same run. The frozen list is not re-frozen: it
  is locked while the campaign's other templates' sends stand, and the import of the new revision
  leaves out everyone suppressed by then, as every import does, into a list of the new name. The
  campaign's other sends are not touched: the person is in one template's share only.
* **Too late** (less than MIN_LEAD before the send time, or it went out): the campaign is not
  cancelled (mailing everyone else late, or never, is worse than one person mailed minutes after
  unsubscribing). The send's history and the run's log say, as a warning, how many suppressed
  recipients will still be mailed (a number: their identifiers stay in ``cheetah_send_suppression``,
  stage ``mailed``, as rejections stay in ``cheetah_import_rejection``), ``campaign_sends``' metadata
  counts them, and ``suppressed_mailed_alert_sensor`` alerts once per send.

A suppression withdrawn before the run acts (the person subscribed again) is forgotten: nothing is
re-created for it. Each finding is acted on once: a re-created send's new revision has its own
list, which leaves the person out, and a finding recorded ``mailed`` is not found again.
"""

from __future__ import annotations

import datetime as dt

from ..cheetah.errors import CheetahError
from ..customers import queries
from ..customers.recipients import suppressed_now
from . import ledger, statuses
from .changes import MIN_LEAD, Reconciled, Reconciler
from .deletion import AlreadySent, delete_ours
from .errors import SendError
from .late_suppression import HANDED_OVER, MAILED, RECREATED, check, found_for, mark, withdraw
from .timing import fmt_utc


def reconcile_suppressions(
    sender: Reconciler, day: dt.date, out: Reconciled, *, min_lead: dt.timedelta = MIN_LEAD
) -> Reconciled:
    """Act on the day's handed-over sends whose recipients were found suppressed after hand-over
    (see the module's docstring); adds to ``out`` (re-created sends, notes, problems, and the
    number still mailed). Cheap when nothing was found: the day's check, and one query."""
    check(sender.engine, sender.now(), day=day)
    rows = [r for r in sender.ledger.for_day(day)
            if r.state in HANDED_OVER and not ledger.other_account(r, sender.account)]
    found = found_for(sender.engine, [(r.send_key, r.revision) for r in rows])
    if not found:
        return out
    suppressed = suppressed_now(sender.engine)
    cancelled = {c.campaign_id for c in queries.load_schedule(sender.engine, day) if statuses.is_cancelled(c.status)}
    for row in (r for r in rows if r.send_key in found and r.campaign_id not in cancelled):  # cancel.py deletes those
        still = [i for i in found[row.send_key] if i in suppressed]
        if len(still) < len(found[row.send_key]):  # subscribed again meanwhile: nothing to do for them
            withdraw(sender.engine, row.send_key, row.revision, set(found[row.send_key]) - set(still))
        if not still:
            continue
        try:
            _act(sender, row, still, min_lead, out)
        except (SendError, CheetahError) as exc:
            out.problems.append(f"{row.send_key}: {exc}")
    return out


def _who(n: int) -> str:
    return f"{n} recipient{'s' if n != 1 else ''} suppressed after the send was handed over"


def _act(sender: Reconciler, row: ledger.LedgerRow, ids: list[str], min_lead: dt.timedelta, out: Reconciled) -> None:
    claimed = sender.ledger.claim(row.send_key, sender.owner, owner_alive=sender.owner_alive)
    if claimed is None:
        raise SendError(
            f"{_who(len(ids))} were found, but run {row.claimed_by} holds the send; it was left alone, and the next "
            "run (the preparation sensor requests one) sends it again without them."
        )
    try:
        if claimed.revision != row.revision or claimed.state not in HANDED_OVER:
            return  # another run acted on it meanwhile
        now = sender.now()
        if claimed.send_at is not None and claimed.send_at - now >= min_lead:
            try:
                delete_ours(sender, claimed, attempts=sender.step_attempts,
                            backoff_seconds=sender.step_backoff_seconds)
            except AlreadySent:
                _too_late(sender, claimed, ids, now, min_lead, out, "it was already sent")
                return
            new_name = ledger.cheetah_name(
                claimed.campaign_id, claimed.template_id, claimed.send_date, claimed.revision + 1)
            note = (f"{_who(len(ids))} (found at {now:%H:%M} UTC): {claimed.cheetah_name} deleted in Cheetah "
                    f"Messaging, re-created as {new_name} without them")
            sender.ledger.recreate(claimed.send_key, sender.owner, send_at=claimed.send_at, note=note)
            mark(sender.engine, claimed.send_key, claimed.revision, ids, RECREATED, now)
            out.recreated.append(claimed.send_key)
            out.notes.append(f"{claimed.send_key}: {note}.")
            return
        _too_late(sender, claimed, ids, now, min_lead, out)
    finally:
        sender.ledger.release(row.send_key, sender.owner)


def _too_late(sender: Reconciler, row: ledger.LedgerRow, ids: list[str], now: dt.datetime, min_lead: dt.timedelta,
              out: Reconciled, why: str = "") -> None:
    """Record, once, that the campaign goes to suppressed recipients: it is not cancelled."""
    minutes = int(min_lead.total_seconds() // 60)
    when = fmt_utc(row.send_at) if row.send_at is not None else "its send time"
    why = why or f"too late to re-create it before its send time {when} (that takes at least {minutes} minutes)"
    note = (f"{_who(len(ids))} will still be mailed by {row.cheetah_name}: found at {now:%H:%M} UTC, {why}; the "
            "campaign was not cancelled, so that its other recipients are not mailed late or never")
    sender.ledger.note_history(row.send_key, sender.owner, note)
    mark(sender.engine, row.send_key, row.revision, ids, MAILED, now)
    out.notes.append(f"{row.send_key}: {note}.")
    out.still_mailed += len(ids)
