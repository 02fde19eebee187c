"""Reading an import file (``POST Import``'s ``fileData``) against a Data Map: pure functions, no
state. The part of an import that takes time, so :mod:`.imports` runs it outside the lock."""

from __future__ import annotations

import base64
import binascii
import csv
import io
from dataclasses import dataclass
from typing import Any, Mapping

from ..cheetah.contract import MAX_IMPORT_BYTES, MAX_IMPORT_ROWS
from .errors import SimError


@dataclass
class ParsedFile:
    """The outcome of reading an import file (pure; see :func:`parse_import_file`)."""

    rows: dict[str, dict[str, str]]  # identifier -> fields, later rows win
    rows_read: int
    rows_accepted: int
    rejected: list[dict[str, Any]]


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


def parse_import_file(file_data_b64: str, data_map: Mapping[str, Any]) -> ParsedFile | str:
    """Decode and read an import file against ``data_map``.

    Returns the parsed rows, or a failure reason (``str``) when the file is unreadable (the
    import then ends FAILED). Raises ``SimError`` 413 past the size/row limits and 400 for a
    header that does not name Data Map fields (the import is refused outright).
    Rows are numbered from 1 (the first data row); blank lines are skipped and not numbered.
    """
    if (len(file_data_b64) * 3) // 4 - 2 > MAX_IMPORT_BYTES:
        raise SimError(413, f"The import file is larger than {MAX_IMPORT_BYTES} bytes.")
    try:
        raw = base64.b64decode(file_data_b64, validate=True)
    except (binascii.Error, ValueError):
        return "fileData is not valid Base64."
    if len(raw) > MAX_IMPORT_BYTES:
        raise SimError(413, f"The import file is larger than {MAX_IMPORT_BYTES} bytes.")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return "The file is not UTF-8 text."
    try:
        reader = csv.reader(io.StringIO(text, newline=""), strict=True)
        header = next(reader, None)
        if not header:
            return "The file is empty: it has no header row."
        cols = check_header(header, data_map)
        data_rows = [row for row in reader if row]
    except csv.Error as exc:
        return f"The file is not readable CSV: {exc}."
    if len(data_rows) > MAX_IMPORT_ROWS:
        raise SimError(413, f"The import file has {len(data_rows)} rows; at most {MAX_IMPORT_ROWS} are allowed.")

    ident = next(f for f in data_map["fields"] if f.get("isIdentifier"))
    id_pos = cols.index(ident["name"])
    is_email = ident.get("type") == "email"
    rows: dict[str, dict[str, str]] = {}
    rejected: list[dict[str, Any]] = []
    accepted = 0
    width = len(cols)
    for n, row in enumerate(data_rows, start=1):
        if len(row) != width:
            rejected.append({"row": n, "reason": f"wrong number of columns ({len(row)}, expected {width})"})
            continue
        identifier = row[id_pos].strip()
        if not identifier or (is_email and not valid_email(identifier)):
            rejected.append({"row": n, "reason": "invalid identifier"})
            continue
        accepted += 1
        rows.pop(identifier, None)  # a later duplicate wins and moves to the end
        rows[identifier] = {c: v for j, (c, v) in enumerate(zip(cols, row)) if j != id_pos}
    return ParsedFile(rows=rows, rows_read=len(data_rows), rows_accepted=accepted, rejected=rejected)
