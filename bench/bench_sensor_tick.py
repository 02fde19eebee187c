"""How long one tick of ``request_metric_snapshots_sensor`` takes with 10,000 campaigns in their week.

    python bench/bench_sensor_tick.py [--campaigns 10000] [--repeat 3]

Sets up, in a temporary directory, a SQLite customer database whose send ledger holds
``--campaigns`` APPROVED sends spread over the last seven days (7 snapshot days each: 70,000
campaign-days, about half of them already due), and a temporary Dagster instance with every
campaign registered as a ``cheetah_campaigns`` partition. Then it times, in the same run:

* **ours, first tick** — no cursor: every day already due is requested (about 35,000
  partitions, in batch runs of ``BATCH_SIZE``), through ``evaluate_tick`` exactly as the daemon
  calls it, and the sensor's own planning (``snapshots_due``) on its own;
* **ours, steady state** — the next tick, 60 s later, with the cursor the first one returned;
* **baseline** — a naive, cursor-less sensor a first version might have been: list every
  registered campaign, read its ledger row (one query per campaign), and for each of its due days
  ask the instance whether a run with that run key exists yet (one query per campaign-day). It
  costs the same on every tick, first or steady.

Prints each time (best of ``--repeat``), the SQL statements each tick sent to the ledger, the
ratio baseline / ours, and the first tick against issue 12's goal (<= 2 s at 10,000 campaigns).
No assertion on time: this is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dagster as dg  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from dagster._core.storage.tags import RUN_KEY_TAG  # noqa: E402

from cheetah_assets.automation.jobs import METRIC_JOBS  # noqa: E402
from cheetah_assets.automation.metric_sensors import METRIC_SENSORS, request_metric_snapshots_sensor  # noqa: E402
from cheetah_assets.cheetah.resource import CheetahMessagingResource  # noqa: E402
from cheetah_assets.clock import ClockResource  # noqa: E402
from cheetah_assets.customers.resource import CustomerDatabaseResource  # noqa: E402
from cheetah_assets.customers.schema import send_ledger  # noqa: E402
from cheetah_assets.metrics.assets import METRIC_ASSETS, METRIC_CHECKS, campaigns_partitions  # noqa: E402
from cheetah_assets.metrics.batch import BATCH_SIZE  # noqa: E402
from cheetah_assets.metrics.due import snapshots_due  # noqa: E402
from cheetah_assets.metrics.snapshots import prepare_database, run_key  # noqa: E402
from cheetah_assets.timeutil import utc  # noqa: E402

NOW = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.timezone.utc)
DAY = dt.timedelta(days=1)
GOAL_SECONDS = 2.0


def partitions(result) -> int:
    """The snapshot partitions a tick's batch run requests list."""
    return sum(len(rr.run_config["ops"]["take_due_snapshots"]["config"]["partitions"]) for rr in result.run_requests or [])


class StatementCounter:
    def __init__(self, engine):
        self.n = 0
        sa.event.listen(engine, "before_cursor_execute", self._count)

    def _count(self, *_args) -> None:
        self.n += 1


def setup(directory: Path, campaigns: int):
    url = f"sqlite:///{directory / 'customers.db'}"
    engine = CustomerDatabaseResource(url=url).get_engine(create=True)
    prepare_database(engine)
    rng = random.Random(1)
    stamp = NOW - 8 * DAY
    rows, names = [], []
    for i in range(campaigns):
        at = NOW - dt.timedelta(seconds=rng.randrange(1, 7 * 86_400))
        name = f"OPT-C{i:05d}-1004-{at:%Y%m%d}"
        names.append(name)
        rows.append(
            dict(
                send_key=f"C{i:05d}/1004/{at.date()}", campaign_id=f"C{i:05d}", template_id="1004",
                send_date=at.date(), list_key=f"C{i:05d}/{at.date()}", cheetah_name=name, state="APPROVED",
                send_at=at, camp_id=5001 + i, rows_in_list=1000, created_at=stamp, updated_at=stamp,
            )
        )
    with engine.begin() as conn:
        conn.execute(send_ledger.insert(), rows)
    return url, engine, names


def tick(sensor, instance, defs, url: str, now: dt.datetime, cursor: str | None):
    context = dg.build_sensor_context(
        instance=instance,
        instance_ref=instance.get_ref(),
        cursor=cursor,
        resources={"customer_db": CustomerDatabaseResource(url=url), "clock": ClockResource(fixed_now=now.isoformat())},
        definitions=defs,
    )
    return sensor.evaluate_tick(context)


def plan_only(engine, instance, now: dt.datetime, cursor: str | None):
    """The sensor's own work, without Dagster's validation of the run requests it returns."""
    state = json.loads(cursor) if cursor else {}
    last = dt.datetime.fromisoformat(state["t"]) if "t" in state else None
    pcursor = state.get("p") if last else None
    name = campaigns_partitions.name

    def since():
        out, c = [], pcursor
        while True:
            page = instance.get_paginated_dynamic_partitions(name, limit=10_000, ascending=True, cursor=c)
            out.extend(page.results)
            c = page.cursor
            if not page.has_more:
                return out

    return snapshots_due(
        engine, now=now, last_tick=last,
        registered=lambda names: instance.get_existing_dynamic_partitions(name, names),
        registered_since_last_tick=since,
    )


def naive_tick(engine, instance, now: dt.datetime, limit: int) -> int:
    """The baseline: no cursor, a query per campaign and an instance query per campaign-day
    (over the first ``limit`` registered campaigns)."""
    requested = 0
    for name in instance.get_dynamic_partitions(campaigns_partitions.name)[:limit]:
        with engine.connect() as conn:
            row = conn.execute(
                sa.select(send_ledger.c.send_at, send_ledger.c.state).where(send_ledger.c.cheetah_name == name)
            ).first()
        if row is None or row.state != "APPROVED":
            continue
        send_at = utc(row.send_at)
        for k in range(1, 8):
            if send_at + k * DAY > now:
                break
            key = run_key(name, k)
            if instance.get_runs_count(dg.RunsFilter(tags={RUN_KEY_TAG: key})) == 0:
                requested += 1
    return requested


def best(fn, repeat: int):
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--campaigns", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--naive-campaigns", type=int, default=1000,
        help="campaigns the naive baseline scans (it costs a query per campaign and per campaign-day, "
        "linear in the campaigns: scaled up to --campaigns when fewer; about 7 s per 1,000 on an idle machine)",
    )
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp, dg.instance_for_test(temp_dir=tmp) as instance:
        directory = Path(tmp)
        url, engine, names = setup(directory, args.campaigns)
        instance.add_dynamic_partitions(campaigns_partitions.name, names)
        defs = dg.Definitions(
            assets=METRIC_ASSETS, asset_checks=METRIC_CHECKS, jobs=METRIC_JOBS, sensors=METRIC_SENSORS,
            resources={
                "cheetah": CheetahMessagingResource(
                    endpoint="https://cheetah.invalid", cust_id="1", folder_id="1", prop_map_id="1",
                    consumer_key="k", consumer_secret="s", client_id="c",
                ),
                "customer_db": CustomerDatabaseResource(url=url),
                "clock": ClockResource(),
            },
        )
        counter = StatementCounter(engine)
        tick(request_metric_snapshots_sensor, instance, defs, url, NOW - DAY, None)  # warm up (imports, caches)
        steady_now = NOW + dt.timedelta(seconds=60)

        counter.n = 0
        t_first, first = best(lambda: tick(request_metric_snapshots_sensor, instance, defs, url, NOW, None), args.repeat)
        first_sql = counter.n // args.repeat
        t_first_plan, plan = best(lambda: plan_only(engine, instance, NOW, None), args.repeat)
        counter.n = 0
        t_steady, steady = best(
            lambda: tick(request_metric_snapshots_sensor, instance, defs, url, steady_now, first.cursor), args.repeat
        )
        steady_sql = counter.n // args.repeat
        t_steady_plan, _ = best(lambda: plan_only(engine, instance, steady_now, first.cursor), args.repeat)
        counter.n = 0
        scanned = min(args.naive_campaigns, args.campaigns)
        t_naive, naive_requested = best(lambda: naive_tick(engine, instance, NOW, scanned), 1)
        naive_sql = counter.n
        scale = args.campaigns / scanned
        naive_label = "baseline: naive scan, any tick" + ("" if scale == 1 else f" ({scanned:,} campaigns)")

        days = args.campaigns * 7
        print(f"{args.campaigns:,} campaigns in their 7-day window ({days:,} campaign-days), all registered partitions")
        print(f"{'':<44}{'time':>10}{'partitions':>11}{'runs':>7}{'ledger SQL':>12}")
        print(f"{'ours, first tick (evaluate_tick)':<44}{t_first * 1000:>8.0f}ms{partitions(first):>11,}{len(first.run_requests):>7,}{first_sql:>12,}")
        print(f"{'ours, first tick (planning only)':<44}{t_first_plan * 1000:>8.0f}ms{len(plan.due):>11,}")
        print(f"{'ours, steady-state tick 60 s later':<44}{t_steady * 1000:>8.1f}ms{partitions(steady):>11,}{len(steady.run_requests or []):>7,}{steady_sql:>12,}")
        print(f"{'ours, steady-state (planning only)':<44}{t_steady_plan * 1000:>8.1f}ms")
        print(f"{naive_label:<44}{t_naive * 1000:>8.0f}ms{naive_requested:>11,}{naive_requested:>7,}{naive_sql:>12,}")
        assert partitions(first) == len(plan.due), "the tick's runs and its plan disagree"
        if scale == 1:
            assert naive_requested == len(plan.due), "baseline and ours disagree on what is due"
        else:
            print(f"  scaled linearly to {args.campaigns:,} campaigns: {t_naive * scale:.1f} s")
        assert len(first.run_requests) == -(-len(plan.due) // BATCH_SIZE), "one batch run per BATCH_SIZE partitions"
        naive = t_naive * scale
        print(f"ratio baseline / ours: first tick {naive / t_first:.1f}x, steady state {naive / t_steady:.0f}x"
              + ("" if scale == 1 else " (baseline scaled)"))
        worst = max(t_first, t_steady)
        print(f"tick at {args.campaigns:,} campaigns ({days:,} campaign-days): first {t_first:.2f} s, steady "
              f"{t_steady * 1000:.0f} ms against the {GOAL_SECONDS:.0f} s goal: {'met' if worst <= GOAL_SECONDS else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
