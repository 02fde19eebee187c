"""The one home of UTC coercion, ISO parsing and typed table metadata."""

from __future__ import annotations

import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from cheetah_assets.tables import table
from cheetah_assets.timeutil import parse_iso, utc

aware = st.datetimes(timezones=st.timezones(), min_value=dt.datetime(1970, 1, 2), max_value=dt.datetime(2200, 1, 1))


@given(aware)
def test_utc_keeps_the_instant_and_says_utc(value):
    out = utc(value)
    assert out == value and out.utcoffset() == dt.timedelta(0)


@given(st.datetimes())
def test_a_naive_value_is_read_as_utc(value):
    assert utc(value) == value.replace(tzinfo=dt.timezone.utc)


@given(aware)
def test_parse_iso_reads_every_spelling_of_an_instant(value):
    value = value.replace(microsecond=0)
    u = value.astimezone(dt.timezone.utc)
    for text in (value.isoformat(), u.isoformat().replace("+00:00", "Z"), u.replace(tzinfo=None).isoformat()):
        assert parse_iso(text) == value


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
