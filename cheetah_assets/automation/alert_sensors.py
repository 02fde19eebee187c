"""Sensors that raise alerts (``alerts.py``): a failed run, a MISSED send, an overdue snapshot, and
a send that will mail recipients suppressed after it was handed over (too late to re-create it).

Each alert goes out once: the MISSED sensor's cursor is the newest ledger update it reported and
the sends it reported within a look-back window before it (:data:`MISSED_SLACK`), the overdue
sensor's cursor the partitions it reported (kept until their week is over). With no alert channel
configured they skip, saying so, and report nothing later for what they skipped.
"""

from __future__ import annotations

import datetime as dt
import json

import dagster as dg
import sqlalchemy as sa

from ..clock import ClockResource
from ..customers.resource import CustomerDatabaseResource
from ..customers.schema import campaign_plan, send_ledger
from ..metrics import snapshots
from ..metrics.assets import snapshot_partition_key
from ..metrics.checks import overdue_now
from ..metrics.due import REGISTRATION_SLACK
from ..metrics.due import SNAPSHOT_GRACE  # noqa: F401 - the grace the alert's description states
from ..sending import late_suppression, ledger, plan
from ..timeutil import parse_iso, utc
from .alerts import Alert, AlertsResource
from .metric_sensors import read_cursor

_LIST = 20  # items named in one alert; the rest are counted


def _listed(items: list[str]) -> str:
    more = len(items) - _LIST
    return "\n".join(f"- {i}" for i in items[:_LIST]) + (f"\n… and {more} more" if more > 0 else "")


@dg.run_failure_sensor(
    name="alert_on_run_failure",
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Sends an alert (webhook and/or e-mail, when configured) for every failed run of this code location.",
)
def alert_on_run_failure(context: dg.RunFailureSensorContext, alerts: AlertsResource):
    if not alerts.enabled:
        return dg.SkipReason("no alert channel is configured (CHEETAH_ALERT_WEBHOOK_URL or SMTP settings)")
    run = context.dagster_run
    partition = run.tags.get("dagster/partition")
    error = (context.failure_event.message or "").strip().splitlines()
    step_errors = [
        (e.step_key, (e.event_specific_data.error.message if e.event_specific_data.error else "").strip())
        for e in context.get_step_failure_events()
    ]
    first = step_errors[0][1].splitlines()[0] if step_errors and step_errors[0][1] else (error[0] if error else "")
    alerts.notify(
        Alert(
            kind="run_failure",
            title=f"Run of {run.job_name}" + (f" for {partition}" if partition else "") + " failed",
            text=first or "The run failed; its event log says why.",
            details={"run_id": run.run_id, "job": run.job_name, "partition": partition or "",
                     "failed_steps": ", ".join(k for k, _ in step_errors)},
        )
    )


#: How far back the MISSED alert looks at the plans (the preparation sensor's own look-back).
PLAN_LOOK_BACK = dt.timedelta(days=14)


def _plan_not_sent(engine, since: dt.date) -> list[tuple[str, str]]:
    """(send key and status, reason) of the plan rows MISSED or OVERDUE on dates from ``since``."""
    p = campaign_plan.c
    query = sa.select(p.campaign_id, p.template_id, p.send_date, p.status, p.reason).where(
        p.status.in_((plan.MISSED, plan.OVERDUE)), p.send_date >= since
    )
    with engine.connect() as conn:
        rows = conn.execute(query.order_by(p.send_date, p.campaign_id, p.template_id)).all()
    return [(f"{ledger.send_key(r.campaign_id, r.template_id, r.send_date)} {r.status}", r.reason or "") for r in rows]


#: The MISSED alert re-reads the ledger's MISSED sends changed up to this long before the newest it
#: reported. ``updated_at`` is the writing run's clock, read before its transaction commits: a send
#: can become visible after a later one was reported (a slow commit, a wait for the row, a run whose
#: clock is a little behind). Those re-read and reported already are told apart by the cursor.
MISSED_SLACK = REGISTRATION_SLACK
#: At most this many reported sends are remembered (the newest); past it, the window shrinks to them.
MISSED_REMEMBERED = 2000


def _time(raw: object) -> dt.datetime | None:
    """An instant the cursor holds; None for anything else."""
    try:
        return parse_iso(raw) if isinstance(raw, str) else None
    except ValueError:
        return None


def _missed_id(row) -> str:
    """A MISSED send once: its key and revision (a send made again and MISSED again is new)."""
    return f"{row.send_key}#{row.revision or 0}"


def _ledger_missed(engine, previous: dict) -> tuple[list, dict]:
    """(the ledger's MISSED sends not reported yet, the cursor's part that remembers them).

    The cursor keeps ``t``, the newest ``updated_at`` of a MISSED send seen, and ``seen``, the sends
    reported with ``updated_at`` above ``t - MISSED_SLACK`` (each with its time), which the next tick
    re-reads over the ``(state, updated_at)`` index. ``floor`` raises the window's bottom when more
    than :data:`MISSED_REMEMBERED` were reported within it. A cursor from before ``seen`` is read
    as it was meant: everything above ``t`` is new."""
    high, floor = _time(previous.get("t")), _time(previous.get("floor"))
    seen = previous.get("seen")
    t = send_ledger.c
    query = sa.select(t.send_key, t.revision, t.error, t.updated_at).where(t.state == "MISSED")
    if high is not None:
        bottom = max(high - MISSED_SLACK, floor or high - MISSED_SLACK) if isinstance(seen, dict) else high
        query = query.where(t.updated_at > bottom)
    seen = {k: w for k, w in seen.items() if _time(w) is not None} if isinstance(seen, dict) else {}
    with engine.connect() as conn:
        rows = conn.execute(query.order_by(t.updated_at, t.send_key)).all()
    new = [r for r in rows if _missed_id(r) not in seen]
    seen.update((_missed_id(r), utc(r.updated_at).isoformat()) for r in new)
    if rows and (high is None or utc(rows[-1].updated_at) > high):
        high = utc(rows[-1].updated_at)
    if high is None:
        return new, {"t": None, "seen": {}}
    edge = max(high - MISSED_SLACK, floor or high - MISSED_SLACK)
    kept = sorted((w, k) for k, w in ((k, _time(w)) for k, w in seen.items()) if w > edge)
    if len(kept) > MISSED_REMEMBERED:
        edge = kept[-MISSED_REMEMBERED - 1][0]
        kept = [(w, k) for w, k in kept if w > edge]
    return new, {
        "t": high.isoformat(),
        "seen": {k: w.isoformat() for w, k in kept},
        "floor": edge.isoformat() if edge > high - MISSED_SLACK else None,
    }


@dg.sensor(
    minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Sends an alert (when configured) for every send newly MISSED or OVERDUE: its time passed "
        "unsent (the ledger's MISSED sends, and the plans' MISSED and OVERDUE campaigns)."
    ),
)
def missed_send_alert_sensor(
    context: dg.SensorEvaluationContext, customer_db: CustomerDatabaseResource, alerts: AlertsResource,
    clock: ClockResource,
):
    engine = customer_db.get_engine()
    snapshots.prepare_database(engine)  # the tables, once per process (not a write lock per tick)
    previous = read_cursor(context.cursor)
    rows, remembered = _ledger_missed(engine, previous)
    # A plan's MISSED (first seen too late) and OVERDUE (known, never handed over) campaigns: the
    # ledger never holds them. Each once: the cursor keeps those reported while they stay so.
    not_sent = _plan_not_sent(engine, clock.now().date() - PLAN_LOOK_BACK)
    reported = set(previous.get("plan") or []) if isinstance(previous.get("plan"), list) else set()
    new_plan = [(k, why) for k, why in not_sent if k not in reported]
    cursor = json.dumps({
        **remembered,
        "plan": sorted((reported & {k for k, _ in not_sent}) | {k for k, _ in new_plan}),
    })
    items = [f"{r.send_key}: {r.error or 'its send time passed'}" for r in rows]
    items += [f"{k}: {why or 'its send time passed, nothing was sent'}" for k, why in new_plan]
    if not items:
        context.update_cursor(cursor)
        return dg.SkipReason("no send newly MISSED or OVERDUE")
    if not alerts.enabled:
        context.update_cursor(cursor)
        return dg.SkipReason(f"{len(items)} sends newly MISSED or OVERDUE, but no alert channel is configured")
    alerts.notify(
        Alert(
            kind="missed_send",
            title=f"{len(items)} send{'s' if len(items) != 1 else ''} MISSED or OVERDUE: not sent",
            text=_listed(items),
            details={"sends": ", ".join([r.send_key for r in rows] + [k for k, _ in new_plan][:_LIST])},
        )
    )
    context.update_cursor(cursor)
    return dg.SkipReason(f"alerted {len(items)} MISSED or OVERDUE sends")


@dg.sensor(
    minimum_interval_seconds=900,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Sends an alert (when configured) for every metric snapshot still missing six hours after its "
        "day came, once per snapshot."
    ),
)
def overdue_snapshot_alert_sensor(
    context: dg.SensorEvaluationContext,
    customer_db: CustomerDatabaseResource,
    clock: ClockResource,
    alerts: AlertsResource,
):
    engine = customer_db.get_engine()
    snapshots.prepare_database(engine)
    now = clock.now()
    instance = context.instance
    # The same question the snapshots_on_time check asks, so the alert and the check agree.
    overdue = [(str(snapshot_partition_key(d.cheetah_name, d.day)), d.due_at) for d in overdue_now(instance, engine, now)]
    reported = set(read_cursor(context.cursor).get("reported", []))
    new = [(k, due) for k, due in overdue if k not in reported]
    still = {k for k, _ in overdue}
    cursor = json.dumps({"reported": sorted((reported & still) | {k for k, _ in new})})
    if not new:
        context.update_cursor(cursor)
        return dg.SkipReason(f"no newly overdue snapshot ({len(overdue)} overdue, already reported)")
    if alerts.enabled:
        alerts.notify(
            Alert(
                kind="overdue_snapshot",
                title=f"{len(new)} metric snapshot{'s' if len(new) != 1 else ''} overdue",
                text=_listed([f"{k} (due {due:%Y-%m-%d %H:%M} UTC)" for k, due in new]),
                details={"partitions": ", ".join(k for k, _ in new[:_LIST])},
            )
        )
    context.update_cursor(cursor)
    return dg.SkipReason(
        f"{'alerted' if alerts.enabled else 'no alert channel configured for'} {len(new)} overdue snapshots"
    )


#: How far back the alert on suppressed recipients still mailed looks (by when they were recorded).
STILL_MAILED_LOOK_BACK = dt.timedelta(days=2)


@dg.sensor(
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Sends an alert (when configured) for every send that will mail recipients suppressed after it was "
        "handed over, found too close to its send time to re-create it without them: how many, never who."
    ),
)
def suppressed_mailed_alert_sensor(
    context: dg.SensorEvaluationContext, customer_db: CustomerDatabaseResource, alerts: AlertsResource,
    clock: ClockResource,
):
    engine = customer_db.get_engine()
    snapshots.prepare_database(engine)
    mailed = late_suppression.still_mailed(engine, clock.now() - STILL_MAILED_LOOK_BACK)
    reported = read_cursor(context.cursor).get("reported")
    reported = reported if isinstance(reported, dict) else {}
    # Each send once, and again only if more of its recipients are found too late.
    new = {k: n for k, n in sorted(mailed.items()) if not isinstance(reported.get(k), int) or reported[k] < n}
    cursor = json.dumps({"reported": mailed})
    if not new:
        context.update_cursor(cursor)
        return dg.SkipReason("no send newly mails a recipient suppressed after hand-over")
    if not alerts.enabled:
        context.update_cursor(cursor)
        return dg.SkipReason(f"{len(new)} sends will mail suppressed recipients, but no alert channel is configured")
    items = [f"{k.rsplit('#', 1)[0]}: {n} recipient{'s' if n != 1 else ''} suppressed after hand-over, found "
             "too late to re-create the campaign without them (see the send's history)" for k, n in new.items()]
    alerts.notify(
        Alert(
            kind="suppressed_mailed",
            title=f"{sum(new.values())} suppressed recipient{'s' if sum(new.values()) != 1 else ''} will be mailed",
            text=_listed(items),
            details={"sends": ", ".join(k.rsplit("#", 1)[0] for k in list(new)[:_LIST])},
        )
    )
    context.update_cursor(cursor)
    return dg.SkipReason(f"alerted {len(new)} sends that mail suppressed recipients")


ALERT_SENSORS = [
    alert_on_run_failure, missed_send_alert_sensor, overdue_snapshot_alert_sensor, suppressed_mailed_alert_sensor,
]
