"""Deleting a send's campaign in Cheetah Messaging when the send is cancelled on our side.

Only a campaign provably ours is ever deleted: by the id the ledger recorded (read back under
our name), or, when a lost reply left no id, found by name and checked like an adoption
(``adoption.py``). A campaign with our name that we did not create is left untouched.
"""

from __future__ import annotations

import time
from typing import Protocol

from ..cheetah.client import CheetahClient
from ..cheetah.contract import Campaign, same_id
from ..cheetah.errors import TRANSIENT, CampaignAlreadySent, UnknownCampaign
from . import ledger
from .adoption import ownership_problem
from .errors import CancelError, NotConfirmed


class AlreadySent(CancelError):
    """The send's campaign went out already: it can no longer be deleted."""


class CancelNotConfirmed(CancelError, NotConfirmed):
    """Cheetah acknowledged the DELETE of a cancelled send's campaign, but it does not read back
    deleted: it may still go out. The row is not marked CANCELLED."""


class Deleter(Protocol):
    """What :func:`cancel_row` needs of the sender (``protocol.Sender`` is one)."""

    client: CheetahClient
    ledger: ledger.Ledger
    owner: str
    account: ledger.Account
    step_backoff_seconds: float

    def before_cheetah_call(self, row: ledger.LedgerRow, step: str) -> None: ...


def _our_campaign(sender: Deleter, row: ledger.LedgerRow) -> tuple[Campaign | None, str]:
    """The send's campaign in Cheetah (None if there is none of ours), and a note on what was found."""
    client = sender.client
    if row.camp_id is not None:
        try:
            campaign = client.get_campaign(row.camp_id)
        except UnknownCampaign:
            return None, ""
        if same_id(campaign.camp_id, row.camp_id) and campaign.name == row.cheetah_name:
            return campaign, ""
        return None, f" Reading campaign {row.camp_id} returned campaign {campaign.camp_id} ({campaign.name!r}); it was left untouched."
    if row.state in (ledger.PENDING, ledger.IMPORTING, ledger.MISSED, ledger.EMPTY):
        return None, ""  # we create a campaign only after IMPORTED: nothing of ours can exist
    found = client.find_campaign(row.cheetah_name)
    if found is None:
        return None, ""
    s = client.settings
    problem = ownership_problem(found, row, cust_id=s.cust_id, folder_id=s.folder_id)
    if problem is not None:
        return None, (
            f" A campaign we did not create has our name {row.cheetah_name} (Cheetah id {found.camp_id}: {problem}); "
            "it was left untouched."
        )
    return found, ""


def cancel_row(sender: Deleter, row: ledger.LedgerRow, *, attempts: int = 3) -> ledger.LedgerRow:
    """Delete the Cheetah campaign of a claimed ledger row (if it has one of ours), read the
    deletion back (:func:`_delete_and_read_back`), and only then mark the row CANCELLED.

    A DELETE that Cheetah acknowledges but does not apply leaves the campaign to go out: then the
    row keeps its state, its error says so, and :class:`CancelNotConfirmed` is raised (a
    :class:`NotConfirmed` the protocol repeats, and a :class:`CancelError` the cancel job and the
    day's run report); the next run, or the cancellation sensor, tries again."""
    if ledger.other_account(row, sender.account):
        raise CancelError(
            f"Send {row.send_key} went to another account ({row.account.describe() if row.account else '?'}), "
            f"not this one ({sender.account.describe()}); delete campaign {row.cheetah_name} there."
        )
    campaign, note = _our_campaign(sender, row)
    if campaign is not None:
        status = _delete_and_read_back(
            sender, row, campaign, attempts=attempts, backoff_seconds=sender.step_backoff_seconds
        )
        if status == "SENT":
            raise CancelError(
                f"Campaign {row.cheetah_name} (Cheetah id {campaign.camp_id}) was already sent; it cannot be cancelled."
            )
        if status not in _DELETED:
            when = f" at {row.send_at:%Y-%m-%d %H:%M} UTC" if row.send_at is not None else ""
            seen = "could not be read back" if status == "?" else f"still reads back as {status}"
            message = (
                f"Send {row.send_key} was cancelled on the Optimove side, but we could not confirm the deletion of "
                f"campaign {row.cheetah_name} (Cheetah id {campaign.camp_id}) in Cheetah Messaging: after {attempts} "
                f"DELETE attempts it {seen}, so it may still go out{when}. To stop it now, pause or delete it in "
                "Cheetah Messaging; the cancellation is retried by the next run and by the cancellation sensor."
            )
            sender.ledger.note_error(row.send_key, sender.owner, message)
            raise CancelNotConfirmed(message)
    return sender.ledger.advance(
        row.send_key,
        sender.owner,
        ledger.CANCELLED,
        camp_id=campaign.camp_id if campaign is not None else row.camp_id,
        error="Cancelled on the Optimove side" + (" and deleted in Cheetah Messaging." if campaign else ".") + note,
    )


def delete_ours(sender: Deleter, row: ledger.LedgerRow, *, attempts: int = 3, backoff_seconds: float = 1.0) -> Campaign | None:
    """Delete the send's campaign of ours in Cheetah and read it back until it shows CANCELLED
    (or unknown); the campaign as found (None if there was none of ours).

    :class:`AlreadySent` if it went out; :class:`NotConfirmed` if after ``attempts`` the deletion
    still cannot be read back (then nothing may be created in its place); a campaign with our
    name that we did not create is never deleted (:class:`CancelError`). Repeating is harmless:
    a campaign already CANCELLED is not deleted again."""
    campaign, note = _our_campaign(sender, row)
    if note:
        raise CancelError(f"Send {row.send_key} was not deleted:{note}")
    if campaign is None:
        return None
    status = _delete_and_read_back(sender, row, campaign, attempts=attempts, backoff_seconds=backoff_seconds)
    if status == "SENT":
        raise AlreadySent(f"Campaign {row.cheetah_name} (Cheetah id {campaign.camp_id}) was already sent.")
    if status in _DELETED:
        return campaign
    raise NotConfirmed(
        f"Campaign {row.cheetah_name} (Cheetah id {campaign.camp_id}) could not be confirmed deleted in "
        f"{attempts} attempts (it reads back as {status}); nothing was created in its place. Re-execute the run."
    )


#: What :func:`_delete_and_read_back` returns for a campaign confirmed deleted (CANCELLED, or unknown).
_DELETED = frozenset({"CANCELLED", "UNKNOWN"})


def _delete_and_read_back(
    sender: Deleter, row: ledger.LedgerRow, campaign: Campaign, *, attempts: int, backoff_seconds: float
) -> str:
    """Delete ``campaign`` (ours) and read it back, up to ``attempts`` times; its last status:
    CANCELLED or UNKNOWN (confirmed deleted), SENT (it went out), anything else (not confirmed:
    a DELETE acknowledged but not applied reads back as the campaign's old status, "?" when the
    read failed). A 404 on DELETE proves nothing: only the read-back decides."""
    status = campaign.status
    for attempt in range(attempts):
        if status in ("SENT", "CANCELLED"):
            return status
        if attempt:
            time.sleep(backoff_seconds * 2 ** (attempt - 1))
        sender.before_cheetah_call(row, "delete")
        try:
            sender.client.delete_campaign(campaign.camp_id)
        except CampaignAlreadySent:
            status = "SENT"
            continue
        except (UnknownCampaign, *TRANSIENT):
            pass  # the read-back below decides
        try:
            status = sender.client.get_campaign(campaign.camp_id).status
        except UnknownCampaign:
            return "UNKNOWN"
        except TRANSIENT:
            status = "?"
    return status
