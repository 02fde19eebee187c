"""Time helpers, one home each: every instant in this project is an aware UTC ``datetime``."""

from __future__ import annotations

import datetime as dt


def utc(value: dt.datetime | None) -> dt.datetime | None:
    """``value`` as an aware UTC datetime. A naive value (SQLite hands those back) is UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value.astimezone(dt.timezone.utc)


def parse_iso(raw: str) -> dt.datetime:
    """An ISO-8601 instant (``Z`` or an offset; naive means UTC) as an aware UTC datetime.

    ``ValueError`` if ``raw`` is not one. Python 3.11's ``fromisoformat`` reads ``Z`` itself."""
    value = utc(dt.datetime.fromisoformat(raw.strip()))
    assert value is not None
    return value
