"""What the preparation sensor decides, as plain functions: which send dates have a due set that
changed since the last tick.

One indexed query reads the schedule rows of the window (``campaign_schedule.send_date`` is
indexed); everything else is computed here. A campaign is in its date's *due set* once
``now >= send_at - lead`` (or at once when its time cannot be resolved, so that the plan reports
it INVALID). Each due campaign enters the set with its whole row, so a change of its time,
templates, target group or status after it was due changes the set's digest, and the date is
prepared again.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass

import sqlalchemy as sa

from ..customers.schema import campaign_schedule
from .plan import PlanProblem, resolve_send_at
from .timing import is_due

_COLUMNS = ("campaign_id", "send_date", "send_time", "time_zone", "template_ids", "target_group", "status", "name")


@dataclass(frozen=True)
class ScheduleRow:
    campaign_id: str
    send_date: dt.date
    send_time: str
    time_zone: str | None
    template_ids: str
    target_group: str
    status: str
    name: str

    def send_at(self) -> dt.datetime | None:
        try:
            return resolve_send_at(self.send_date, self.send_time, self.time_zone)
        except PlanProblem:
            return None


def window_statement(first: dt.date, last: dt.date) -> sa.Select:
    return sa.select(*(campaign_schedule.c[n] for n in _COLUMNS)).where(
        campaign_schedule.c.send_date.between(first, last)
    )


def load_window(engine: sa.Engine, first: dt.date, last: dt.date) -> list[ScheduleRow]:
    """The schedule rows of send dates ``first``..``last``: one query, on the send_date index."""
    with engine.connect() as conn:
        rows = conn.execute(window_statement(first, last)).all()
    return [
        ScheduleRow(
            campaign_id=str(r.campaign_id), send_date=r.send_date, send_time=str(r.send_time or "").strip(),
            time_zone=(r.time_zone or "").strip() or None, template_ids=str(r.template_ids or ""),
            target_group=str(r.target_group or ""), status=str(r.status or ""), name=str(r.name or ""),
        )
        for r in rows
    ]


def _digest(items) -> str:
    return hashlib.sha1(json.dumps(sorted(items), default=str).encode()).hexdigest()[:16]


def _key(r: ScheduleRow) -> list:
    return [r.campaign_id, r.send_time, r.time_zone, r.template_ids, r.target_group, r.status, r.name]


def due_rows(rows: list[ScheduleRow], now: dt.datetime, lead: dt.timedelta | None) -> dict[str, list[ScheduleRow]]:
    """send date (ISO) -> the rows of its due campaigns, for every date with at least one."""
    due: dict[str, list[ScheduleRow]] = {}
    for r in rows:
        if is_due(r.send_at(), now, lead):
            due.setdefault(r.send_date.isoformat(), []).append(r)
    return dict(sorted(due.items()))


def due_digests(rows: list[ScheduleRow], now: dt.datetime, lead: dt.timedelta | None) -> dict[str, str]:
    """send date (ISO) -> digest of its due set, for every date with at least one due campaign."""
    return {day: _digest([_key(r) for r in due]) for day, due in due_rows(rows, now, lead).items()}


def all_digest(rows: list[ScheduleRow]) -> str:
    """A digest of every row of the window: when it changes, new campaigns may have appeared."""
    return _digest([[r.send_date.isoformat(), *_key(r)] for r in rows])


#: The digest of a due set that became empty (its run key's part; never stored in the cursor).
EMPTIED = "none"


def changed_days(previous: dict[str, str], current: dict[str, str], first: dt.date | None = None) -> list[str]:
    """The dates whose due set is new or differs from the previous tick's, and, from ``first`` on,
    those whose due set became empty: a campaign handed over and then moved to another date or a
    later time, or deleted, leaves its date with nothing due, and only a run of that date deletes
    its campaign in Cheetah before it goes out at the old time (a move to the next day would
    otherwise send it twice). A date before ``first`` left the window: nothing to do."""
    changed = [day for day, digest in current.items() if previous.get(day) != digest]
    if first is not None:
        changed += [day for day in previous if day not in current and _is_date_from(day, first)]
    return sorted(changed)


def _is_date_from(day: object, first: dt.date) -> bool:
    try:
        return isinstance(day, str) and dt.date.fromisoformat(day) >= first
    except ValueError:
        return False
