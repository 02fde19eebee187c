"""``./run demo`` sends a week of campaigns through the real jobs and metric sensors into the demo
folder's persistent Dagster instance (the one ``./run dev`` opens), keeps that history on a second
run (its clock going on, nothing sent or snapshotted twice), and never touches the environment's
``DAGSTER_HOME``."""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import sys
import types
from collections import Counter

import dagster as dg
import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from cheetah_assets.automation.run_keys import RUN_KEY_TAG
from cheetah_assets.automation.time_lapse import SENSOR_NAME_TAG

from cheetah_assets.dev import demo_environment
from cheetah_assets.metrics.snapshots import is_late


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _demo(tmp_path, *args: str, port: int | None = None, stderr: bool = False) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHEETAH_", "CUSTOMER_DB_URL"))}
    env.update(
        CHEETAH_DEMO_DIR=str(tmp_path / "demo"), CHEETAH_SIM_PORT=str(port or _free_port()),
        DAGSTER_HOME=str(tmp_path / "users_home"),
    )
    proc = subprocess.run(
        [sys.executable, "-m", "cheetah_assets.demo", "--customers", "300", *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + (proc.stderr if stderr else "")


def _history(home):
    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs()
        failed = [r.run_id for r in runs if r.status == dg.DagsterRunStatus.FAILURE]
        snapshots = instance.get_materialized_partitions(dg.AssetKey("campaign_metric_snapshots"))
        analysis = instance.get_latest_materialization_event(dg.AssetKey("campaign_analysis"))
        records = instance.fetch_materializations(dg.AssetKey("campaign_metric_snapshots"), limit=10_000).records
        restated = [r.partition_key for r in records if r.asset_materialization.metadata["restated"].value]
        # the daemon's run keys of the sensors' runs: each launched once, whatever ran the sensor
        keys = Counter(
            (r.tags[SENSOR_NAME_TAG], r.tags[RUN_KEY_TAG]) for r in runs if SENSOR_NAME_TAG in r.tags and RUN_KEY_TAG in r.tags
        )
        return types.SimpleNamespace(
            runs={r.run_id for r in runs}, failed=failed, snapshots={str(k) for k in snapshots},
            analysis=analysis.asset_materialization.metadata if analysis else None, restated=restated,
            relaunched=[k for k, n in keys.items() if n > 1],
        )


def _sent(state):
    from cheetah_assets.simulator.server import SimulatorServer

    with SimulatorServer(state_path=state) as sim:
        assert sim.restored
        sent = sim.admin.sent(recipients=False)
        return sent["duplicates"], Counter(c["name"] for c in sent["campaigns"]), [c.get("sendCount") for c in sent["campaigns"]], sim.admin.now()


@pytest.mark.slow(seconds=70)
def test_a_week_of_history_through_the_pipeline_kept_and_continued_by_a_second_run(tmp_path):
    home, state = tmp_path / "demo" / "dagster_home", tmp_path / "demo" / "simulator.db"
    port = _free_port()
    out = _demo(tmp_path, port=port)
    assert str(home) in out and "Simulated" in out and "campaign_metric_snapshots" in out
    # it reports what Cheetah Messaging sent today, read back: every approved send went out once
    assert "What Cheetah Messaging sent" in out and "Campaign analysis at" in out
    sent_lines = [line for line in out.splitlines() if " APPROVED " in line]
    assert sent_lines and all(line.split()[-1] == "1" for line in sent_lines), out[-3000:]
    first = _history(home)
    assert not first.failed and not first.relaunched
    # the snapshot matrix fills in: the older the campaign, the more days taken, up to the whole week
    days = Counter(key.split("|")[0] for key in first.snapshots)
    assert max(days.values()) == 7 and len(set(days.values())) >= 5, days
    # the oldest campaigns are final; the simulator restated a count after a snapshot, the next flagged it
    assert first.analysis["campaigns_final"].value >= 1
    assert first.restated and first.analysis["campaigns_restated"].value >= 1, out[-3000:]
    assert not (tmp_path / "users_home").exists()  # the environment's DAGSTER_HOME is never touched
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'demo' / 'customers.db'}")
    with engine.connect() as conn:
        oldest = conn.execute(sa.text(
            "SELECT a.days_reported, a.latest_day FROM cheetah_campaign_analysis a JOIN cheetah_send_ledger l "
            "ON l.cheetah_name = a.cheetah_name ORDER BY l.send_at LIMIT 1"
        )).one()
    assert tuple(oldest) == (7, 7)
    # every snapshot was taken when it was due, as the daemon takes them: none reads "taken late"
    # (the demo once ticked once a simulated day, and its analysis said "day 1, 2 taken late")
    assert "taken late" not in out
    with engine.connect() as conn:
        taken = conn.execute(sa.text(
            "SELECT s.fetched_at, l.send_at, s.day FROM cheetah_metric_snapshot s JOIN cheetah_send_ledger l "
            "ON l.cheetah_name = s.cheetah_name"
        )).all()
    assert len(taken) == len(first.snapshots)
    late = [r for r in taken if is_late(_utc(r.fetched_at), _utc(r.send_at) + r.day * dt.timedelta(days=1))]
    assert not late, late
    # the simulator's world is in the demo folder for ./run dev: each campaign sent once, the clock moved on
    duplicates, names, counts, clock = _sent(state)
    assert duplicates == 0 and set(counts) == {1} and max(names.values()) == 1
    today = dt.datetime.combine(dt.datetime.now(dt.timezone.utc).date(), dt.time(6), tzinfo=dt.timezone.utc)
    assert clock >= today + dt.timedelta(days=1)  # the next morning: today's first snapshot day

    # Again, without --fresh: the history is kept and the clock goes on. On another port, as when
    # 8765 is busy or ./run screenshots picks a free one: the same (loopback) account. Regression
    # (review of this stop): the demo's sends became "another account's", their metrics were
    # never fetched again, and today's were started afresh (imported again, then refused).
    out2 = _demo(tmp_path, port=_free_port(), stderr=True)
    assert "another account" not in out2
    second = _history(home)
    assert first.runs < second.runs and first.snapshots < second.snapshots
    assert not second.failed and not second.relaunched  # nothing snapshotted twice
    duplicates2, names2, counts2, clock2 = _sent(state)
    assert duplicates2 == 0 and set(counts2) == {1} and set(names) < set(names2)  # the next day's, once each
    assert clock2 > clock

    _demo(tmp_path, "--fresh", "--days", "0")  # --fresh starts over (today only)
    third = _history(home)
    assert not (first.runs & third.runs) and not third.failed


def _utc(value) -> dt.datetime:
    when = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))
    return when.replace(tzinfo=dt.timezone.utc) if when.tzinfo is None else when


@given(
    sends=st.lists(st.integers(0, 10 * 24 * 60), max_size=12),
    after=st.integers(0, 10 * 24 * 60),
    span=st.integers(1, 3 * 24 * 60),
    wait=st.integers(0, 90),
)
def test_the_demos_ticks_take_every_day_due_in_a_span_soon_after_it_falls_due(sends, after, span, wait):
    from cheetah_assets.demo import TICK_GROUP, snapshot_ticks
    from cheetah_assets.metrics.snapshots import DAYS

    t0 = dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc)
    minute = dt.timedelta(minutes=1)
    send_times = [t0 + m * minute for m in sends]
    lo, hi, w = t0 + after * minute, t0 + (after + span) * minute, wait * minute
    ticks = snapshot_ticks(send_times, lo, hi, wait=w)
    assert ticks == sorted(set(ticks)) and all(lo < t < hi for t in ticks)
    for due in {s + k * dt.timedelta(days=1) for s in send_times for k in DAYS}:
        if lo < due < hi:  # taken by a tick, or by the one at ``hi``, within the group and the wait
            taker = min([t for t in ticks if t >= due] + [hi])
            assert taker - due <= TICK_GROUP + w, (due, ticks)
    assert len(ticks) <= len({s for s in send_times}) * len(DAYS)


def test_dev_opens_the_demo_instance_whatever_dagster_home_says(tmp_path):
    env = demo_environment({"DAGSTER_HOME": "/somewhere/else", "PATH": "/bin"}, 4000, tmp_path)
    assert env["DAGSTER_HOME"] == str(tmp_path / "dagster_home")


def test_the_seeds_past_days_come_before_today_and_leave_the_rest_as_it_was():
    import random

    from cheetah_assets.customers.demo_data import LATER_DAY_TIMES, plan_campaigns

    now = dt.datetime(2026, 12, 3, 6, tzinfo=dt.timezone.utc)
    plain = plan_campaigns(days=3, today=now.date(), now=now, rng=random.Random(42))
    week = plan_campaigns(days=3, today=now.date(), now=now, rng=random.Random(42), past_days=7)
    past = week[: len(week) - len(plain)]
    assert week[len(past):] == plain  # today's and later campaigns unchanged by the history
    dates = Counter(r["campaign_id"].split("-")[0] for r in past)
    assert dates == {f"C{now.date() - dt.timedelta(days=k):%Y%m%d}": 2 for k in range(1, 8)}
    assert all(r["send_time"] in LATER_DAY_TIMES and r["send_date"] < now.date() for r in past)
    assert [r["send_date"] for r in past] == sorted(r["send_date"] for r in past)
