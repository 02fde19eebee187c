"""Issue 9 item 5: the real definitions over 72 simulated hours (cheetah_assets/automation/time_lapse.py).

At every tick the driver moves the simulator's clock and the clock resource together, evaluates
the real schedules and sensors as the daemon would, and runs what they request in a real
instance (in memory; time_lapse_scenario.py, in a process of its own: the partitions must start before the
windows). What went out is read back from the simulator, and each campaign's instant is resolved
here with zoneinfo, independently of the production code.

The window: no 72 hours of 2026 hold a daylight-saving change in both directions (the nearest
pair, Europe's spring-forward on 29 March and Australia's and New Zealand's fall-back on 5 April,
are a week apart). So the 72 hours are two windows of 36 h, one around each change, on one
clock: between them the daemon is off and the clock jumps (``TimeLapse.pause``), with nothing
scheduled in the gap.
"""

from __future__ import annotations

import pytest

import datetime as dt
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from cheetah_assets.customers.resource import CustomerDatabaseResource
from cheetah_assets.customers.schema import send_ledger

from .conftest import cheetah_resource
from .time_lapse_scenario import (
    A_END, A_START, B_END, B_START, CAMPAIGNS, CANCELLED, CHANGED, LATE, PARTITION_START, STEP, UTC,
)

ROOT = Path(__file__).resolve().parents[1]


def test_the_window_is_what_the_test_says():
    """The plan's own premises, so that a wrong date cannot make the test pass vacuously."""
    sends = [*CAMPAIGNS, CHANGED, LATE]
    for c in sends + [CANCELLED]:
        window = (A_START, A_END) if c.campaign_id.startswith("A") else (B_START, B_END)
        assert window[0] + dt.timedelta(minutes=30) <= c.instant <= window[1] - STEP, c
    zones = {c.zone for c in sends}
    assert {"Pacific/Kiritimati", "Pacific/Pago_Pago"} <= zones and len(zones) >= 8 and len(sends) >= 30
    assert (A_END - A_START) + (B_END - B_START) == dt.timedelta(hours=72)

    def offsets(zone, start, end):
        tz = ZoneInfo(zone)
        return start.astimezone(tz).utcoffset(), end.astimezone(tz).utcoffset()

    before, after = offsets("Europe/London", A_START, A_END)
    assert after - before == dt.timedelta(hours=1)  # spring forward inside window A
    before, after = offsets("Australia/Sydney", B_START, B_END)
    assert after - before == dt.timedelta(hours=-1)  # fall back inside window B
    # East of UTC, early morning: the UTC instant falls on the day before the local date.
    assert CAMPAIGNS[2].instant.date() < CAMPAIGNS[2].day
    # The repeated Sydney hour resolves to its first occurrence (AEDT, +11).
    assert CAMPAIGNS[21].instant == dt.datetime(2026, 4, 4, 15, 30, tzinfo=UTC)
    # 00:05 UTC campaigns.
    assert {c.instant.time() for c in CAMPAIGNS if c.zone == "UTC"} >= {dt.time(0, 5)}


@pytest.mark.slow(seconds=40)
def test_72_hours_every_campaign_once_at_its_time(sim, db_url, record_property):
    env = {**os.environ, "CHEETAH_PARTITION_START": PARTITION_START, "PYTHONPATH": str(ROOT)}
    env.pop("CHEETAH_DEMO", None)
    done = subprocess.run(
        [sys.executable, "-m", "cheetah_assets_tests.time_lapse_scenario", sim.url, db_url],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])

    sent = sim.admin.sent(recipients=False)
    by_campaign: dict[str, list[dict]] = {}
    for c in sent["campaigns"]:
        # Cheetah names are OPT-<campaign>-<template>-<yyyymmdd>, -r<n> when re-created after a change.
        by_campaign.setdefault(re.fullmatch(r"OPT-(.+)-1001-\d{8}(?:-r\d+)?", c["name"])[1], []).append(c)
    expected = [*CAMPAIGNS, CHANGED, LATE]
    on_time, wrong, missed = 0, [], []
    for c in expected:
        got = by_campaign.get(c.campaign_id, [])
        if not got:
            missed.append(c.campaign_id)
            continue
        sent_at = dt.datetime.fromisoformat(got[0]["sentAt"].replace("Z", "+00:00"))
        if len(got) == 1 and got[0]["sendCount"] == 1 and sent_at == c.instant:
            on_time += 1
        else:
            wrong.append(f"{c.campaign_id}: {[(g['sendCount'], g['sentAt']) for g in got]}, expected once at "
                         f"{c.instant.isoformat()}")
    duplicates = sum(max(0, sum(g["sendCount"] for g in got) - 1) for got in by_campaign.values()) + sent["duplicates"]
    engine = CustomerDatabaseResource(url=db_url).get_engine()
    with engine.connect() as conn:
        ledger = {(r.campaign_id, r.state) for r in conn.execute(sa.select(send_ledger.c.campaign_id, send_ledger.c.state))}
    missed_in_ledger = sorted(cid for cid, state in ledger if state == "MISSED")
    zones = len({c.zone for c in expected})
    line = (f"time-lapse: {len(expected)} campaigns in {zones} zones over 72 h: {on_time} sent on time, "
            f"{len(missed)} missed, {duplicates} duplicates ({report['ticks']} ticks in {report['seconds']:.0f} s; runs "
            f"{', '.join(f'{job} {n}' for job, n in sorted(report['runs_by_job'].items()))})")
    record_property("summary", line)  # printed at the end of the run, xdist workers included (conftest)

    assert not missed and not wrong, (missed, wrong, missed_in_ledger, report["failures"][:3])
    assert duplicates == 0
    assert CANCELLED.campaign_id not in by_campaign
    assert not missed_in_ledger, missed_in_ledger
    # Prepared two hours ahead, then cancelled: deleted in Cheetah Messaging, CANCELLED in the ledger.
    assert {state for cid, state in ledger if cid == CANCELLED.campaign_id} == {"CANCELLED"}
    prepared = cheetah_resource(sim).get_client().find_campaign(f"OPT-{CANCELLED.campaign_id}-1001-20260328")
    assert prepared is not None and prepared.status == "CANCELLED", prepared
    assert not report["failures"], (len(report["failures"]), sorted({f[:300] for f in report["failures"]})[:5])
    assert set(report["evaluated"]) >= {"campaign_preparation_sensor", "cancellation_sensor"}
