"""The one home of UTC coercion, ISO parsing and typed table metadata."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cheetah_assets.tables import KINDS, columns, table
from cheetah_assets.timeutil import parse_iso, utc

aware = st.datetimes(
    timezones=st.timezones(), min_value=dt.datetime(1970, 1, 2), max_value=dt.datetime(2200, 1, 1),
    allow_imaginary=False,
)


@given(aware)
def test_utc_keeps_the_instant_and_says_utc(value):
    out = utc(value)
    # compared as timestamps: Python never finds an ambiguous local time equal across zones (PEP 495)
    assert out.timestamp() == value.timestamp() and out.utcoffset() == dt.timedelta(0)


@given(st.datetimes())
def test_a_naive_value_is_read_as_utc(value):
    assert utc(value) == value.replace(tzinfo=dt.timezone.utc)


@given(aware)
def test_parse_iso_reads_every_spelling_of_an_instant(value):
    u = value.replace(microsecond=0).astimezone(dt.timezone.utc)
    fixed = u.astimezone(dt.timezone(value.utcoffset()))
    for text in (fixed.isoformat(), u.isoformat().replace("+00:00", "Z"), u.replace(tzinfo=None).isoformat()):
        assert parse_iso(text) == u


def test_a_table_types_its_cells_and_formats_rates():
    value = table(
        [("name", "string", ""), ("sent", "int", ""), ("open_rate", "percent", ""), ("at", "datetime", "")],
        [{"name": "A", "sent": 3, "open_rate": 0.009009009009009009, "at": dt.datetime(2026, 11, 23, 9)},
         {"name": "B", "sent": None, "open_rate": float("nan")}],
    )
    first, second = (r.data for r in value.records)
    assert first == {"name": "A", "sent": 3, "open_rate": "0.9%", "at": "2026-11-23 09:00 UTC"}
    assert second == {"name": "B", "sent": None, "open_rate": None, "at": None}
    assert [c.type for c in value.schema.columns] == ["string", "int", "string", "string"]


#: A table cell as written: no "|", nothing that ends a line, no surrounding blanks.
cell = st.text(st.characters(exclude_categories=("Cc", "Cs", "Zl", "Zp"), exclude_characters="|"), min_size=1).map(
    str.strip
).filter(bool)
column = st.tuples(cell, st.sampled_from(KINDS), cell)


@given(st.lists(column, max_size=8), st.lists(column, max_size=4, unique_by=lambda c: c[0]), st.data())
def test_columns_reads_a_text_table_and_names_shared_columns(written, known, data):
    """Each line is the column it spells (however it is padded), or, by its name alone, the known one."""
    picked = data.draw(st.lists(st.sampled_from(known), max_size=4)) if known else []
    lines = [f"  {name}  |{kind}   | {desc} " for name, kind, desc in written] + [f"   {c[0]}  " for c in picked]
    assert columns("\n\n".join(lines) + "\n", known) == written + picked


@pytest.mark.parametrize(
    "text", ["sent | integer | Rows sent", "sent | int", "sent | int | Rows | more", " | int | Rows", "unknown"]
)
def test_columns_refuses_what_is_not_a_column(text):
    with pytest.raises(ValueError, match="not a column"):
        columns(text, [("known", "int", "A shared column")])
