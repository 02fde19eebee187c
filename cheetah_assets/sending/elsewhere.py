"""A send recorded against another Cheetah Messaging account: started afresh, or refused.

Each ledger row records the account (endpoint and Cust_ID, ``ledger.Account``) it went to. When
the settings name another account (the credentials changed), this deployment can no longer reach
the old one, so what it left there cannot be read, deleted or taken back from here:

==========================  ==========================================  ==========================
state in the old account    what may exist there                        here
==========================  ==========================================  ==========================
PENDING, IMPORTING          nothing, or a list being imported           started afresh
IMPORTED                    its list; at most a DRAFT campaign (a       started afresh
                            create whose reply was lost), which
                            Cheetah never sends without LAUNCH and
                            APPROVE, calls only this deployment makes
MISSED, EMPTY, CANCELLED    nothing that can go out (MISSED and         started afresh
                            CANCELLED only once ours was deleted)
CREATED                     our campaign, perhaps launched already      **refused**
LAUNCHED                    our campaign, perhaps approved already      **refused**
APPROVED                    our campaign: it goes out at its time       **refused**
==========================  ==========================================  ==========================

Started afresh (``Ledger.rebase``): PENDING for this account, under the same name, from the same
frozen list. Refused (:class:`HandedOverElsewhere`, ``ledger.MAY_GO_OUT``): not re-based, not
sent, one paragraph saying which send, which old account, and what to do; re-executing cannot
help, and the run's other sends go on. The operator resolves it by restoring the old account's
settings (the send resumes there), or by deleting the campaign in the old account and then
releasing the send explicitly, by its key, in the run config of ``campaign_sends``
(``release_sends``); a released send is logged, noted in its ledger history, and started afresh.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Callable, Protocol

from . import ledger
from .errors import HandedOverElsewhere

#: How the reason of a plan row, and the refusal of a send, held by another account say it.
HELD = "handed over in another Cheetah Messaging account"
#: The run config that releases sends (the ``release_sends`` field of ``campaign_sends``).
RELEASE_CONFIG = "ops: {campaign_sends: {config: {release_sends: [...]}}}"

_THERE = {
    ledger.CREATED: "was created (it may have been launched and approved since)",
    ledger.LAUNCHED: "was launched (it may have been approved since)",
    ledger.APPROVED: "was approved",
}


class Rebaser(Protocol):
    """What :func:`start_afresh` needs of the sender (``protocol.Sender`` is one)."""

    ledger: ledger.Ledger
    owner: str
    account: ledger.Account
    logger: logging.Logger
    released: frozenset[str]
    now: Callable[[], dt.datetime]


def _when(row: ledger.LedgerRow, now: dt.datetime) -> str:
    if row.send_at is None:
        return "may go out from there"
    at = f"{row.send_at:%Y-%m-%d %H:%M} UTC"
    return f"may have gone out from there at {at}" if row.send_at <= now else f"may go out from there at {at}"


def refusal(row: ledger.LedgerRow, account: ledger.Account, now: dt.datetime) -> str:
    """Why a send handed over in another account is not sent in ``account``, and what to do."""
    old = row.account.describe() if row.account is not None else "?"
    campaign = f"{row.cheetah_name}" + (f" (Cheetah id {row.camp_id})" if row.camp_id is not None else "")
    return (
        f"Send {row.send_key} stopped: it was {HELD} ({old}), where its campaign {campaign} "
        f"{_THERE.get(row.state, f'reached {row.state}')}, so it {_when(row, now)}. It was neither started afresh "
        f"nor sent in this account ({account.describe()}): anyone both accounts reach would get it twice. "
        "Re-executing will not help: this account cannot see or delete that campaign. Either restore the old "
        "account's settings (its endpoint, Cust_ID and credentials), and the send resumes (or is done) there; or "
        "delete (cancel) that campaign in the old account (unless that account mails nobody real, a test account), "
        "then release the send: run its day with "
        f'ops: {{campaign_sends: {{config: {{release_sends: ["{row.send_key}"]}}}}}}, which starts it afresh here.'
    )


def plan_reason(row: ledger.LedgerRow, now: dt.datetime) -> str:
    """The reason of the plan row of a send handed over in another account (it starts with :data:`HELD`)."""
    old = row.account.describe() if row.account is not None else "?"
    return (
        f"{HELD} ({old}), where its campaign {row.cheetah_name} reached {row.state} and {_when(row, now)}; "
        "not sent in this one, and re-executing will not help: restore that account's settings, or delete the "
        f"campaign there and release the send ({RELEASE_CONFIG})"
    )


def start_afresh(sender: Rebaser, row: ledger.LedgerRow) -> ledger.LedgerRow:
    """The claimed ``row``, recorded against another account than the sender's, re-based to
    PENDING for the sender's account; :class:`HandedOverElsewhere` if its campaign may go out
    there (``ledger.MAY_GO_OUT``) and the operator has not released it (``sender.released``)."""
    key, old = row.send_key, row.account.describe() if row.account is not None else "?"
    if not ledger.handed_over_elsewhere(row, sender.account):
        sender.logger.warning(
            "%s was sent to another account (%s) but nothing there can go out (%s); starting it afresh for %s",
            key, old, row.state, sender.account.describe(),
        )
        return sender.ledger.rebase(key, sender.owner, sender.account)
    if key not in sender.released:
        raise HandedOverElsewhere(refusal(row, sender.account, sender.now()))
    sender.logger.warning(
        "%s: released by the run config (release_sends): it was %s (%s) at %s, and the operator says its "
        "campaign %s cannot go out there (deleted, or an account that mails nobody); starting it afresh for %s",
        key, HELD, old, row.state, row.cheetah_name, sender.account.describe(),
    )
    if (row.error or "").startswith(f"Send {key} stopped: it was {HELD}"):
        sender.ledger.note_error(key, sender.owner, None)  # our own refusal: the history says it was released
    return sender.ledger.rebase(key, sender.owner, sender.account, released=f"run {sender.owner} (release_sends)")
