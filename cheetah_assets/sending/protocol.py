"""The send protocol: one ledger row from PENDING to APPROVED, exactly once.

Each step re-reads Cheetah Messaging before it acts, and the ledger advances only after Cheetah
reads back the state the step stands for. So whatever stopped the previous attempt (a lost
reply, a 5xx, a reply that claimed success for a request that was not applied, a crash of the
run, a concurrent run), repeating the step either finds the work done or does it once:

=========  =================================================  =================================
state      step                                               how a repeat is harmless
=========  =================================================  =================================
PENDING    claim; note IMPORTING and the account (endpoint,    nothing sent to Cheetah yet
           Cust_ID) it goes to (locks the frozen list)
IMPORTING  import every recipient (less those suppressed since   rows are keyed by identifier:
           the freeze) into the list named after the send,     importing again replaces them (a
           poll until each is accepted or rejected (a reason)  resumed import leaving some out: a
                                                               list of its own, importing.py)
IMPORTED   create the campaign from the template, list and     the name is unique in the folder:
           execution time; read it back                        a repeat finds it by name, and
                                                               adopts it only if provably ours
CREATED    LAUNCH (after checking the list's size); read it    status re-read first
           back until Cheetah shows it launched
LAUNCHED   APPROVE; read it back until Cheetah shows it        status re-read first
           approved
APPROVED   terminal: Cheetah sends at the start time           nothing more to do
=========  =================================================  =================================

A campaign with our name that we cannot prove we created (``adoption.py``) is never adopted,
launched, approved or deleted: that one send stops, and says so. The claim is renewed while a
step works; a send whose claim was taken over stops cleanly (``LostClaim``). A row recorded
against another account is started afresh for the current one (``Ledger.rebase``) only when
nothing there can go out; one whose campaign exists there (CREATED, LAUNCHED, APPROVED) is
refused until the operator releases it (``released``; ``elsewhere.py``).

Nothing here imports Dagster; the ``campaign_sends`` asset is a thin wrapper.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass
from typing import Callable

import sqlalchemy as sa

from ..cheetah import contract
from ..cheetah.client import CheetahClient
from ..cheetah.contract import Campaign, ObjId
from ..cheetah.errors import TRANSIENT, AlreadyLaunched, BadRequest, CheetahError
from ..cheetah.errors import NameAlreadyExists, StartTimeInPast
from ..customers import queries
from ..customers.recipients import SuppressedNow
from ..customers.schema import campaign_schedule
from . import ledger, statuses
from .adoption import check_ours, foreign
from .changes import handed_over
from .deletion import cancel_row
from .elsewhere import start_afresh
from .errors import ClaimedElsewhere, ListSizeMismatch, LostClaim, NotConfirmed, SendError, stopped
from .importing import ListImporter, left_out_note
from .late import stop_if_late

__all__ = ["Sender", "SendError", "SendOutcome", "ClaimedElsewhere"]

#: What the protocol repeats within a run: transient errors (repeating the step re-reads Cheetah
#: first), and requests not yet read back.
RETRIED = (*TRANSIENT, NotConfirmed)
LAUNCHED_OR_LATER = frozenset({"LAUNCHED", "APPROVED", "SENT"})
APPROVED_OR_LATER = frozenset({"APPROVED", "SENT"})

log = logging.getLogger(__name__)


@dataclass
class SendOutcome:
    send_key: str
    cheetah_name: str
    state: str
    camp_id: ObjId | None = None
    rows_in_list: int | None = None
    rows_accepted: int | None = None
    rows_rejected: int | None = None
    send_at: dt.datetime | None = None
    note: str = ""

    def as_record(self) -> dict:
        return {
            "cheetah_name": self.cheetah_name,
            "state": self.state,
            "camp_id": self.camp_id,
            "recipients": self.rows_in_list,
            "accepted": self.rows_accepted,
            "rejected": self.rows_rejected,
            "send_at": self.send_at.isoformat() if self.send_at else None,
            "note": self.note,
        }


def _outcome(row: ledger.LedgerRow, note: str = "") -> SendOutcome:
    return SendOutcome(
        send_key=row.send_key,
        cheetah_name=row.cheetah_name,
        state=row.state,
        camp_id=row.camp_id,
        rows_in_list=row.rows_in_list,
        rows_accepted=row.rows_accepted,
        rows_rejected=row.rows_rejected,
        send_at=row.send_at,
        note=note or (row.error or ""),
    )


@dataclass
class Sender:
    """Runs the protocol for ledger rows on behalf of one owner (a Dagster run id)."""

    client: CheetahClient
    engine: sa.Engine
    owner: str
    now: Callable[[], dt.datetime]
    owner_alive: Callable[[str], bool] = lambda _o: True
    logger: logging.Logger = log
    #: called before every Cheetah call with (send_key, step); progress logs, and fire drills.
    on_step: Callable[[str, str], None] | None = None
    chunk_size: int = 10_000
    max_rows_per_file: int = contract.MAX_IMPORT_ROWS
    max_bytes_per_file: int = contract.MAX_IMPORT_BYTES
    step_attempts: int = 4
    step_backoff_seconds: float = 1.0
    #: reads of a campaign after LAUNCH or APPROVE before the step counts as not applied.
    confirm_reads: int = 3
    claim_wait_seconds: float = 30.0
    claim_poll_seconds: float = 0.5
    #: send keys the operator released: handed over in another account, deleted there (elsewhere.py).
    released: frozenset[str] = frozenset()

    def __post_init__(self):
        self.ledger = ledger.Ledger(self.engine, self.now)
        self.account = ledger.account_of(self.client.settings)
        self._identifier: str | None = None
        self._suppressed = SuppressedNow(self.engine)  # for this sender's imports (reread each minute)
        self._renewed_at: dt.datetime | None = None

    # ------------------------------------------------------------------------------------------
    def send(self, key: str) -> SendOutcome:
        """Take one ledger row as far as it goes: APPROVED, or a terminal state with a reason.

        Raises :class:`SendError` (or a ``CheetahError``) when the send stops short; its text is
        kept in the ledger's ``error`` too."""
        row = self.ledger.get(key)
        if row is None:
            raise KeyError(key)
        if ledger.done_for_account(row, self.account):
            return _outcome(row, "already done")
        row = self.claim(row)
        if ledger.done_for_account(row, self.account) and row.claimed_by != self.owner:
            return _outcome(row, "already done")  # another run finished it while we waited
        steps: list[str] = []
        try:
            if ledger.other_account(row, self.account):
                row = start_afresh(self, row)  # or refused: it may go out there (elsewhere.py)
                steps.append("re-based")
            while not row.terminal:
                row = self._with_retries(row, steps)
            return _outcome(row)
        except SendError as exc:
            if not isinstance(exc, (LostClaim, ClaimedElsewhere)):
                self.ledger.note_error(key, self.owner, str(exc))
            raise
        except CheetahError as exc:
            current = self.ledger.get(key)
            error = stopped(key, current.state if current else row.state, exc)
            self.ledger.note_error(key, self.owner, str(error))
            raise error from exc
        finally:
            self.ledger.release(key, self.owner)

    def claim(self, row: ledger.LedgerRow) -> ledger.LedgerRow:
        """Claim the row for this owner, waiting up to ``claim_wait_seconds`` for another live run
        to let it go; the row as it is if that run finished it meanwhile, else ClaimedElsewhere."""
        deadline = time.monotonic() + self.claim_wait_seconds
        while True:
            claimed = self.ledger.claim(row.send_key, self.owner, owner_alive=self.owner_alive)
            if claimed is not None:
                self._renewed_at = self.now()
                return claimed
            current = self.ledger.get(row.send_key)
            if current is not None and ledger.done_for_account(current, self.account):
                return current  # the other run finished it while we waited
            if time.monotonic() >= deadline:
                raise ClaimedElsewhere(
                    f"Send {row.send_key} is being worked on by run {current.claimed_by if current else '?'}; "
                    "it was left alone. Re-run once that run has finished."
                )
            time.sleep(self.claim_poll_seconds)

    def _renew(self, row: ledger.LedgerRow) -> None:
        """Keep the claim while a step works (at most once per ``RENEW_EVERY`` of the run's clock)."""
        now = self.now()
        if self._renewed_at is None or now - self._renewed_at >= ledger.RENEW_EVERY:
            self.ledger.renew(row.send_key, self.owner)
            self._renewed_at = now

    def _with_retries(self, row: ledger.LedgerRow, steps: list[str]) -> ledger.LedgerRow:
        for attempt in range(1, self.step_attempts + 1):
            try:
                return self._step(row, steps)
            except RETRIED as exc:
                self.ledger.note_error(row.send_key, self.owner, str(exc))
                if attempt == self.step_attempts:
                    if isinstance(exc, SendError):
                        raise
                    raise SendError(
                        f"Send {row.send_key} stopped at {row.state} after {attempt} attempts: {exc} "
                        "Nothing was sent twice; re-execute the run to resume from this step."
                    ) from None
                self.logger.warning(
                    "%s: %s at %s (attempt %d of %d); re-checking Cheetah before repeating",
                    row.send_key, type(exc).__name__, row.state, attempt, self.step_attempts,
                )
                time.sleep(self.step_backoff_seconds * 2 ** (attempt - 1))
                row = self.ledger.get(row.send_key) or row
        raise AssertionError("unreachable")

    def before_cheetah_call(self, row: ledger.LedgerRow, step: str) -> None:
        """Run before every Cheetah call of a send: renew the claim, then report the step."""
        self._renew(row)
        if self.on_step is not None:
            self.on_step(row.send_key, step)

    # ------------------------------------------------------------------------------------------
    def _step(self, row: ledger.LedgerRow, steps: list[str]) -> ledger.LedgerRow:
        key = row.send_key
        if self._cancelled_on_our_side(row):
            # Cancelled on our side meanwhile: delete what of ours exists in Cheetah instead of sending.
            return cancel_row(self, row)
        if (late := stop_if_late(self, row, self.now())) is not None:
            return late  # its time passed while it was interrupted: deleted and MISSED, not sent late
        if row.state == ledger.PENDING:
            count = queries.count_recipients(self.engine, row.list_key, row.template_id)
            if count == 0:
                steps.append("empty")
                return self.ledger.advance(
                    key, self.owner, ledger.EMPTY, rows_in_list=0,
                    error="The frozen recipient list has no recipients for this template; nothing was sent.",
                )
            handover = handed_over(self.engine, row, self.now())  # what goes to Cheetah (changes.py)
            send_at = handover.get("send_at", row.send_at)
            if send_at is not None and send_at <= self.now():
                return self.ledger.advance(
                    key, self.owner, ledger.MISSED,
                    error=f"The send time {send_at:%Y-%m-%d %H:%M} UTC passed before the campaign was prepared.",
                )
            steps.append("importing")
            return self.ledger.advance(
                key, self.owner, ledger.IMPORTING, rows_in_list=count, error=None,
                endpoint=self.account.endpoint, cust_id=self.account.cust_id, **handover,
            )

        if row.state == ledger.IMPORTING:
            existing = self._find(row)
            if existing is not None:
                # We create a campaign only after IMPORTED is recorded: one now is not ours.
                raise foreign(
                    row, existing, "it existed before our list was imported, and we create ours only after that"
                )
            # Unless straight from PENDING in this call, an earlier attempt may have imported (importing.py).
            resumed = steps[-1:] != ["importing"] or "re-based" in steps
            steps.append("import")
            list_id, accepted, rejected = self._import(row, resumed)
            self.ledger.record_rejections(key, rejected)
            if accepted == 0:  # list_id None: everyone was suppressed since the freeze, nothing imported
                why = (f"Cheetah rejected all {len(rejected)} recipients (see cheetah_import_rejection)" if list_id is not None
                       else f"{left_out_note(row.rows_in_list or 0)}, so nothing was imported")
                return self.ledger.advance(key, self.owner, ledger.EMPTY, list_id=list_id, rows_accepted=0,
                                           rows_rejected=len(rejected), error=f"{why}; no campaign was created.")
            steps.append("imported")
            return self.ledger.advance(
                key, self.owner, ledger.IMPORTED, list_id=list_id, rows_accepted=accepted, rows_rejected=len(rejected)
            )

        if row.state == ledger.IMPORTED:
            try:
                camp_id = self._create(row)
            except StartTimeInPast:
                return self.ledger.advance(
                    key, self.owner, ledger.MISSED,
                    error=f"Cheetah refused the start time {row.send_at:%Y-%m-%d %H:%M} UTC as past; nothing was sent.",
                )
            steps.append("created")
            return self.ledger.advance(key, self.owner, ledger.CREATED, camp_id=camp_id, error=None)

        if row.state == ledger.CREATED:
            self.before_cheetah_call(row, "launch")
            campaign = self._read(row)
            if campaign.status == "DRAFT":
                self._check_list_size(row, campaign.recipient_count)
                try:
                    self.client.launch_campaign(row.camp_id)
                except AlreadyLaunched:
                    self.logger.info("%s: recovered: LAUNCH had been applied already", row.cheetah_name)
                campaign = self._confirm(row, "LAUNCH", LAUNCHED_OR_LATER)
            if campaign.status == "CANCELLED":
                return self.ledger.advance(key, self.owner, ledger.CANCELLED, error="Deleted in Cheetah Messaging.")
            steps.append("launched")
            return self.ledger.advance(key, self.owner, ledger.LAUNCHED, error=None)

        if row.state == ledger.LAUNCHED:
            self.before_cheetah_call(row, "approve")
            campaign = self._read(row)
            if campaign.status == "DRAFT":
                if "relaunch" in steps:
                    raise NotConfirmed(
                        f"Campaign {row.cheetah_name} (Cheetah id {row.camp_id}) keeps going back to DRAFT after "
                        "its LAUNCH was read back; it was not approved. Re-execute the run to try again."
                    )
                steps.append("relaunch")  # the ledger said more than Cheetah shows: launch it again
                return self.ledger.advance(
                    key, self.owner, ledger.CREATED,
                    error="The ledger said LAUNCHED, but Cheetah shows the campaign DRAFT; launching it again.",
                )
            if campaign.status == "LAUNCHED":
                try:
                    self.client.approve_campaign(row.camp_id)
                except BadRequest:
                    if self._read(row).status not in APPROVED_OR_LATER:
                        raise
                campaign = self._confirm(row, "APPROVE", APPROVED_OR_LATER)
            if campaign.status == "CANCELLED":
                return self.ledger.advance(key, self.owner, ledger.CANCELLED, error="Deleted in Cheetah Messaging.")
            steps.append("approved")
            return self.ledger.advance(key, self.owner, ledger.APPROVED, error=None)

        raise SendError(f"Send {key} is in state {row.state}, which the protocol does not know.")

    # --- steps ----------------------------------------------------------------------------------
    def _cancelled_on_our_side(self, row: ledger.LedgerRow) -> bool:
        with self.engine.connect() as conn:
            status = conn.execute(
                sa.select(campaign_schedule.c.status).where(campaign_schedule.c.campaign_id == row.campaign_id)
            ).scalar()
        return statuses.is_cancelled(status)

    def _find(self, row: ledger.LedgerRow) -> Campaign | None:
        self.before_cheetah_call(row, "find")
        return self.client.find_campaign(row.cheetah_name)

    def _ours(self, row: ledger.LedgerRow, campaign: Campaign) -> Campaign:
        s = self.client.settings
        return check_ours(campaign, row, cust_id=s.cust_id, folder_id=s.folder_id)

    def _read(self, row: ledger.LedgerRow) -> Campaign:
        """The send's campaign, read by id; a reply naming another campaign stops the send."""
        campaign = self.client.get_campaign(row.camp_id)
        if not contract.same_id(campaign.camp_id, row.camp_id) or campaign.name != row.cheetah_name:
            raise SendError(
                f"Send {row.send_key} stopped: reading campaign {row.camp_id} returned campaign {campaign.camp_id} "
                f"named {campaign.name!r}, not {row.cheetah_name}; nothing was launched or approved. "
                "Re-executing alone will not help: check both campaigns in Cheetah Messaging."
            )
        return campaign

    def _confirm(self, row: ledger.LedgerRow, action: str, wanted: frozenset[str]) -> Campaign:
        """Read the campaign back until it shows ``action`` applied (or it was deleted)."""
        for attempt in range(self.confirm_reads):
            if attempt:
                time.sleep(self.step_backoff_seconds * 2 ** (attempt - 1))
            campaign = self._read(row)
            if campaign.status in wanted or campaign.status == "CANCELLED":
                return campaign
        raise NotConfirmed(
            f"Cheetah Messaging acknowledged {action} of campaign {row.cheetah_name} (Cheetah id {row.camp_id}), "
            f"but {self.confirm_reads} reads later it still shows {campaign.status}; the send stays at {row.state}. "
            "Re-execute the run to resume it."
        )

    def _create(self, row: ledger.LedgerRow) -> ObjId:
        existing = self._find(row)
        if existing is not None:  # a previous attempt created it, and stopped before recording it
            return self._recovered(row, self._ours(row, existing), "an earlier attempt had created it")
        self.before_cheetah_call(row, "create")
        try:
            camp_id = self.client.create_campaign(
                name=row.cheetah_name, template_obj_id=row.template_id, list_id=row.list_id, start_time=row.send_at
            )
        except NameAlreadyExists:
            found = self._find(row)
            if found is None:
                raise SendError(
                    f"Cheetah says the campaign name {row.cheetah_name} is taken, but no campaign of that name "
                    "can be read back; check the Optimove folder in Cheetah Messaging, then re-execute."
                ) from None
            return self._recovered(row, self._ours(row, found), "the name was taken already")
        except TRANSIENT:
            # The request may have been applied before the reply was lost: look before retrying.
            found = self._find(row)
            if found is not None:
                return self._recovered(row, self._ours(row, found), "the reply to create was lost")
            raise
        return self._created(row, camp_id)

    def _created(self, row: ledger.LedgerRow, camp_id: ObjId) -> ObjId:
        """``camp_id`` if reading it back shows the campaign we just created; otherwise ours found
        by name, or an error. A reply naming another campaign is never adopted."""
        campaign = self.client.get_campaign(camp_id)
        if contract.same_id(campaign.camp_id, camp_id) and campaign.name == row.cheetah_name:
            return self._ours(row, campaign).camp_id
        found = self._find(row)
        if found is not None and not contract.same_id(found.camp_id, camp_id):
            return self._recovered(row, self._ours(row, found), f"the create reply named campaign {camp_id}")
        raise SendError(
            f"Send {row.send_key} stopped: Cheetah answered the create of {row.cheetah_name} with campaign {camp_id}, "
            f"which reads back as {campaign.camp_id} named {campaign.name!r}; it was not adopted. "
            "Re-execute the run to look the campaign up again."
        )

    def _recovered(self, row: ledger.LedgerRow, campaign: Campaign, why: str) -> ObjId:
        self.logger.info(
            "%s: recovered: %s; found campaign %s by name, checked that it is ours, and took it over",
            row.cheetah_name, why, campaign.camp_id,
        )
        return campaign.camp_id

    def _check_list_size(self, row: ledger.LedgerRow, recipient_count: int | None) -> None:
        if row.rows_accepted is None:
            raise ListSizeMismatch(
                f"Campaign {row.cheetah_name} was not launched: the number of recipients Cheetah accepted into "
                "its list is not recorded, so its size cannot be checked. Re-executing alone will not help: "
                "check the campaign and its list in Cheetah Messaging."
            )
        if recipient_count != row.rows_accepted:  # an unknown count (None) is never a match
            size, why = (recipient_count, "something else changed it") if recipient_count is not None else (
                "an unknown number of", "its reply gives no recipientCount")
            raise ListSizeMismatch(
                f"Campaign {row.cheetah_name} would go to {size} recipients but {row.rows_accepted} "
                "were accepted at import; it was not launched. Re-executing alone will not help: check its list "
                f"{row.list_id} in Cheetah Messaging ({why})."
            )

    def _import(self, row: ledger.LedgerRow, resumed: bool) -> tuple[ObjId, int, list[tuple[str, str]]]:
        if self._identifier is None:
            self._identifier = self.client.get_data_map().identifier.name
        return ListImporter(
            client=self.client, engine=self.engine, logger=self.logger, identifier_name=self._identifier,
            before_call=lambda step: self.before_cheetah_call(row, step), on_poll=lambda: self._renew(row),
            chunk_size=self.chunk_size, max_rows_per_file=self.max_rows_per_file, suppressed=self._suppressed,
            max_bytes_per_file=self.max_bytes_per_file, resumed=resumed, now=self.now).run(row)
