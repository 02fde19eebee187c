"""Sensors that raise alerts (``alerts.py``): a failed run, a MISSED send, an overdue snapshot.

Each alert goes out once: the MISSED sensor's cursor is the newest ledger update it reported, the
overdue sensor's cursor the partitions it reported (kept until their week is over). With no
alert channel configured they skip, saying so, and report nothing later for what they skipped.
"""

from __future__ import annotations

import json

import dagster as dg
import sqlalchemy as sa

from ..clock import ClockResource
from ..customers.resource import CustomerDatabaseResource
from ..customers.schema import send_ledger
from ..metrics import snapshots
from ..metrics.assets import snapshot_partition_key
from ..metrics.checks import overdue_now
from ..metrics.due import SNAPSHOT_GRACE  # noqa: F401 - the grace the alert's description states
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


@dg.sensor(
    minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Sends an alert (when configured) for every send newly marked MISSED: its time passed unsent.",
)
def missed_send_alert_sensor(
    context: dg.SensorEvaluationContext, customer_db: CustomerDatabaseResource, alerts: AlertsResource
):
    engine = customer_db.get_engine()
    customer_db.ensure_tables()
    since = read_cursor(context.cursor).get("t")
    t = send_ledger.c
    query = sa.select(t.send_key, t.cheetah_name, t.send_at, t.error, t.updated_at).where(t.state == "MISSED")
    if since:
        query = query.where(t.updated_at > parse_iso(since))
    with engine.connect() as conn:
        rows = conn.execute(query.order_by(t.updated_at)).all()
    if not rows:
        return dg.SkipReason("no send newly MISSED")
    cursor = json.dumps({"t": utc(rows[-1].updated_at).isoformat()})
    if not alerts.enabled:
        context.update_cursor(cursor)
        return dg.SkipReason(f"{len(rows)} sends newly MISSED, but no alert channel is configured")
    alerts.notify(
        Alert(
            kind="missed_send",
            title=f"{len(rows)} send{'s' if len(rows) != 1 else ''} MISSED",
            text=_listed([f"{r.send_key}: {r.error or 'its send time passed'}" for r in rows]),
            details={"sends": ", ".join(r.send_key for r in rows[:_LIST])},
        )
    )
    context.update_cursor(cursor)
    return dg.SkipReason(f"alerted {len(rows)} MISSED sends")


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


ALERT_SENSORS = [alert_on_run_failure, missed_send_alert_sensor, overdue_snapshot_alert_sensor]
