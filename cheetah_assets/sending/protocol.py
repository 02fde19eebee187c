"""The send protocol: one ledger row from PENDING to APPROVED, exactly once.

Each step re-reads Cheetah Messaging before it acts, and the ledger advances only after the
step's call succeeded. So whatever stopped the previous attempt (a lost reply, a 5xx, a crash
of the run, a concurrent run), repeating the step either finds the work done or does it once:

=========  =================================================  =================================
state      step                                               how a repeat is harmless
=========  =================================================  =================================
PENDING    claim; note IMPORTING (locks the frozen list)       nothing sent to Cheetah yet
IMPORTING  import every recipient into the list named after    rows are keyed by identifier:
           the send, poll until each row is accepted or        importing again replaces them
           rejected with its reason
IMPORTED   create the campaign from the template, list and     the name is unique in the folder:
           execution time                                      a repeat finds it by name
CREATED    LAUNCH (after checking the list's size)             status re-read first
LAUNCHED   APPROVE                                             status re-read first
APPROVED   terminal: Cheetah sends at the start time           nothing more to do
=========  =================================================  =================================

Nothing here imports Dagster; the ``campaign_sends`` asset is a thin wrapper.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

import sqlalchemy as sa

from ..cheetah import contract
from ..cheetah.client import CheetahClient
from ..cheetah.errors import (
    AlreadyLaunched,
    BadRequest,
    CheetahError,
    ImportFailed,
    ImportTooLarge,
    NameAlreadyExists,
    RateLimited,
    ServerError,
    StartTimeInPast,
    TransportError,
)
from ..customers import queries
from ..customers.schema import campaign_schedule, recipient_list
from . import ledger as L

#: Errors after which repeating the step (which re-reads Cheetah first) may succeed.
TRANSIENT = (TransportError, ServerError, RateLimited)

log = logging.getLogger(__name__)


class SendError(RuntimeError):
    """A send could not be completed; the message says why and what the operator can do."""


class ClaimedElsewhere(SendError):
    pass


@dataclass
class SendOutcome:
    send_key: str
    cheetah_name: str
    state: str
    camp_id: int | None = None
    rows_in_list: int | None = None
    rows_accepted: int | None = None
    rows_rejected: int | None = None
    send_at: dt.datetime | None = None
    note: str = ""
    steps: list[str] = field(default_factory=list)

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


def _outcome(row: L.LedgerRow, note: str = "", steps: list[str] | None = None) -> SendOutcome:
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
        steps=steps or [],
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
    claim_wait_seconds: float = 30.0
    claim_poll_seconds: float = 0.5

    def __post_init__(self):
        self.ledger = L.Ledger(self.engine, self.now)
        self._identifier: str | None = None

    # ------------------------------------------------------------------------------------------
    def send(self, key: str) -> SendOutcome:
        """Take one ledger row as far as it goes: APPROVED, or a terminal state with a reason."""
        row = self.ledger.get(key)
        if row is None:
            raise KeyError(key)
        if row.terminal:
            return _outcome(row, "already done")
        row = self._claim(row)
        steps: list[str] = []
        try:
            while not row.terminal:
                row = self._with_retries(row, steps)
            return _outcome(row, steps=steps)
        finally:
            self.ledger.release(key, self.owner)

    def _claim(self, row: L.LedgerRow) -> L.LedgerRow:
        deadline = time.monotonic() + self.claim_wait_seconds
        while True:
            claimed = self.ledger.claim(row.send_key, self.owner, owner_alive=self.owner_alive)
            if claimed is not None:
                return claimed
            current = self.ledger.get(row.send_key)
            if current is not None and current.terminal:
                return current  # the other run finished it while we waited
            if time.monotonic() >= deadline:
                raise ClaimedElsewhere(
                    f"Send {row.send_key} is being worked on by run {current.claimed_by if current else '?'}; "
                    "it was left alone. Re-run once that run has finished."
                )
            time.sleep(self.claim_poll_seconds)

    def _with_retries(self, row: L.LedgerRow, steps: list[str]) -> L.LedgerRow:
        for attempt in range(1, self.step_attempts + 1):
            try:
                return self._step(row, steps)
            except TRANSIENT as exc:
                self.ledger.note_error(row.send_key, self.owner, str(exc))
                if attempt == self.step_attempts:
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

    def _call(self, row: L.LedgerRow, step: str) -> None:
        if self.on_step is not None:
            self.on_step(row.send_key, step)

    # ------------------------------------------------------------------------------------------
    def _step(self, row: L.LedgerRow, steps: list[str]) -> L.LedgerRow:
        key = row.send_key
        if self._cancelled_on_our_side(row):
            # Cancelled on our side meanwhile: delete whatever exists in Cheetah instead of sending.
            from .cancel import cancel_row  # local import: cancel imports this module

            return cancel_row(self, row)
        if row.state == L.PENDING:
            count = queries.count_recipients(self.engine, row.list_key, row.template_id)
            if count == 0:
                steps.append("empty")
                return self.ledger.advance(
                    key, self.owner, L.EMPTY, rows_in_list=0,
                    error="The frozen recipient list has no recipients for this template; nothing was sent.",
                )
            if row.send_at is not None and row.send_at <= self.now():
                return self.ledger.advance(
                    key, self.owner, L.MISSED,
                    error=f"The send time {row.send_at:%Y-%m-%d %H:%M} UTC passed before the campaign was prepared.",
                )
            steps.append("importing")
            return self.ledger.advance(key, self.owner, L.IMPORTING, rows_in_list=count, error=None)

        if row.state == L.IMPORTING:
            existing = self._find(row)
            if existing is not None:  # a previous attempt got further than the ledger knows
                steps.append("adopted")
                return self.ledger.advance(key, self.owner, L.CREATED, camp_id=existing.camp_id)
            list_id, accepted, rejected = self._import(row)
            self.ledger.record_rejections(key, rejected)
            if accepted == 0:
                return self.ledger.advance(
                    key, self.owner, L.EMPTY, list_id=list_id, rows_accepted=0, rows_rejected=len(rejected),
                    error=f"Cheetah rejected all {len(rejected)} recipients (see cheetah_import_rejection); "
                    "no campaign was created.",
                )
            steps.append("imported")
            return self.ledger.advance(
                key, self.owner, L.IMPORTED, list_id=list_id, rows_accepted=accepted, rows_rejected=len(rejected)
            )

        if row.state == L.IMPORTED:
            try:
                camp_id = self._create(row)
            except StartTimeInPast:
                return self.ledger.advance(
                    key, self.owner, L.MISSED,
                    error=f"Cheetah refused the start time {row.send_at:%Y-%m-%d %H:%M} UTC as past; nothing was sent.",
                )
            steps.append("created")
            return self.ledger.advance(key, self.owner, L.CREATED, camp_id=camp_id, error=None)

        if row.state == L.CREATED:
            self._call(row, "launch")
            campaign = self.client.get_campaign(row.camp_id)
            if campaign.status == "CANCELLED":
                return self.ledger.advance(key, self.owner, L.CANCELLED, error="Deleted in Cheetah Messaging.")
            if campaign.status == "DRAFT":
                self._check_list_size(row, campaign.recipient_count)
                try:
                    self.client.launch_campaign(row.camp_id)
                except AlreadyLaunched:
                    pass  # our previous attempt's reply was lost
            steps.append("launched")
            return self.ledger.advance(key, self.owner, L.LAUNCHED)

        if row.state == L.LAUNCHED:
            self._call(row, "approve")
            campaign = self.client.get_campaign(row.camp_id)
            if campaign.status == "CANCELLED":
                return self.ledger.advance(key, self.owner, L.CANCELLED, error="Deleted in Cheetah Messaging.")
            if campaign.status == "LAUNCHED":
                try:
                    self.client.approve_campaign(row.camp_id)
                except BadRequest:
                    if self.client.get_campaign(row.camp_id).status not in ("APPROVED", "SENT"):
                        raise
            steps.append("approved")
            return self.ledger.advance(key, self.owner, L.APPROVED, error=None)

        raise SendError(f"Send {key} is in state {row.state}, which the protocol does not know.")

    # --- steps ----------------------------------------------------------------------------------
    def _cancelled_on_our_side(self, row: L.LedgerRow) -> bool:
        with self.engine.connect() as conn:
            status = conn.execute(
                sa.select(campaign_schedule.c.status).where(campaign_schedule.c.campaign_id == row.campaign_id)
            ).scalar()
        return status == "CANCELLED"

    def _find(self, row: L.LedgerRow):
        self._call(row, "find")
        return self.client.find_campaign(row.cheetah_name)

    def _create(self, row: L.LedgerRow) -> int:
        existing = self._find(row)
        if existing is not None:
            return existing.camp_id
        self._call(row, "create")
        try:
            return self.client.create_campaign(
                name=row.cheetah_name, template_obj_id=row.template_id, list_id=row.list_id, start_time=row.send_at
            )
        except NameAlreadyExists:
            found = self._find(row)
            if found is None:
                raise SendError(
                    f"Cheetah says the campaign name {row.cheetah_name} is taken, but no campaign of that name "
                    "can be read back; check the Optimove folder in Cheetah Messaging."
                ) from None
            return found.camp_id
        except TRANSIENT:
            # The request may have been applied before the reply was lost: look before retrying.
            found = self._find(row)
            if found is not None:
                return found.camp_id
            raise

    def _check_list_size(self, row: L.LedgerRow, recipient_count: int) -> None:
        if row.rows_accepted is not None and recipient_count != row.rows_accepted:
            raise SendError(
                f"Campaign {row.cheetah_name} would go to {recipient_count} recipients but {row.rows_accepted} "
                "were imported; it was not launched. Check the list in Cheetah Messaging."
            )

    def _import(self, row: L.LedgerRow) -> tuple[int, int, list[tuple[str, str]]]:
        fields = _list_fields(self.engine, row.list_key, self._identifier_name())
        header = [fields.identifier_name, *fields.names]
        list_id: int | None = None
        accepted = 0
        rejected: list[tuple[str, str]] = []
        done = 0
        for batch in _files(self._recipients(row), header, self.max_rows_per_file, self.max_bytes_per_file):
            lid, acc, rej = self._import_file(row, header, batch)
            if list_id is not None and lid != list_id:
                raise ImportFailed(
                    f"Cheetah put the parts of {row.cheetah_name}'s list into different lists ({list_id}, {lid})."
                )
            list_id, accepted, done = lid, accepted + acc, done + len(batch)
            rejected.extend(rej)
            self.logger.info(
                "%s: imported %d of %d recipients (%d rejected so far)",
                row.cheetah_name, done, row.rows_in_list or done, len(rejected),
            )
        if done != (row.rows_in_list or 0):
            raise SendError(
                f"The frozen list of {row.send_key} yielded {done} rows but holds {row.rows_in_list}; nothing was "
                "created. Re-materialize the recipient list."
            )
        assert list_id is not None
        return list_id, accepted, rejected

    def _identifier_name(self) -> str:
        if self._identifier is None:
            self._identifier = self.client.get_data_map().identifier.name
        return self._identifier

    def _recipients(self, row: L.LedgerRow) -> Iterator[tuple[str, dict]]:
        for chunk in queries.iter_recipient_chunks(self.engine, row.list_key, row.template_id, self.chunk_size):
            yield from chunk

    def _import_file(self, row, header, batch) -> tuple[int, int, list[tuple[str, str]]]:
        data = _csv(header, batch)
        self._call(row, "import")
        try:
            import_id = self.client.start_import(
                list_name=row.cheetah_name, csv_bytes=data, file_name=f"{row.cheetah_name}.csv"
            )
        except ImportTooLarge:
            if len(batch) <= 1:
                raise
            half = len(batch) // 2
            self.logger.info("%s: a file of %d rows was too large; splitting it", row.cheetah_name, len(batch))
            a = self._import_file(row, header, batch[:half])
            b = self._import_file(row, header, batch[half:])
            return b[0], a[1] + b[1], a[2] + b[2]
        status = self.client.wait_for_import(import_id)
        rejected = []
        for r in status.rejected:
            if not 1 <= r.row <= len(batch):
                raise ImportFailed(f"Import {import_id} rejected row {r.row}, but the file had {len(batch)} rows.")
            rejected.append((batch[r.row - 1][0], r.reason))
        if status.rows_accepted + len(rejected) != len(batch):
            raise ImportFailed(
                f"Import {import_id} accounted for {status.rows_accepted} accepted and {len(rejected)} rejected rows "
                f"of {len(batch)}; the campaign was not created."
            )
        if status.list_id is None:
            raise ImportFailed(f"Import {import_id} completed without naming its list.")
        return status.list_id, status.rows_accepted, rejected


@dataclass(frozen=True)
class ListFields:
    identifier_name: str
    names: tuple[str, ...]


def _list_fields(engine: sa.Engine, list_key: str, identifier_name: str) -> ListFields:
    """The CSV header of a frozen list: the Data Map identifier field, then the list's fields."""
    with engine.connect() as conn:
        raw = conn.execute(sa.select(recipient_list.c.fields).where(recipient_list.c.list_key == list_key)).scalar()
    if raw is None:
        raise SendError(f"No frozen recipient list {list_key}: materialize recipient_lists for that day first.")
    return ListFields(identifier_name=identifier_name, names=tuple(json.loads(raw)))


def _files(rows: Iterable[tuple[str, dict]], header, max_rows: int, max_bytes: int) -> Iterator[list]:
    """Group streamed recipients into files within the import limits (rows and bytes)."""
    batch: list = []
    size = len(",".join(header)) + 2
    for ident, attrs in rows:
        rec = (ident, [attrs.get(n) for n in header[1:]])
        est = len(ident) + sum(len(str(v)) + 3 for v in rec[1]) + 4
        if batch and (len(batch) >= max_rows or size + est > max_bytes * 0.95):
            yield batch
            batch, size = [], len(",".join(header)) + 2
        batch.append(rec)
        size += est
    if batch:
        yield batch


def _csv(header: list[str], batch: list) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(header)
    for ident, values in batch:
        writer.writerow([ident, *["" if v is None else v for v in values]])
    return buf.getvalue().encode("utf-8")
