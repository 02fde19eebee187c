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


def zone(name: str):
    """``ZoneInfo(name)``, or ``ValueError`` for anything that is not an IANA time zone name.

    ``ZoneInfo`` raises more than ``ZoneInfoNotFoundError``/``ValueError``: a directory of the tz
    database ("America") raises ``IsADirectoryError``, an unreadable file ``PermissionError``, a
    name with a NUL ``ValueError``, a file that is not a zone file ``ValueError``. A schedule row
    holding one must be one invalid row, never a crash that stops every other campaign."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError, TypeError) as exc:
        raise ValueError(f"{name!r:.60} is not an IANA time zone name") from exc
