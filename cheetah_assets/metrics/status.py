"""Each campaign's status in one row, plan -> list -> send -> metrics (plain functions, no
Dagster): what the ``campaign_status`` asset shows.

One row per planned send (campaign x template x day) of the last ``days`` days, read from the
day's plan (``cheetah_campaign_plan``), the frozen lists (``cheetah_recipient_list``), the send
ledger (``cheetah_send_ledger``) and the metric snapshots (``cheetah_metric_snapshot``): four
bounded queries, whatever the history's length.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Collection

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ..customers.schema import campaign_plan, metric_snapshot, recipient_list, send_ledger
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


def status_rows(engine: Engine, now: dt.datetime, days: int = STATUS_DAYS) -> list[dict]:
    """One dict per planned send since ``now - days``, newest day first (see the module doc)."""
    now = utc(now)
    since = now.date() - dt.timedelta(days=days)
    pl, rl, lg, ms = campaign_plan.c, recipient_list.c, send_ledger.c, metric_snapshot.c
    with engine.connect() as conn:
        plans = conn.execute(sa.select(campaign_plan).where(pl.send_date >= since)).mappings().all()
        lists = {
            (r.campaign_id, r.send_date): r.row_count
            for r in conn.execute(sa.select(rl.campaign_id, rl.send_date, rl.row_count).where(rl.send_date >= since))
        }
        sends = {
            (r["campaign_id"], r["template_id"], r["send_date"]): r
            for r in conn.execute(
                sa.select(lg.campaign_id, lg.template_id, lg.send_date, lg.cheetah_name, lg.state, lg.send_at, lg.camp_id, lg.error).where(
                    lg.send_date >= since
                )
            ).mappings()
        }
        sent = sorted(s["cheetah_name"] for s in sends.values() if s["state"] == APPROVED)
        snaps: dict[str, dict[int, dict]] = defaultdict(dict)
        for i in range(0, len(sent), _IN_CHUNK):
            query = sa.select(metric_snapshot).where(ms.cheetah_name.in_(sent[i : i + _IN_CHUNK]))
            for r in conn.execute(query).mappings():
                snaps[r["cheetah_name"]][r["day"]] = dict(r)
    rows = []
    for p in plans:
        send = sends.get((p["campaign_id"], p["template_id"], p["send_date"]))
        taken = snaps.get(send["cheetah_name"], {}) if send else {}
        latest = taken[max(taken)] if taken else None
        approved = send is not None and send["state"] == APPROVED
        recipients = lists.get((p["campaign_id"], p["send_date"]))
        metrics = metrics_stage(send["cheetah_name"], send["send_at"], {k: r["fetched_at"] for k, r in taken.items()}, now) if approved else "–"
        rows.append(
            {
                "stage": stage(p["status"], recipients, send["state"] if send else None, metrics),
                "send_date": p["send_date"],
                "campaign": p["campaign_id"],
                "name": p["campaign_name"],
                "template": p["template_id"],
                "send at": utc(p["send_at"]) if p["send_at"] else None,
                "plan": p["status"],
                "recipients": recipients,
                "send": send["state"] if send else "–",
                "metrics": metrics,
                "days taken": len(taken) if approved else None,
                "delivered": latest["received"] if latest else None,
                "open_rate": rate(latest["message_opens"], latest["received"]) if latest else None,
                "click_rate": rate(latest["message_clicks"], latest["received"]) if latest else None,
                "cheetah_name": send["cheetah_name"] if send else None,
                "note": (p["reason"] or (send["error"] if send else None)) or "",
            }
        )
    rows.sort(key=lambda r: (r["send_date"], r["send at"] or dt.datetime.min.replace(tzinfo=dt.timezone.utc), r["campaign"], r["template"]), reverse=True)
    return rows
