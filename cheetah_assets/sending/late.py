"""A send resumed after its send time is not handed over late (the protocol's guard).

A send interrupted after its list was imported (a crash, an outage, a failed step) may be resumed
after its send time. Creating, launching or approving it then would send it at once, late, though
nobody asked for that: approving a campaign whose start time has passed sends it immediately. So
before each of those steps, a send whose time has passed deletes what of ours exists in Cheetah
(so nobody approves it there by mistake) and is recorded MISSED with the reason. A campaign that
already reads back approved (or sent) went out at its time: the protocol records that as usual.
Sending late is a decision: ``send_late`` on the day's run, as for a send first prepared late.
"""

from __future__ import annotations

from ..cheetah.errors import UnknownCampaign
from . import ledger, plan
from .deletion import AlreadySent, Deleter, delete_ours

#: Ledger states from which a send still has a Cheetah step that would hand it over.
_BEFORE_HANDOVER = {ledger.IMPORTED: "created", ledger.CREATED: "launched", ledger.LAUNCHED: "approved"}
#: Campaign statuses that mean it was handed over already (nothing to stop).
_HANDED_OVER = frozenset({"APPROVED", "SENT"})


def stop_if_late(sender: Deleter, row: ledger.LedgerRow, now) -> ledger.LedgerRow | None:
    """The row recorded MISSED if its send time has passed before it was handed over, else None."""
    step = _BEFORE_HANDOVER.get(row.state)
    if step is None or row.send_at is None or row.send_at > now:
        return None
    if row.camp_id is not None:
        sender.before_cheetah_call(row, "check the time")
        try:
            if sender.client.get_campaign(row.camp_id).status in _HANDED_OVER:
                return None  # approved before the interruption: the protocol reads it back and records it
        except UnknownCampaign:
            pass  # gone: nothing of ours to delete (delete_ours finds the same)
    try:
        campaign = delete_ours(sender, row, backoff_seconds=sender.step_backoff_seconds)
    except AlreadySent:
        return None  # it went out meanwhile: the protocol reads it back and records it
    deleted = "" if campaign is None else f" Its campaign {row.cheetah_name} (Cheetah id {campaign.camp_id}) was deleted."
    return sender.ledger.advance(
        row.send_key, sender.owner, ledger.MISSED,
        error=(
            f"The send time {row.send_at:%Y-%m-%d %H:%M} UTC passed before the campaign was {step} (the send was "
            f"interrupted); nothing was sent.{deleted} To send it late, give it a later time or run the day with "
            "send_late."
        ),
    )


def revive(sender, todo) -> list[str]:
    """Re-base to PENDING (a new revision, under a new name) each send of ``todo`` that the ledger
    has MISSED or CANCELLED: the plan made it READY again (a new send time, or ``send_late``;
    :func:`.plan._again`). Nothing of its old campaign is in Cheetah to go out (MISSED and
    CANCELLED are recorded only once nothing went out and ours was deleted). One note per send."""
    notes = []
    for r in todo:
        if not (r.reason or "").startswith(plan.AGAIN):
            continue  # READY for another reason: a send that became MISSED or CANCELLED since stays so
        row = sender.ledger.get(r.send_key)
        if row is None or row.state not in (ledger.MISSED, ledger.CANCELLED) or ledger.other_account(row, sender.account):
            continue
        claimed = sender.ledger.claim(row.send_key, sender.owner, owner_alive=sender.owner_alive)
        if claimed is None:
            continue  # another run holds it: the protocol reports it when it gets there
        try:
            if claimed.state in (ledger.MISSED, ledger.CANCELLED):
                note = f"{claimed.state.lower()} before, {r.reason or 'prepared again'}"
                sender.ledger.recreate(claimed.send_key, sender.owner, send_at=r.send_at, note=note)
                notes.append(f"{claimed.send_key}: {note}")
        finally:
            sender.ledger.release(claimed.send_key, sender.owner)
    return notes
