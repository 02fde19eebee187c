"""When a campaign is prepared, and which send dates the preparation sensor looks at (pure).

* The **business day** is a date in the account time zone (``CHEETAH_ACCOUNT_TIME_ZONE``): the
  send path's daily partitions are those days.
* A campaign belongs to the partition of its own ``send_date`` (the date the marketer scheduled,
  in the campaign's zone), whatever UTC day it goes out on.
* It is **prepared** (list frozen, imported, created, launched, approved) a lead time
  (``CHEETAH_LEAD_TIME_MINUTES``) before its send time: it is *due* once ``now >= send_at - lead``.
* The sensor's **window** is the send dates that can hold a due campaign not yet past its send
  time: campaign zones run from UTC-12 to UTC+14, so a date D starts as early as D-1 10:00 UTC
  and ends as late as D+1 12:00 UTC; seen from an account zone in the same range, that is
  ``[today - 2, today + ahead]`` with ``ahead`` growing with the lead time.
* After the sensor was stopped (an outage, a paused daemon), its first tick starts the window
  where its last tick's did, at most :data:`MAX_DAYS_BEHIND` days back: the dates it did not
  watch meanwhile are planned, and their campaigns reported MISSED or OVERDUE (never sent late),
  instead of being silently skipped.
"""

from __future__ import annotations

import datetime as dt
import math
from zoneinfo import ZoneInfo

#: The default lead time, and the largest one allowed.
DEFAULT_LEAD = dt.timedelta(minutes=120)
MAX_LEAD = dt.timedelta(days=7)
#: Days before the account's today whose campaigns can still be before their send time.
DAYS_BEHIND = 2
#: How far back the window reaches after the sensor was stopped (see :func:`window`).
MAX_DAYS_BEHIND = 14


def days_ahead(lead: dt.timedelta | None) -> int:
    """How many days after the account's today a due campaign's send date can be.

    The earliest send of date D is D 00:00 at UTC+14 (D-1 10:00 UTC); in an account zone at UTC-12
    that is D-2 22:00. Prepared ``lead`` earlier, it is due on D-2 (lead <= 22 h) or before."""
    lead = lead if lead is not None else dt.timedelta(0)
    extra = lead - dt.timedelta(hours=22)
    return 2 + max(0, math.ceil(extra / dt.timedelta(days=1)))


def business_day(now: dt.datetime, zone: str) -> dt.date:
    """Today in the account time zone."""
    return now.astimezone(ZoneInfo(zone)).date()


def window(
    now: dt.datetime, zone: str, lead: dt.timedelta | None, *, last_first: dt.date | None = None
) -> tuple[dt.date, dt.date]:
    """The first and last send date the preparation sensor reads (inclusive).

    ``last_first``: the first date of the sensor's previous tick. After an outage it is older
    than today - 2, and the window starts there (but not before today - :data:`MAX_DAYS_BEHIND`),
    so no date goes unread between two ticks."""
    today = business_day(now, zone)
    first = today - dt.timedelta(days=DAYS_BEHIND)
    if last_first is not None:
        first = min(first, max(last_first, today - dt.timedelta(days=MAX_DAYS_BEHIND)))
    return first, today + dt.timedelta(days=days_ahead(lead))


def prepare_at(send_at: dt.datetime, lead: dt.timedelta | None) -> dt.datetime | None:
    """When a campaign sent at ``send_at`` is prepared; None: at once (no lead time configured)."""
    return None if lead is None else send_at - lead


def is_due(send_at: dt.datetime | None, now: dt.datetime, lead: dt.timedelta | None) -> bool:
    """Whether a campaign is to be prepared now (a campaign without a valid time is due at once,
    so that its problem is reported)."""
    if send_at is None or lead is None:
        return True
    return now >= send_at - lead


def fmt_utc(at: dt.datetime) -> str:
    return at.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
