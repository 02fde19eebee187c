"""Importing a send's frozen recipient list: files within the limits, each polled until every row
is accepted or rejected with its reason.

The files hold the frozen list less whoever was suppressed since it was frozen (a list is frozen
up to days before its send, and stays as it was once its send started): each row read is looked
up in the suppression list as the freeze normalises it (``recipients.suppressed_now``), and the
import checks that its files hold exactly the list's rows less those it left out. Whom it left
out is recorded (``late_suppression.record_left_out``): anyone else of the list suppressed once
the import is done is in Cheetah's list, and ``late_suppression.py`` finds them.

The list is named after the send (its Cheetah campaign name), so a repeated import finds it and
replaces its rows. Importing again never removes a row, though: an import resumed after an
attempt whose outcome is unknown (its reply lost, the run killed) may find the list holding
people the earlier attempt put in and who were suppressed since. Such an import, when it leaves
anyone out, goes into a list of its own instead (:func:`attempt_list_name`: the send's name and a
digest of whom it leaves out), so nobody left out can reach the campaign, the campaign's size
check still holds, and a further retry that leaves out the same people finds that same list.

Memory stays flat whatever the list's size: recipients stream from the database in chunks
straight into a CSV on disk (:class:`ImportPart`), and the client streams the request body
(the CSV in Base64) from another temporary file (``CheetahClient.start_import``)."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import logging
import tempfile
from dataclasses import dataclass, field
from typing import AbstractSet, Callable, Iterable, Iterator

import sqlalchemy as sa

from ..cheetah import contract
from ..cheetah.client import CheetahClient
from ..cheetah.contract import ObjId
from ..cheetah.errors import ImportFailed, ImportTooLarge
from ..customers import queries
from ..customers.recipients import recipients_among, suppressed_now
from ..customers.schema import recipient_list
from .errors import SendError
from .late_suppression import record_left_out
from .ledger import LedgerRow


def left_out_note(count: int) -> str:
    """What a send says of the frozen recipients its import left out: suppressed after the freeze."""
    if count == 1:
        return "1 recipient suppressed since the list was frozen was left out"
    return f"{count} recipients suppressed since the list was frozen were left out"


def left_out_of(record: dict) -> int:
    """How many frozen recipients a send's import left out, from its outcome record: ``recipients``
    (the frozen list's rows) less ``accepted`` and ``rejected`` (the rows of its files, which
    :meth:`ListImporter.run` checks are the frozen rows less those it left out); 0 before the import."""
    frozen, accepted, rejected = record.get("recipients"), record.get("accepted"), record.get("rejected")
    if frozen is None or accepted is None or rejected is None:
        return 0
    return max(0, frozen - accepted - rejected)


def attempt_list_name(cheetah_name: str, left_out: Iterable[str]) -> str:
    """The list of an import that leaves out ``left_out`` (normalised identifiers, suppressed since
    the freeze) after an attempt whose outcome is unknown: ``{cheetah_name}-s{16 hex digits}``, a
    digest of whom it leaves out. Only imports of the frozen list less exactly those people go into
    it (the list is locked once its send started importing), so it never holds anyone left out;
    a retry that leaves out the same people finds it again. Its last segment (``s`` and 16 hex
    digits) is never that of a send's name (8 digits, 16 hex digits, or ``r`` and a revision)."""
    digest = hashlib.sha256()
    for ident in sorted(left_out):
        digest.update(f"{len(ident)}:{ident}".encode("utf-8", "surrogatepass"))
    return f"{cheetah_name}-s{digest.hexdigest()[:16]}"


def list_fields(engine: sa.Engine, list_key: str) -> tuple[str, ...]:
    """The fields of a frozen list (its CSV header follows the Data Map identifier field)."""
    with engine.connect() as conn:
        raw = conn.execute(sa.select(recipient_list.c.fields).where(recipient_list.c.list_key == list_key)).scalar()
    if raw is None:
        raise SendError(f"No frozen recipient list {list_key}: materialize recipient_lists for that day first.")
    return tuple(json.loads(raw))


def _row_estimate(row: tuple) -> int:
    """A cautious size of one CSV row ``(identifier, *values)``, in characters."""
    return len(row[0]) + sum(map(len, map(str, row[1:]))) + 3 * (len(row) - 1) + 4


def file_segments(
    chunks: Iterable[list[tuple]], header, max_rows: int, max_bytes: int
) -> Iterator[tuple[bool, list[tuple]]]:
    """``(starts a new file, rows)`` runs of the streamed chunks of ``(identifier, *values)``
    rows: files of at most ``max_rows`` rows and, by a cautious estimate, 95 % of ``max_bytes``.
    The rows of a run go to one file; a run that starts a new file closes the one before."""
    base = len(",".join(header)) + 2
    limit = max_bytes * 0.95
    count, size, first = 0, base, True
    for chunk in chunks:
        start, starts_file = 0, False
        for i, est in enumerate(map(_row_estimate, chunk)):
            if first or count >= max_rows or size + est > limit:
                if i > start:
                    yield starts_file, chunk[start:i]
                start, starts_file = i, True
                count, size, first = 0, base, False
            count, size = count + 1, size + est
        if start < len(chunk):
            yield starts_file, chunk[start:]


def row_chunks(rows: Iterable[tuple[str, dict]], header, size: int = 10_000) -> Iterator[list[tuple]]:
    """``(identifier, attrs)`` rows as chunks of ``(identifier, *values in header order)``."""
    names = list(header[1:])
    chunk: list[tuple] = []
    for ident, attrs in rows:
        chunk.append((ident, *[attrs.get(n) for n in names]))
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def import_files(rows: Iterable[tuple[str, dict]], header, max_rows: int, max_bytes: int) -> Iterator[list]:
    """Group streamed recipients into files within the import limits (rows and bytes), each a
    list of ``(identifier, [values])``."""
    batch: list = []
    for new, run in file_segments(row_chunks(rows, header), header, max_rows, max_bytes):
        if new and batch:
            yield batch
            batch = []
        batch.extend((r[0], list(r[1:])) for r in run)
    if batch:
        yield batch


def csv_bytes(header: list[str], batch: list) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows((ident, *values) for ident, values in batch)  # csv writes None empty
    return buf.getvalue().encode("utf-8")


class ImportPart:
    """One import file, its CSV written to a temporary file as the recipients stream in: only the
    identifiers stay in memory (a rejection names its row). Close it (or use ``with``) when done."""

    def __init__(self, header: list[str]):
        self.header = header
        self.file = tempfile.TemporaryFile(prefix="cheetah-csv-")
        self._text = io.TextIOWrapper(self.file, encoding="utf-8", newline="")
        self._writer = csv.writer(self._text, lineterminator="\r\n")
        self._writer.writerow(header)
        self.identifiers: list[str] = []

    def add(self, ident: str, values: list) -> None:
        self.add_rows([(ident, *values)])

    def add_rows(self, rows: list[tuple]) -> None:
        """Rows ``(identifier, *values)``; a None value is written empty (the csv module's rule)."""
        self._writer.writerows(rows)
        self.identifiers.extend(r[0] for r in rows)

    def finish(self) -> "ImportPart":
        """Done writing: the CSV is complete in ``file`` (binary, read from its start)."""
        if self._text is not None:
            self._text.flush()
            self._text.detach()
            self._text = None
        return self

    def __len__(self) -> int:
        return len(self.identifiers)

    def halves(self) -> tuple["ImportPart", "ImportPart"]:
        """The part split in two (read back from its file): a file Cheetah found too large."""
        self.finish()
        self.file.seek(0)
        text = io.TextIOWrapper(self.file, encoding="utf-8", newline="")
        reader = csv.reader(text)
        next(reader)
        half = len(self) // 2
        a, b = ImportPart(self.header), ImportPart(self.header)
        for n, row in enumerate(reader):
            part = a if n < half else b
            part._writer.writerow(row)
            part.identifiers.append(row[0])
        text.detach()  # the wrapper must not close the part's file
        return a.finish(), b.finish()

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> "ImportPart":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def import_parts(chunks: Iterable[list[tuple]], header, max_rows: int, max_bytes: int) -> Iterator[ImportPart]:
    """Stream chunks of ``(identifier, *values)`` rows into import files within the limits
    (:func:`file_segments`), each written to disk; a part is complete when it is yielded, and
    closed when the next one starts."""
    part: ImportPart | None = None
    try:
        for new, run in file_segments(chunks, header, max_rows, max_bytes):
            if new and part is not None:
                yield part.finish()
                part.close()
                part = None
            if part is None:
                part = ImportPart(header)
            part.add_rows(run)
        if part is not None:
            yield part.finish()
    finally:
        if part is not None:
            part.close()


@dataclass
class ListImporter:
    """Imports one send's frozen list into the Cheetah list named after the send (or, resumed and
    leaving anyone out, into a list of its own: :func:`attempt_list_name`)."""

    client: CheetahClient
    engine: sa.Engine
    logger: logging.Logger
    identifier_name: str
    #: called before each Cheetah call with the step's name ("import").
    before_call: Callable[[str], None]
    #: called after each poll of an import (the sender renews its claim there).
    on_poll: Callable[[], None]
    chunk_size: int
    max_rows_per_file: int
    max_bytes_per_file: int
    #: The normalised suppression list now (the sender's :class:`~..customers.recipients.SuppressedNow`,
    #: shared by its imports; by default read afresh for this import).
    suppressed: Callable[[], AbstractSet[str]] | None = None
    #: True when an earlier attempt at this import may have been applied (its outcome is unknown):
    #: an import that leaves anyone out then goes into a list of its own (:func:`attempt_list_name`).
    resumed: bool = False
    #: the run's clock (when whom the import left out is recorded: ``late_suppression.record_left_out``).
    now: Callable[[], dt.datetime] = field(default=lambda: dt.datetime.now(dt.timezone.utc))
    #: after :meth:`run`: how many frozen recipients it left out (suppressed since the freeze).
    left_out: int = field(default=0, init=False)
    #: the name of the Cheetah list it imports into (set by :meth:`run`).
    list_name: str = field(default="", init=False)

    def run(self, row: LedgerRow) -> tuple[ObjId | None, int, list[tuple[str, str]]]:
        """Import the row's frozen recipients, less those suppressed since the freeze: (list id,
        rows accepted, [(identifier, reason)]). The list id is None, and nothing was imported, when
        every recipient was left out (the send then ends EMPTY, as any list without recipients)."""
        header = [self.identifier_name, *list_fields(self.engine, row.list_key)]
        list_id: ObjId | None = None
        accepted = 0
        rejected: list[tuple[str, str]] = []
        done = 0
        total = row.rows_in_list or 0
        skipped, whom = [0], []  # frozen recipients on the suppression list now: suppressed since the freeze
        leave_out = (self.suppressed or (lambda: suppressed_now(self.engine)))()
        self.list_name = self._list_name(row, leave_out)
        chunks = queries.iter_recipient_rows(
            self.engine, row.list_key, row.template_id, header[1:], self.chunk_size,
            leave_out=leave_out, skipped=skipped, left_out=whom,
        )
        for part_no, part in enumerate(import_parts(chunks, header, self.max_rows_per_file, self.max_bytes_per_file), 1):
            lid, acc, rej = self._import_file(row, part)
            if list_id is not None and not contract.same_id(lid, list_id):
                raise ImportFailed(
                    f"Cheetah put the parts of {row.cheetah_name}'s list into different lists ({list_id}, {lid})."
                )
            list_id, accepted, done = lid, accepted + acc, done + len(part)
            rejected.extend(rej)
            # Progress in the run's log when the list takes more than one file; a one-file list's
            # import is told by its send's outcome line.
            expected = total - skipped[0]
            self.logger.log(
                logging.INFO if done < expected or part_no > 1 else logging.DEBUG,
                "%s: imported %d of %d recipients (%d rejected so far)",
                row.cheetah_name, done, expected or done, len(rejected),
            )
        self.left_out = skipped[0]
        if self.left_out:  # the send's outcome line says it too (parallel.outcome_line)
            self.logger.debug("%s: %s", row.cheetah_name, left_out_note(self.left_out))
        if done + self.left_out != total:
            left_out = f" less the {self.left_out} suppressed since it was frozen" if self.left_out else ""
            raise SendError(
                f"The frozen list of {row.send_key} yielded {done} rows to import but holds {row.rows_in_list}"
                f"{left_out}; nothing was created. Re-materialize the recipient list."
            )
        # Whom this import left out: a suppression found once the list is in Cheetah is one of the others.
        record_left_out(self.engine, row.send_key, row.revision, whom, self.now())
        return list_id, accepted, rejected

    def _list_name(self, row: LedgerRow, leave_out: AbstractSet[str]) -> str:
        """The send's list, or, for a resumed import that leaves anyone out, a list of its own: the
        send's list may hold them from the earlier attempt, and importing again removes nobody."""
        if not self.resumed or not leave_out:
            return row.cheetah_name
        left_out = recipients_among(self.engine, row.list_key, row.template_id, leave_out)
        if not left_out:
            return row.cheetah_name
        name = attempt_list_name(row.cheetah_name, left_out)
        self.logger.info(
            "%s: an earlier import attempt's outcome is unknown, and it may have put in the %d recipient(s) "
            "suppressed since that this import leaves out; importing into list %s instead, "
            "which holds none of them",
            row.cheetah_name, len(left_out), name,
        )
        return name

    def _import_file(self, row, part: ImportPart) -> tuple[ObjId, int, list[tuple[str, str]]]:
        self.before_call("import")
        name = self.list_name or row.cheetah_name
        try:
            import_id = self.client.start_import(list_name=name, csv_file=part.file, file_name=f"{name}.csv")
        except ImportTooLarge:
            if len(part) <= 1:
                raise
            self.logger.info("%s: a file of %d rows was too large; splitting it", row.cheetah_name, len(part))
            first, second = part.halves()
            with first, second:
                a = self._import_file(row, first)
                b = self._import_file(row, second)
            return b[0], a[1] + b[1], a[2] + b[2]
        status = self.client.wait_for_import(import_id, on_poll=lambda _status: self.on_poll())
        rejected = []
        for r in status.rejected:
            if not 1 <= r.row <= len(part):
                raise ImportFailed(f"Import {import_id} rejected row {r.row}, but the file had {len(part)} rows.")
            rejected.append((part.identifiers[r.row - 1], r.reason))
        if status.rows_accepted + len(rejected) != len(part):
            raise ImportFailed(
                f"Import {import_id} accounted for {status.rows_accepted} accepted and {len(rejected)} rejected rows "
                f"of {len(part)}; the campaign was not created."
            )
        if status.list_id is None:
            raise ImportFailed(f"Import {import_id} completed without naming its list.")
        return status.list_id, status.rows_accepted, rejected
