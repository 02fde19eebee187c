"""Whether a campaign found in Cheetah Messaging is provably the one a send created.

A campaign is adopted (taken over after a lost reply, or found by name) only when everything
its reply shows matches the send: the name exactly, our Cust_ID, our start time, and our list
(its ``ToFilterId``, or, when the reply does not echo the list, a recipient count equal to the
rows Cheetah accepted into our list); and, where the reply carries them, our folder and
template. Anything else is someone else's campaign: it is never launched, approved or deleted.
"""

from __future__ import annotations

import datetime as dt

from ..cheetah.contract import Campaign, ObjId, same_id
from .errors import ForeignCampaign
from .ledger import LedgerRow


def _when(value: dt.datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M} UTC" if value is not None else "no time"


def ownership_problem(campaign: Campaign, row: LedgerRow, *, cust_id: ObjId, folder_id: ObjId) -> str | None:
    """Why ``campaign`` cannot be proven to be ``row``'s (None when it provably is)."""
    if campaign.name != row.cheetah_name:
        return f"its name is {campaign.name!r}, not {row.cheetah_name!r}"
    if not same_id(campaign.cust_id, cust_id):
        return f"it belongs to Cust_ID {campaign.cust_id}, not ours ({cust_id})"
    if campaign.folder_id is not None and not same_id(campaign.folder_id, folder_id):
        return f"it is in folder {campaign.folder_id}, not ours ({folder_id})"
    if campaign.template_obj_id is not None and not same_id(campaign.template_obj_id, row.template_id):
        return f"it uses template {campaign.template_obj_id}, not ours ({row.template_id})"
    try:
        start = campaign.start_time
    except ValueError:
        start = None
    if start is None:
        return "its reply shows no start time to compare with ours"
    if row.send_at is None or start.replace(microsecond=0) != row.send_at.replace(microsecond=0):
        return f"it starts at {_when(start)}, not at ours ({_when(row.send_at)})"
    if campaign.list_id is not None:
        if row.list_id is None or not same_id(campaign.list_id, row.list_id):
            return f"it goes to list {campaign.list_id}, not ours ({row.list_id if row.list_id is not None else 'none yet'})"
    elif row.rows_accepted is None or campaign.recipient_count != row.rows_accepted:  # unknown (None): no match
        theirs = "unknown number of" if campaign.recipient_count is None else campaign.recipient_count
        return (
            f"its reply names no list, and its {theirs} recipients are not the "
            f"{row.rows_accepted if row.rows_accepted is not None else 'unknown number of'} we imported"
        )
    return None


def foreign(row: LedgerRow, campaign: Campaign, problem: str) -> ForeignCampaign:
    """The error that stops ``row``'s send because of a campaign we cannot prove is ours."""
    if campaign.name == row.cheetah_name:
        what = f"a campaign we did not create has our name {row.cheetah_name} (Cheetah id {campaign.camp_id})"
    else:
        what = f"Cheetah answered for {row.cheetah_name} with campaign {campaign.camp_id} ({problem})"
        problem = "it is not ours"
    return ForeignCampaign(
        f"Send {row.send_key} stopped: {what}: {problem}. It was left untouched (not launched, approved "
        "or deleted), and re-executing alone will not help: rename or delete it in Cheetah Messaging, "
        "then re-execute."
    )


def check_ours(campaign: Campaign, row: LedgerRow, *, cust_id: ObjId, folder_id: ObjId) -> Campaign:
    """``campaign`` if it is provably ``row``'s; :class:`ForeignCampaign` otherwise."""
    problem = ownership_problem(campaign, row, cust_id=cust_id, folder_id=folder_id)
    if problem is not None:
        raise foreign(row, campaign, problem)
    return campaign
