"""Whether a send date is *settled*: a run of it would hand nothing over and take nothing back.

``campaign_preparation_sensor`` requests a date when its due set is new to it or changed. Some of
those dates were already done by runs the sensor did not request: ``./run demo`` runs each day's
cycle itself (so ``./run dev``'s first tick, with no cursor, saw every due date as new), and so
do a backfill, the 00:15 schedule, or a reset cursor. Before requesting such a date the sensor
asks :func:`settled_days`, and leaves a settled date alone. A date is settled when

* every due campaign there is SCHEDULED, planned (``campaign_plan``) under its current name, and
  each of its templates is APPROVED in the send ledger, in this account, with the fingerprint of
  what the schedule says now (send time, templates, target group: ``fingerprint.py``); and
* every other send of that date that reached Cheetah belongs to a campaign still SCHEDULED there
  with that template and the same fingerprint (one moved away, deleted, cancelled or changed after
  hand-over is for a run to take back).

Anything else is not settled, and the date is requested as before: a send not APPROVED (failed,
interrupted, MISSED, EMPTY), one without a fingerprint (an older version's), another account's,
an INVALID row (no send time, no template, an unknown status). A date whose due set became empty
is never asked about: its run takes the campaign back. It reads the ledger and the plan of those
dates only on a tick where some due set changed (a quiet tick stays one query).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Iterable

import sqlalchemy as sa

from ..customers.queries import parse_template_ids
from ..customers.schema import campaign_plan, send_ledger
from . import fingerprint
from .ledger import APPROVED, TOUCHED_CHEETAH, Account
from .preparation import ScheduleRow
from .statuses import SCHEDULED, StatusProblem, parse_status


def _scheduled(row: ScheduleRow) -> tuple[tuple[str, ...], str] | None:
    """(templates, fingerprint) of a SCHEDULED row with a send time and templates; else None."""
    try:
        if parse_status(row.status) != SCHEDULED:
            return None
    except StatusProblem:
        return None
    send_at, templates = row.send_at(), parse_template_ids(row.template_ids)
    if send_at is None or not templates:
        return None
    return templates, fingerprint.fingerprint(send_at, templates, row.target_group)


def _unchanged(send, now: str) -> bool:
    return send["fingerprint"] is not None and not fingerprint.changed(send["fingerprint"], now)


def _settled(due: list[ScheduleRow], scheduled: list[ScheduleRow], sends: dict, names: dict, account: Account) -> bool:
    wanted: dict[tuple[str, str], str] = {}
    for row in scheduled:
        found = _scheduled(row)
        if found is not None:
            wanted.update({(row.campaign_id, t): found[1] for t in found[0]})
    for row in due:
        found = _scheduled(row)
        if found is None or names.get(row.campaign_id) != row.name:
            return False
        for template in found[0]:
            send = sends.get((row.campaign_id, template))
            if send is None or send["state"] != APPROVED or not _unchanged(send, found[1]):
                return False
            if send["endpoint"] is None or not Account(send["endpoint"], send["cust_id"] or "").same_as(account):
                return False
    return all(
        key in wanted and _unchanged(send, wanted[key]) for key, send in sends.items() if send["state"] in TOUCHED_CHEETAH
    )


def settled_days(
    engine: sa.Engine, rows: list[ScheduleRow], due: dict[str, list[ScheduleRow]], days: Iterable[str], account: Account
) -> set[str]:
    """Of ``days`` (ISO send dates), those with due campaigns that are settled. ``rows``: every
    schedule row of the window; ``due``: each date's due rows (``preparation.due_rows``)."""
    candidates = sorted(day for day in days if due.get(day))
    if not candidates:
        return set()
    dates = [dt.date.fromisoformat(day) for day in candidates]
    with engine.connect() as conn:
        tables = sa.inspect(conn)
        if not (tables.has_table(send_ledger.name) and tables.has_table(campaign_plan.name)):
            return set()
        ledger_rows = conn.execute(
            sa.select(send_ledger.c.send_date, send_ledger.c.campaign_id, send_ledger.c.template_id, send_ledger.c.state,
                      send_ledger.c.fingerprint, send_ledger.c.endpoint, send_ledger.c.cust_id)
            .where(send_ledger.c.send_date.in_(dates))
        ).mappings().all()
        plan_rows = conn.execute(
            sa.select(campaign_plan.c.send_date, campaign_plan.c.campaign_id, campaign_plan.c.campaign_name)
            .where(campaign_plan.c.send_date.in_(dates))
        ).all()
    sends: dict[str, dict] = defaultdict(dict)
    for send in ledger_rows:
        sends[send["send_date"].isoformat()][(send["campaign_id"], send["template_id"])] = send
    names: dict[str, dict] = defaultdict(dict)
    for plan in plan_rows:
        names[plan.send_date.isoformat()][plan.campaign_id] = plan.campaign_name
    scheduled: dict[str, list[ScheduleRow]] = defaultdict(list)
    for row in rows:
        scheduled[row.send_date.isoformat()].append(row)
    return {
        day for day in candidates
        if _settled(due[day], scheduled[day], sends[day], names[day], account)
    }
