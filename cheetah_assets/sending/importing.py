"""Importing a send's frozen recipient list: files within the limits, each polled until every row
is accepted or rejected with its reason."""

from __future__ import annotations

import csv
import io
import json
import logging
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import sqlalchemy as sa

from ..cheetah import contract
from ..cheetah.client import CheetahClient
from ..cheetah.contract import ObjId
from ..cheetah.errors import ImportFailed, ImportTooLarge
from ..customers import queries
from ..customers.schema import recipient_list
from .errors import SendError
from .ledger import LedgerRow


def list_fields(engine: sa.Engine, list_key: str) -> tuple[str, ...]:
    """The fields of a frozen list (its CSV header follows the Data Map identifier field)."""
    with engine.connect() as conn:
        raw = conn.execute(sa.select(recipient_list.c.fields).where(recipient_list.c.list_key == list_key)).scalar()
    if raw is None:
        raise SendError(f"No frozen recipient list {list_key}: materialize recipient_lists for that day first.")
    return tuple(json.loads(raw))


def import_files(rows: Iterable[tuple[str, dict]], header, max_rows: int, max_bytes: int) -> Iterator[list]:
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


def csv_bytes(header: list[str], batch: list) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(header)
    for ident, values in batch:
        writer.writerow([ident, *["" if v is None else v for v in values]])
    return buf.getvalue().encode("utf-8")


@dataclass
class ListImporter:
    """Imports one send's frozen list into the Cheetah list named after the send."""

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

    def run(self, row: LedgerRow) -> tuple[ObjId, int, list[tuple[str, str]]]:
        """Import the row's frozen recipients: (list id, rows accepted, [(identifier, reason)])."""
        header = [self.identifier_name, *list_fields(self.engine, row.list_key)]
        list_id: ObjId | None = None
        accepted = 0
        rejected: list[tuple[str, str]] = []
        done = 0
        for batch in import_files(self._recipients(row), header, self.max_rows_per_file, self.max_bytes_per_file):
            lid, acc, rej = self._import_file(row, header, batch)
            if list_id is not None and not contract.same_id(lid, list_id):
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

    def _recipients(self, row: LedgerRow) -> Iterator[tuple[str, dict]]:
        for chunk in queries.iter_recipient_chunks(self.engine, row.list_key, row.template_id, self.chunk_size):
            yield from chunk

    def _import_file(self, row, header, batch) -> tuple[ObjId, int, list[tuple[str, str]]]:
        data = csv_bytes(header, batch)
        self.before_call("import")
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
        status = self.client.wait_for_import(import_id, on_poll=lambda _status: self.on_poll())
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
