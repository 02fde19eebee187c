"""The time-lapse scenario of test_time_lapse.py: the campaigns, and the 72 simulated hours run
through the real definitions (cheetah_assets/automation/time_lapse.py).

It runs in a process of its own (``python -m cheetah_assets_tests.time_lapse_scenario SIM_URL DB_URL``)
because the send path's daily partitions are read from the environment when the
definitions load: the windows are in March and April 2026, before the default
``CHEETAH_PARTITION_START``, so the process gets ``CHEETAH_PARTITION_START=2026-03-01``. It prints
what the loop did as one JSON line; the test reads what went out from the simulator itself.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
import types
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from cheetah_assets.customers import seed
from cheetah_assets.customers.resource import CustomerDatabaseResource
from cheetah_assets.customers.schema import campaign_schedule

UTC = dt.timezone.utc
STEP = dt.timedelta(minutes=10)
PARTITION_START = "2026-03-01"
#: Window A: Europe/London and Asia/Beirut spring forward (29 March 2026, 01:00 and 28 March 22:00 UTC).
A_START, A_END = dt.datetime(2026, 3, 28, 0, 0, tzinfo=UTC), dt.datetime(2026, 3, 29, 12, 0, tzinfo=UTC)
#: Window B: Sydney, Auckland and Santiago fall back (4 April 16:00 and 14:00 UTC, 5 April 03:00 UTC).
B_START, B_END = dt.datetime(2026, 4, 4, 0, 0, tzinfo=UTC), dt.datetime(2026, 4, 5, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Planned:
    campaign_id: str
    zone: str
    day: dt.date  # local date in ``zone``
    at: str  # local wall time HH:MM

    @property
    def instant(self) -> dt.datetime:
        """The send instant, resolved here (an ambiguous wall time means its first occurrence)."""
        hour, minute = map(int, self.at.split(":"))
        local = dt.datetime.combine(self.day, dt.time(hour, minute), tzinfo=ZoneInfo(self.zone))
        return local.astimezone(UTC)


def d(month: int, day: int) -> dt.date:
    return dt.date(2026, month, day)


def planned(prefix: str, zone: str, *sends: tuple[dt.date, str]) -> list[Planned]:
    """The campaigns of one window in one zone, ``(local day, wall time)`` each, named
    ``<prefix>-1``, ``<prefix>-2``, … in order."""
    return [Planned(f"{prefix}-{n}", zone, day, at) for n, (day, at) in enumerate(sends, 1)]


CAMPAIGNS = [
    # ---- window A (spring forward)
    *planned("A-KIR", "Pacific/Kiritimati", (d(3, 29), "06:00"), (d(3, 29), "23:30")),
    *planned("A-TYO", "Asia/Tokyo", (d(3, 29), "08:00"), (d(3, 29), "19:00")),
    *planned("A-SYD", "Australia/Sydney", (d(3, 29), "10:00"), (d(3, 28), "18:00")),
    *planned("A-KOL", "Asia/Kolkata", (d(3, 29), "05:30"), (d(3, 28), "09:00")),
    # GMT, half an hour before the change; BST; the day before
    *planned("A-LON", "Europe/London", (d(3, 29), "00:30"), (d(3, 29), "03:00"), (d(3, 28), "09:00")),
    *planned("A-NYC", "America/New_York", (d(3, 28), "09:00"), (d(3, 28), "23:45")),
    *planned("A-LAX", "America/Los_Angeles", (d(3, 28), "17:00")),
    *planned("A-PPG", "Pacific/Pago_Pago", (d(3, 28), "20:00"), (d(3, 27), "23:00")),
    *planned("A-UTC", "UTC", (d(3, 29), "00:05"), (d(3, 28), "12:00")),
    # EEST, after the change; EET, an hour before it
    *planned("A-BEY", "Asia/Beirut", (d(3, 29), "07:00"), (d(3, 28), "21:00")),
    # ---- window B (fall back)
    # AEDT; the repeated hour (its first occurrence); AEST
    *planned("B-SYD", "Australia/Sydney", (d(4, 5), "01:30"), (d(4, 5), "02:30"), (d(4, 5), "08:00")),
    # NZST; NZDT
    *planned("B-AKL", "Pacific/Auckland", (d(4, 5), "09:00"), (d(4, 4), "20:00")),
    *planned("B-SCL", "America/Santiago", (d(4, 4), "20:00"), (d(4, 5), "07:00")),
    *planned("B-KIR", "Pacific/Kiritimati", (d(4, 5), "07:00")),
    *planned("B-TYO", "Asia/Tokyo", (d(4, 5), "08:00")),
    *planned("B-KOL", "Asia/Kolkata", (d(4, 5), "05:30")),
    *planned("B-PPG", "Pacific/Pago_Pago", (d(4, 4), "09:00")),
    *planned("B-UTC", "UTC", (d(4, 5), "00:05")),
    *planned("B-NYC", "America/New_York", (d(4, 4), "10:00")),
    *planned("B-LAX", "America/Los_Angeles", (d(4, 4), "21:00")),
    *planned("B-LON", "Europe/London", (d(4, 5), "07:00")),
]
#: Moved from 08:00 to 09:00 UTC at 06:30, after its preparation (lead time 2 h).
CHANGED = Planned("A-CHG", "UTC", d(3, 29), "09:00")
CHANGED_FROM, CHANGED_AT = "08:00", dt.datetime(2026, 3, 29, 6, 30, tzinfo=UTC)
#: Cancelled an hour before its time (00:00 UTC).
CANCELLED = Planned("A-CXL", "America/New_York", d(3, 28), "20:00")
CANCELLED_AT = dt.datetime(2026, 3, 28, 23, 0, tzinfo=UTC)
#: Inserted into campaign_schedule 20 minutes before its time (19:00 UTC).
LATE = Planned("B-LATE", "Asia/Tokyo", d(4, 5), "04:00")
LATE_AT = dt.datetime(2026, 4, 4, 18, 40, tzinfo=UTC)


#: Left out: the analysis sensor. Each of its runs draws the curves chart (about 4 s) and it asks
#: for a run after every newly sent campaign (27 over the 72 h), which more than doubled the time;
#: the metric path's own tests cover it (test_metric_sensors.py).
LEFT_OUT = {"campaign_analysis_sensor"}


#: The sensors that do not prepare, send or cancel, evaluated less often than at every tick (each
#: evaluation costs 30-50 ms here, mostly building its resources): they catch up from their cursors.
SLOWER = {name: dt.timedelta(hours=1) for name in (
    "register_sent_campaigns_sensor", "request_metric_snapshots_sensor", "missed_send_alert_sensor",
    "overdue_snapshot_alert_sensor", "suppressed_mailed_alert_sensor", "alert_on_run_failure")}


def add(engine, c: Planned, at: str | None = None) -> None:
    seed.add_campaign(engine, campaign_id=c.campaign_id, name=c.campaign_id, send_date=c.day,
                      send_time=at or c.at, time_zone=c.zone, template_ids="1001", target_group="all_customers")


def set_row(engine, campaign_id: str, **values) -> None:
    with engine.begin() as conn:
        conn.execute(sa.update(campaign_schedule).where(campaign_schedule.c.campaign_id == campaign_id).values(**values))



def run(sim_url: str, db_url: str) -> dict:
    """The 72 hours (the database seeded, the simulator reset here); what the loop did."""
    import dagster as dg

    from cheetah_assets.automation.time_lapse import TimeLapse, with_clock_at
    from cheetah_assets.definitions import defs
    from cheetah_assets.resources import build_resources
    from cheetah_assets.simulator.admin import SimulatorAdmin

    from .conftest import cheetah_resource, production_env

    admin = SimulatorAdmin(sim_url)
    sim = types.SimpleNamespace(url=sim_url, tls=None, port=int(sim_url.rsplit(":", 1)[1].split("/")[0]), admin=admin)
    engine = CustomerDatabaseResource(url=db_url).get_engine(create=True)
    seed.seed_demo(engine, customers=12, days=0, today=A_START.date(), now=A_START)
    for c in CAMPAIGNS + [CANCELLED]:
        add(engine, c)
    add(engine, CHANGED, at=CHANGED_FROM)
    admin.reset(seed="demo", now=A_START - dt.timedelta(minutes=1), rate_limit=0)

    # The production resources for the demo switch pointed at this simulator and database (lead
    # time and account zone as configured there), the clock pinned to each tick, and the test
    # client's short retries.
    production = build_resources(production_env(sim, db_url))

    def resources(when: dt.datetime) -> dict:
        return with_clock_at({**production, "cheetah": cheetah_resource(sim)}, when)

    running = {s.name for s in [*defs.schedules, *defs.sensors]
               if s.default_status in (dg.DefaultScheduleStatus.RUNNING, dg.DefaultSensorStatus.RUNNING)}
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    started = time.perf_counter()
    # An in-memory instance: the same SQL event log, run and schedule storage as on disk, one
    # database (as on PostgreSQL in production) instead of SQLite's file per run, whose
    # connection per event was half the scenario's time (74 s -> 35 s here).
    with dg.DagsterInstance.ephemeral() as instance:
        lapse = TimeLapse(defs, instance, admin.set_now, resources=resources, run_config=lambda _job: quiet,
                          include=running - LEFT_OUT, intervals=SLOWER)
        lapse.run(A_START, CANCELLED_AT - STEP, STEP)
        set_row(engine, CANCELLED.campaign_id, status="CANCELLED")
        lapse.run(CANCELLED_AT, CHANGED_AT - STEP, STEP)
        set_row(engine, CHANGED.campaign_id, send_time=CHANGED.at)
        lapse.run(CHANGED_AT, A_END, STEP)
        lapse.pause(B_START - STEP)
        lapse.run(B_START, LATE_AT - STEP, STEP)
        add(engine, LATE)
        report = lapse.run(LATE_AT, B_END, STEP)
    return {
        "seconds": round(time.perf_counter() - started, 1), "ticks": report.ticks, "summary": report.summary(),
        "failures": report.failures, "runs_by_job": dict(report.runs_by_job),
        "sensor_seconds": {k: round(v, 1) for k, v in report.sensor_seconds.items()},
        "sensor_evaluations": dict(report.sensor_evaluations),
        "left_out": sorted(LEFT_OUT), "evaluated": sorted(running - LEFT_OUT),
    }


if __name__ == "__main__":
    print(json.dumps(run(*sys.argv[1:3])))
