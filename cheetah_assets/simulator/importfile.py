"""Reading an import file (``POST Import``'s ``fileData``, decoded to disk by :mod:`.streambody`)
against a Data Map, streaming: its rows go to the row store in batches, never all in memory.
The part of an import that takes time, so :mod:`.imports` runs it outside the lock."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import IO, Any, Callable, Mapping

from ..cheetah.contract import MAX_IMPORT_BYTES, MAX_IMPORT_ROWS
from .errors import SimError

#: Accepted rows handed to the row store at a time: at most this many, of at most about as many bytes.
STAGE_BATCH = 5000
STAGE_BYTES = 1024 * 1024


@dataclass
class ParsedFile:
    """The outcome of reading an import file (see :func:`parse_import_file`); its accepted rows
    went to the ``stage`` callback, not into this object."""

    rows_read: int
    rows_accepted: int
    rejected: list[dict[str, Any]]


@dataclass
class FileData:
    """``fileData`` of a streamed ``POST Import`` body: its CSV decoded into ``csv`` (a binary
    temporary file), or why it could not be (``failure``), and its Base64 length."""

    csv: IO[bytes]
    b64_length: int = 0
    failure: str | None = None


def valid_email(value: str) -> bool:
    """One ``@`` between a local part and a domain, no spaces, no dot at the domain's ends."""
    if value.count("@") != 1 or any(c.isspace() for c in value):
        return False
    local, domain = value.split("@")
    return bool(local) and bool(domain) and not domain.startswith(".") and not domain.endswith(".")


def check_header(header: list[str], data_map: Mapping[str, Any]) -> list[str]:
    """The header's field names, or 400 naming the first bad header cell."""
    fields = data_map["fields"]
    names = {f["name"] for f in fields}
    by_map_to = {f["mapTo"]: f["name"] for f in fields}
    by_lower = {f["name"].lower(): f["name"] for f in fields}
    ident = next(f["name"] for f in fields if f.get("isIdentifier"))
    cols = [h.strip() for h in header]
    seen: set[str] = set()
    for i, col in enumerate(cols, start=1):
        if not col:
            raise SimError(400, f"Column {i} of the header row is empty; every column needs a Data Map field name.")
        if col not in names:
            if col in by_map_to:
                raise SimError(400, f"Header '{col}' is a Map To name, not a Data Map field name: use "
                                    f"'{by_map_to[col]}'.")
            if col.lower() in by_lower:
                raise SimError(400, f"Header '{col}' is not a Data Map field name (names are case-sensitive): "
                                    f"use '{by_lower[col.lower()]}'.")
            raise SimError(400, f"Header '{col}' is not a field of Data Map {data_map['id']}.")
        if col in seen:
            raise SimError(400, f"Header '{col}' appears more than once.")
        seen.add(col)
    if ident not in seen:
        raise SimError(400, f"The header row has no column for the identifier field '{ident}'.")
    return cols


def parse_import_file(data: FileData, data_map: Mapping[str, Any],
                      stage: Callable[[list[tuple[int, str, dict[str, str]]]], None]) -> ParsedFile | str:
    """Read a decoded import file against ``data_map``, streaming: every accepted row goes to
    ``stage`` as ``(row number, identifier, fields)``, in batches (a later row of an identifier
    wins where they are stored).

    Returns the counts and rejections, or a failure reason (``str``) when the file is unreadable
    (the import then ends FAILED). Raises ``SimError`` 413 past the size/row limits and 400 for a
    header that does not name Data Map fields (the import is refused outright).
    Rows are numbered from 1 (the first data row); blank lines are skipped and not numbered.
    """
    if (data.b64_length * 3) // 4 - 2 > MAX_IMPORT_BYTES:
        raise SimError(413, f"The import file is larger than {MAX_IMPORT_BYTES} bytes.")
    if data.failure is not None:
        return data.failure
    data.csv.seek(0, io.SEEK_END)
    if data.csv.tell() > MAX_IMPORT_BYTES:
        raise SimError(413, f"The import file is larger than {MAX_IMPORT_BYTES} bytes.")
    text = io.TextIOWrapper(data.csv, encoding="utf-8-sig", newline="")
    try:
        # A first pass counts the rows: a file over the limit is refused before any row is staged.
        text.seek(0)
        rows = sum(1 for row in csv.reader(text, strict=True) if row) - 1
        if rows > MAX_IMPORT_ROWS:
            raise SimError(413, f"The import file has {rows} rows; at most {MAX_IMPORT_ROWS} are allowed.")
        text.seek(0)
        return _read_rows(csv.reader(text, strict=True), data_map, stage)
    except UnicodeDecodeError:
        return "The file is not UTF-8 text."
    except csv.Error as exc:
        return f"The file is not readable CSV: {exc}."
    finally:
        text.detach()


def _read_rows(reader, data_map, stage) -> ParsedFile | str:
    header = next(reader, None)
    if not header:
        return "The file is empty: it has no header row."
    cols = check_header(header, data_map)
    ident = next(f for f in data_map["fields"] if f.get("isIdentifier"))
    id_pos = cols.index(ident["name"])
    is_email = ident.get("type") == "email"
    rejected: list[dict[str, Any]] = []
    accepted = n = 0
    width = len(cols)
    batch: list[tuple[int, str, dict[str, str]]] = []
    size = 0
    for row in reader:
        if not row:
            continue
        n += 1
        if len(row) != width:
            rejected.append({"row": n, "reason": f"wrong number of columns ({len(row)}, expected {width})"})
            continue
        identifier = row[id_pos].strip()
        if not identifier or (is_email and not valid_email(identifier)):
            rejected.append({"row": n, "reason": "invalid identifier"})
            continue
        accepted += 1
        batch.append((n, identifier, {c: v for j, (c, v) in enumerate(zip(cols, row)) if j != id_pos}))
        size += sum(map(len, row))
        if len(batch) >= STAGE_BATCH or size >= STAGE_BYTES:
            stage(batch)
            batch, size = [], 0
    if batch:
        stage(batch)
    return ParsedFile(rows_read=n, rows_accepted=accepted, rejected=rejected)
