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


class Deleter(Protocol):
    """What :func:`cancel_row` needs of the sender (``protocol.Sender`` is one)."""

    client: CheetahClient
    ledger: ledger.Ledger
    owner: str
    account: ledger.Account

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


def cancel_row(sender: Deleter, row: ledger.LedgerRow) -> ledger.LedgerRow:
    """Delete the Cheetah campaign of a claimed ledger row (if it has one of ours) and mark the
    row CANCELLED."""
    if ledger.other_account(row, sender.account):
        raise CancelError(
            f"Send {row.send_key} went to another account ({row.account.describe() if row.account else '?'}), "
            f"not this one ({sender.account.describe()}); delete campaign {row.cheetah_name} there."
        )
    campaign, note = _our_campaign(sender, row)
    if campaign is not None and campaign.status == "SENT":
        raise CancelError(
            f"Campaign {row.cheetah_name} (Cheetah id {campaign.camp_id}) was already sent; it cannot be cancelled."
        )
    if campaign is not None and campaign.status != "CANCELLED":
        sender.before_cheetah_call(row, "delete")
        try:
            sender.client.delete_campaign(campaign.camp_id)
        except CampaignAlreadySent:
            raise CancelError(
                f"Campaign {row.cheetah_name} (Cheetah id {campaign.camp_id}) went out before it could be "
                "deleted; it cannot be cancelled."
            ) from None
        except UnknownCampaign:
            pass
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
    status = campaign.status
    for attempt in range(attempts):
        if status == "SENT":
            raise AlreadySent(f"Campaign {row.cheetah_name} (Cheetah id {campaign.camp_id}) was already sent.")
        if status == "CANCELLED":
            return campaign
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
            return campaign
        except TRANSIENT:
            status = "?"
    if status == "SENT":
        raise AlreadySent(f"Campaign {row.cheetah_name} (Cheetah id {campaign.camp_id}) was already sent.")
    if status == "CANCELLED":
        return campaign
    raise NotConfirmed(
        f"Campaign {row.cheetah_name} (Cheetah id {campaign.camp_id}) could not be confirmed deleted in "
        f"{attempts} attempts (it reads back as {status}); nothing was created in its place. Re-execute the run."
    )
