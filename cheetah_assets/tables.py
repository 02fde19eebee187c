"""Tabular metadata for the Dagster UI: ``MetadataValue.table`` with a typed ``TableSchema``.

Dagster shows such a table sortable and scrollable, where a Markdown table is cut off at the
right edge. Build the schema once per table (:func:`schema`), then each materialization's rows
(:func:`table`)."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any, Iterable, Mapping, Sequence

import dagster as dg

#: column kinds: "string", "int", "float", "bool", "datetime", "percent" (a 0-1 ratio shown as text)
KINDS = ("string", "int", "float", "bool", "datetime", "percent")
Column = tuple[str, str, str]  # (name, kind, description)


def columns(text: str, known: Iterable[Column] = ()) -> list[Column]:
    """Columns written as a text table, one a line: ``name | kind | description``, or a bare
    ``name`` for the column of that name in ``known`` (columns several tables share).

    An unknown kind or name raises ``ValueError`` when the module declaring the table loads."""
    shared = {col[0]: col for col in known}
    out: list[Column] = []
    for line in filter(None, (raw.strip() for raw in text.splitlines())):
        cells = [cell.strip() for cell in line.split("|")]
        if len(cells) == 1 and cells[0] in shared:
            out.append(shared[cells[0]])
        elif len(cells) == 3 and cells[1] in KINDS and cells[0] and cells[2]:
            out.append((cells[0], cells[1], cells[2]))
        else:
            raise ValueError(f"not a column (name | kind | description, kind one of {KINDS}, or a known name): {line!r}")
    return out


def schema(columns: Sequence[Column]) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[
            dg.TableColumn(name, "string" if kind in ("datetime", "percent") else kind, description=desc)
            for name, kind, desc in columns
        ]
    )


def _cell(value: Any, kind: str) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if kind == "percent":
        return f"{float(value):.1%}"
    if kind == "datetime":
        return value.strftime("%Y-%m-%d %H:%M UTC") if isinstance(value, dt.datetime) else str(value)
    if kind == "int":
        return int(value)
    if kind == "float":
        return float(value)
    if kind == "bool":
        return bool(value)
    return str(value)


def table(columns: Sequence[Column], records: Iterable[Mapping[str, Any]], limit: int = 500) -> dg.MetadataValue:
    """Rows (at most ``limit``) of ``records`` under ``columns``, each cell typed by its column."""
    rows = [
        dg.TableRecord({name: _cell(rec.get(name), kind) for name, kind, _ in columns})
        for _, rec in zip(range(limit), records)
    ]
    return dg.MetadataValue.table(rows, schema=schema(columns))
