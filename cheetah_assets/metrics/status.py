"""Each planned send's status in one row, plan -> list -> send -> metrics (plain functions, no
Dagster): what the ``campaign_status`` asset shows.

One row per planned send (campaign x template x day) of the last ``days`` days, read from the
day's plan (``cheetah_campaign_plan``), the frozen lists (``cheetah_recipient_list``), the send
ledger (``cheetah_send_ledger``) and the metric snapshots (``cheetah_metric_snapshot``): bounded
queries, whatever the history's length.

Two things a reader of the rows must not get wrong:

* ``recipients`` is the row's own template's share of the list: an A/B campaign's list is split
  between its templates, so its rows add up to the list (the whole list on each row read as
  twice the audience). A send handed over counts what its ledger row recorded when it left
  PENDING (the list cannot change after that); any other is counted in the frozen list, one
  grouped query over the lists not yet handed over (the freeze's own ``template_counts``).
* ``state`` is where the send is now (:func:`current_state`), not the status stored when the day
  was planned: a plan row says READY until the day is planned again, long after its send went out.
  The stored plan itself is left as it is (the send path reads it).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Collection, Iterable

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ..customers.recipients import UNLOCKED_STATES
from ..customers.schema import campaign_plan, metric_snapshot, recipient, recipient_list, send_ledger
from ..sending import plan as P
from ..sending.ledger import PENDING
from ..timeutil import utc
from .analysis import rate
from .due import overdue_days, overdue_window
from .snapshots import APPROVED, DAY, DAYS, run_key

#: How many days back the status view reaches: the metric week plus a week of history.
STATUS_DAYS = 14
_IN_CHUNK = 500


def campaign_names(engine: Engine, cheetah_names: Collection[str]) -> dict[str, str]:
    """Cheetah campaign name -> the Optimove campaign name its plan row gives (chunked queries)."""
    lg, pl = send_ledger.c, campaign_plan.c
    join = send_ledger.join(
        campaign_plan,
        sa.and_(pl.campaign_id == lg.campaign_id, pl.template_id == lg.template_id, pl.send_date == lg.send_date),
    )
    names = sorted(set(cheetah_names))
    out: dict[str, str] = {}
    with engine.connect() as conn:
        for i in range(0, len(names), _IN_CHUNK):
            query = sa.select(lg.cheetah_name, pl.campaign_name).select_from(join).where(lg.cheetah_name.in_(names[i : i + _IN_CHUNK]))
            out.update({r.cheetah_name: r.campaign_name for r in conn.execute(query)})
    return out


def metrics_stage(name: str, send_at: dt.datetime | None, taken: dict[int, dt.datetime], now: dt.datetime) -> str:
    """The metric week of sent campaign ``name`` in words, from its send time and the days taken
    (day -> fetched_at): not sent yet, not due, day k of 7, overdue days (as the
    ``snapshots_on_time`` check counts them), final, provisional."""
    if send_at is None:
        return "–"
    send_at, now = utc(send_at), utc(now)
    if now < send_at:
        return f"goes out {send_at:%m-%d %H:%M} UTC"
    early = sorted(k for k, fetched in taken.items() if utc(fetched) < send_at + k * DAY)
    keys = {run_key(name, k) for k in taken}
    overdue = overdue_days([(name, send_at)], now, keys.__contains__) if send_at >= overdue_window(now)[0] else []
    if overdue:
        return f"overdue: day {', '.join(str(d.day) for d in overdue)}"
    if early:
        return f"provisional (day {', '.join(map(str, early))} taken early)"
    if len(DAYS) in taken:
        return f"final ({len(taken)} of {len(DAYS)} days)"
    due = [k for k in DAYS if send_at + k * DAY <= now]
    if not due:
        return f"day 1 due {send_at + DAY:%m-%d %H:%M} UTC"
    return f"day {max(taken) if taken else 0} of {len(DAYS)} taken"


#: The words a metric week starts with (:func:`metrics_stage`) -> the campaign's stage.
_METRIC_STAGES = {"goes": "approved", "day": "measuring", "overdue:": "overdue", "provisional": "provisional", "final": "final"}
#: Ledger states after which nothing more is sent.
_ENDED = ("MISSED", "EMPTY", "CANCELLED")


def stage(plan: str, recipients: int | None, send: str | None, metrics: str) -> str:
    """Where one planned send is, in one word or two: planned, invalid, cancelled, missed, list
    frozen, sending, empty, approved (not out yet), measuring, overdue, provisional or final."""
    if send == APPROVED:
        return _METRIC_STAGES.get(metrics.split(" ")[0], "sent")
    if send in _ENDED:
        return send.lower()
    if send:
        return "sending"
    if plan in ("INVALID", "CANCELLED", "MISSED"):
        return plan.lower()
    return "list frozen" if recipients is not None else "planned"


def current_state(
    plan_status: str, plan_send_at: dt.datetime | None, send_state: str | None, send_at: dt.datetime | None, now: dt.datetime
) -> str:
    """Where a planned send is now, in the plan's and the ledger's words.

    Once the send has left PENDING, the ledger's state (IMPORTING … APPROVED, EMPTY, MISSED,
    CANCELLED), and SENT for an APPROVED one whose time has passed (Cheetah sent it then). Before
    that, the plan's status (READY, WAITING, INVALID, CANCELLED, MISSED, OVERDUE, SENT), except
    that a READY or WAITING send whose time passed before it was handed over is OVERDUE (nothing
    was sent), as the plan says when the day is planned again."""
    if send_state and send_state != PENDING:
        if send_state == APPROVED and send_at is not None and utc(send_at) <= utc(now):
            return P.SENT
        return send_state
    if plan_status in (P.READY, P.WAITING) and plan_send_at is not None and utc(plan_send_at) <= utc(now):
        return P.OVERDUE
    return plan_status


def template_label(template_id: str, index: int, count: int) -> str:
    """The template column: the objId, and "(i/n)" when the campaign splits its list between n."""
    return f"{template_id} ({index + 1}/{count})" if count > 1 else template_id


def send_time(send_at: dt.datetime | None, send_date: dt.date) -> str | None:
    """The execution time in UTC, short: HH:MM on the send date, MM-DD HH:MM on another UTC day."""
    if send_at is None:
        return None
    send_at = utc(send_at)
    return f"{send_at:%H:%M}" if send_at.date() == send_date else f"{send_at:%m-%d %H:%M}"


def _template_counts(conn: Connection, list_keys: Iterable[str]) -> dict[tuple[str, str], int]:
    """(list key, template) -> recipients of that template in the frozen list (grouped, chunked)."""
    keys, rc = sorted(set(list_keys)), recipient.c
    out: dict[tuple[str, str], int] = {}
    for i in range(0, len(keys), _IN_CHUNK):
        query = (
            sa.select(rc.list_key, rc.template_id, sa.func.count())
            .where(rc.list_key.in_(keys[i : i + _IN_CHUNK]))
            .group_by(rc.list_key, rc.template_id)
        )
        out.update({(k, t): int(n) for k, t, n in conn.execute(query)})
    return out


def _handed_over_count(send) -> int | None:
    """The template's recipients the ledger recorded when the send left PENDING (the list is
    locked from then on), or None when it has not (or the list may have been frozen again)."""
    if send is None or send["state"] in UNLOCKED_STATES:
        return None
    return send["rows_in_list"]


def status_rows(engine: Engine, now: dt.datetime, days: int = STATUS_DAYS) -> list[dict]:
    """One dict per planned send since ``now - days``, newest day first, a campaign's templates in
    their order (see the module doc)."""
    now = utc(now)
    since = now.date() - dt.timedelta(days=days)
    pl, rl, lg, ms = campaign_plan.c, recipient_list.c, send_ledger.c, metric_snapshot.c
    with engine.connect() as conn:
        plans = conn.execute(sa.select(campaign_plan).where(pl.send_date >= since)).mappings().all()
        lists = {
            (r.campaign_id, r.send_date): r.list_key
            for r in conn.execute(sa.select(rl.campaign_id, rl.send_date, rl.list_key).where(rl.send_date >= since))
        }
        sends = {
            (r["campaign_id"], r["template_id"], r["send_date"]): r
            for r in conn.execute(
                sa.select(lg.campaign_id, lg.template_id, lg.send_date, lg.cheetah_name, lg.state, lg.send_at, lg.camp_id,
                          lg.rows_in_list, lg.error).where(lg.send_date >= since)
            ).mappings()
        }
        to_count = [
            lists[(p["campaign_id"], p["send_date"])]
            for p in plans
            if (p["campaign_id"], p["send_date"]) in lists
            and _handed_over_count(sends.get((p["campaign_id"], p["template_id"], p["send_date"]))) is None
        ]
        counted = _template_counts(conn, to_count)
        sent = sorted(s["cheetah_name"] for s in sends.values() if s["state"] == APPROVED)
        snaps: dict[str, dict[int, dict]] = defaultdict(dict)
        for i in range(0, len(sent), _IN_CHUNK):
            query = sa.select(metric_snapshot).where(ms.cheetah_name.in_(sent[i : i + _IN_CHUNK]))
            for r in conn.execute(query).mappings():
                snaps[r["cheetah_name"]][r["day"]] = dict(r)
    rows = []
    for p in sorted(plans, key=lambda p: p["template_index"]):
        send = sends.get((p["campaign_id"], p["template_id"], p["send_date"]))
        taken = snaps.get(send["cheetah_name"], {}) if send else {}
        latest = taken[max(taken)] if taken else None
        approved = send is not None and send["state"] == APPROVED
        key = lists.get((p["campaign_id"], p["send_date"]))
        recipients = _handed_over_count(send)
        if recipients is None and key is not None:
            recipients = counted.get((key, p["template_id"]), 0)
        metrics = metrics_stage(send["cheetah_name"], send["send_at"], {k: r["fetched_at"] for k, r in taken.items()}, now) if approved else "–"
        plan_at = utc(p["send_at"]) if p["send_at"] else None
        rows.append(
            {
                "stage": stage(p["status"], recipients, send["state"] if send else None, metrics),
                "send_date": p["send_date"],
                "campaign": p["campaign_id"],
                "name": p["campaign_name"],
                "template": template_label(p["template_id"], p["template_index"], p["template_count"]),
                "send_at": plan_at,
                "time": send_time(plan_at, p["send_date"]),
                "state": current_state(p["status"], plan_at, send["state"] if send else None,
                                       send["send_at"] if send else None, now),
                "recipients": recipients,
                "ledger": send["state"] if send else "–",
                "metrics": metrics,
                "days_taken": len(taken) if approved else None,
                "delivered": latest["received"] if latest else None,
                "opened": rate(latest["message_opens"], latest["received"]) if latest else None,
                "clicked": rate(latest["message_clicks"], latest["received"]) if latest else None,
                "cheetah_name": send["cheetah_name"] if send else None,
                "note": (p["reason"] or (send["error"] if send else None)) or "",
            }
        )
    # Newest first; ``sorted`` with reverse=True is stable, so a campaign's templates keep their order.
    far_past = dt.datetime.min.replace(tzinfo=dt.timezone.utc)
    rows.sort(key=lambda r: (r["send_date"], r["send_at"] or far_past, r["campaign"]), reverse=True)
    return rows
