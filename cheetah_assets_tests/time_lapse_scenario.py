"""The time-lapse scenario of test_time_lapse.py: the campaigns, and the 72 simulated hours run
through the real definitions (cheetah_assets/automation/time_lapse.py).

It runs in a process of its own (``python -m cheetah_assets_tests.time_lapse_scenario SIM_URL DB_URL
DAGSTER_HOME``) because the send path's daily partitions are read from the environment when the
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


CAMPAIGNS = [
    # ---- window A (spring forward)
    Planned("A-KIR-1", "Pacific/Kiritimati", d(3, 29), "06:00"),
    Planned("A-KIR-2", "Pacific/Kiritimati", d(3, 29), "23:30"),
    Planned("A-TYO-1", "Asia/Tokyo", d(3, 29), "08:00"),
    Planned("A-TYO-2", "Asia/Tokyo", d(3, 29), "19:00"),
    Planned("A-SYD-1", "Australia/Sydney", d(3, 29), "10:00"),
    Planned("A-SYD-2", "Australia/Sydney", d(3, 28), "18:00"),
    Planned("A-KOL-1", "Asia/Kolkata", d(3, 29), "05:30"),
    Planned("A-KOL-2", "Asia/Kolkata", d(3, 28), "09:00"),
    Planned("A-LON-1", "Europe/London", d(3, 29), "00:30"),  # GMT, half an hour before the change
    Planned("A-LON-2", "Europe/London", d(3, 29), "03:00"),  # BST
    Planned("A-LON-3", "Europe/London", d(3, 28), "09:00"),
    Planned("A-NYC-1", "America/New_York", d(3, 28), "09:00"),
    Planned("A-NYC-2", "America/New_York", d(3, 28), "23:45"),
    Planned("A-LAX-1", "America/Los_Angeles", d(3, 28), "17:00"),
    Planned("A-PPG-1", "Pacific/Pago_Pago", d(3, 28), "20:00"),
    Planned("A-PPG-2", "Pacific/Pago_Pago", d(3, 27), "23:00"),
    Planned("A-UTC-1", "UTC", d(3, 29), "00:05"),
    Planned("A-UTC-2", "UTC", d(3, 28), "12:00"),
    Planned("A-BEY-1", "Asia/Beirut", d(3, 29), "07:00"),  # EEST, after the change
    Planned("A-BEY-2", "Asia/Beirut", d(3, 28), "21:00"),  # EET, an hour before it
    # ---- window B (fall back)
    Planned("B-SYD-1", "Australia/Sydney", d(4, 5), "01:30"),  # AEDT
    Planned("B-SYD-2", "Australia/Sydney", d(4, 5), "02:30"),  # the repeated hour: its first occurrence
    Planned("B-SYD-3", "Australia/Sydney", d(4, 5), "08:00"),  # AEST
    Planned("B-AKL-1", "Pacific/Auckland", d(4, 5), "09:00"),  # NZST
    Planned("B-AKL-2", "Pacific/Auckland", d(4, 4), "20:00"),  # NZDT
    Planned("B-SCL-1", "America/Santiago", d(4, 4), "20:00"),
    Planned("B-SCL-2", "America/Santiago", d(4, 5), "07:00"),
    Planned("B-KIR-1", "Pacific/Kiritimati", d(4, 5), "07:00"),
    Planned("B-TYO-1", "Asia/Tokyo", d(4, 5), "08:00"),
    Planned("B-KOL-1", "Asia/Kolkata", d(4, 5), "05:30"),
    Planned("B-PPG-1", "Pacific/Pago_Pago", d(4, 4), "09:00"),
    Planned("B-UTC-1", "UTC", d(4, 5), "00:05"),
    Planned("B-NYC-1", "America/New_York", d(4, 4), "10:00"),
    Planned("B-LAX-1", "America/Los_Angeles", d(4, 4), "21:00"),
    Planned("B-LON-1", "Europe/London", d(4, 5), "07:00"),
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
    "overdue_snapshot_alert_sensor", "alert_on_run_failure")}


def add(engine, c: Planned, at: str | None = None) -> None:
    seed.add_campaign(engine, campaign_id=c.campaign_id, name=c.campaign_id, send_date=c.day,
                      send_time=at or c.at, time_zone=c.zone, template_ids="1001", target_group="all_customers")


def set_row(engine, campaign_id: str, **values) -> None:
    with engine.begin() as conn:
        conn.execute(sa.update(campaign_schedule).where(campaign_schedule.c.campaign_id == campaign_id).values(**values))



def run(sim_url: str, db_url: str, home: str) -> dict:
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
    with dg.instance_for_test(temp_dir=home) as instance:
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
    print(json.dumps(run(*sys.argv[1:4])))
