"""CPU seconds per metric snapshot (campaign, day): one run per partition against one run per tick.

    python bench/bench_metric_snapshots.py [--baseline 5] [--batches 200,1000]

Sets up, in a temporary directory, the Cheetah Messaging simulator (in this process: its own work
is not counted), a SQLite customer database whose send ledger holds campaigns really sent in the
simulator eight days ago (so all seven days of each are due), and a Dagster instance
(``DAGSTER_HOME``) with every campaign registered as a ``cheetah_campaigns`` partition. Then, in
the same run, each run launched as a process of its own on the production definitions (demo
switch pointed at this simulator), as the daemon's run launcher launches them:

* **today** (before issue 12): one run per (campaign, day), ``dagster asset materialize --select
  campaign_metric_snapshots --partition <campaign>|day_<k>``, for ``--baseline`` partitions;
* **batch**: one run of ``metric_snapshot_batch_job`` (``dagster job execute``) listing N
  partitions, what ``request_metric_snapshots_sensor`` asks for at a tick, for each N of ``--batches``.

CPU is the user + system time of the child processes (``RUSAGE_CHILDREN``). It checks that every
partition was materialized (one materialization each) and prints CPU-s per campaign-day, the
ratio today / batch and the goal (<= 0.2 CPU-s, >= 50x), and the steady state: a run's start and
per-partition cost fitted on the two largest batches, at one run per ``BATCH_WAIT`` or per
``BATCH_MIN`` due days, whichever comes first (the sensor gathers a trickle of due days), for
``--week-campaigns`` campaigns in their week.
A measurement, not a test.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import dagster as dg  # noqa: E402
import yaml  # noqa: E402

from cheetah_assets.automation.metric_sensors import BATCH_MIN, BATCH_WAIT  # noqa: E402
from cheetah_assets.cheetah.resource import CheetahMessagingResource  # noqa: E402
from cheetah_assets.customers.resource import CustomerDatabaseResource  # noqa: E402
from cheetah_assets.customers.schema import send_ledger  # noqa: E402
from cheetah_assets.metrics.assets import campaign_metric_snapshots, campaigns_partitions  # noqa: E402
from cheetah_assets.metrics.snapshots import prepare_database, run_key  # noqa: E402
from cheetah_assets.cheetah.settings import demo_account  # noqa: E402
from cheetah_assets.simulator.server import SimulatorServer  # noqa: E402

DAY = dt.timedelta(days=1)
GOAL_CPU, GOAL_RATIO = 0.2, 50.0


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def send_campaigns(sim, engine, count: int, sent_at: dt.datetime) -> list[str]:
    """``count`` campaigns approved in the simulator to go out at ``sent_at`` (one shared list of
    five recipients), with the ledger rows the send path writes."""
    sim.admin.set_now(sent_at - dt.timedelta(hours=1))
    cheetah = CheetahMessagingResource(endpoint=sim.url, **demo_account(), backoff_factor=0.01,
                                       import_poll_interval_seconds=0.01)
    names, rows = [], []
    with cheetah.get_client() as client:
        csv = "EMAIL_ADDR,FNAME\n" + "".join(f"bench-{i}@example.com,N{i}\n" for i in range(5))
        list_id = client.wait_for_import(
            client.start_import(list_name="BENCH", csv_bytes=csv.encode(), file_name="bench.csv")
        ).list_id
        for i in range(count):
            name = f"OPT-B{i:05d}-1004-{sent_at:%Y%m%d}"
            camp_id = client.create_campaign(name=name, template_obj_id="1004", list_id=list_id, start_time=sent_at)
            client.launch_campaign(camp_id)
            client.approve_campaign(camp_id)
            names.append(name)
            rows.append(dict(
                send_key=f"B{i:05d}/1004/{sent_at.date()}", campaign_id=f"B{i:05d}", template_id="1004",
                send_date=sent_at.date(), list_key=f"B{i:05d}/{sent_at.date()}", cheetah_name=name,
                state="APPROVED", send_at=sent_at, camp_id=str(camp_id), rows_in_list=5,
                created_at=sent_at - DAY, updated_at=sent_at - DAY,
            ))
    with engine.begin() as conn:
        conn.execute(send_ledger.insert(), rows)
    return names


def dagster(env: dict, *args: str) -> tuple[float, float]:
    """Run the ``dagster`` command; (CPU seconds of the process, wall seconds)."""
    exe = str(Path(sys.executable).with_name("dagster"))
    cpu, wall = children_cpu(), time.perf_counter()
    done = subprocess.run([exe, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise SystemExit(f"dagster {' '.join(args[:3])} failed:\n{done.stderr[-3000:]}")
    return children_cpu() - cpu, time.perf_counter() - wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=int, default=5, help="partitions taken one run each (today)")
    parser.add_argument("--batches", default="200,1000", help="batch sizes, comma-separated")
    parser.add_argument("--week-campaigns", type=int, default=1000, help="campaigns in their week, for the steady-state figure")
    args = parser.parse_args(argv)
    sizes = [int(n) for n in args.batches.split(",") if n]

    real_now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    sent_at = real_now - 8 * DAY  # production reads the real clock: every day of the week is due
    days_needed = args.baseline + sum(sizes)
    campaigns = -(-days_needed // 7)
    with tempfile.TemporaryDirectory() as tmp, SimulatorServer(seed="demo") as sim:
        sim.admin.reset(seed="demo", now=sent_at - DAY, rate_limit=0)
        home = Path(tmp) / "dagster_home"
        home.mkdir()
        (home / "dagster.yaml").write_text(
            "run_coordinator:\n  module: dagster.core.run_coordinator\n  class: DefaultRunCoordinator\n"
        )
        db_url = f"sqlite:///{Path(tmp) / 'customers.db'}"
        engine = CustomerDatabaseResource(url=db_url).get_engine(create=True)
        prepare_database(engine)
        started = time.perf_counter()
        names = send_campaigns(sim, engine, campaigns, sent_at)
        sim.admin.set_now(real_now)
        print(f"set-up: {campaigns} campaigns sent in the simulator, {campaigns * 7:,} campaign-days due "
              f"({time.perf_counter() - started:.0f} s)")
        keys = [run_key(n, k) for n in names for k in range(1, 8)]
        env = {**os.environ, "CHEETAH_DEMO": "1", "CHEETAH_SIM_PORT": str(sim.port), "CUSTOMER_DB_URL": db_url,
               "DAGSTER_HOME": str(home), "PYTHONPATH": str(ROOT)}
        with dg.DagsterInstance.from_config(str(home)) as instance:
            instance.add_dynamic_partitions(campaigns_partitions.name, names)

            rows = []
            base, keys = keys[: args.baseline], keys[args.baseline :]
            cpu = wall = 0.0
            for key in base:
                c, w = dagster(env, "asset", "materialize", "-m", "cheetah_assets.definitions",
                               "--select", "campaign_metric_snapshots", "--partition", key)
                cpu, wall = cpu + c, wall + w
            rows.append(("today: one run per partition", len(base), cpu, wall))
            for size in sizes:
                chunk, keys = keys[:size], keys[size:]
                config = Path(tmp) / f"batch-{size}.yaml"
                config.write_text(yaml.safe_dump({"ops": {"take_due_snapshots": {"config": {"partitions": chunk}}}}))
                c, w = dagster(env, "job", "execute", "-m", "cheetah_assets.definitions",
                               "-j", "metric_snapshot_batch_job", "-c", str(config))
                rows.append((f"batch: one run of {size:,}", size, c, w))

            taken = {str(k) for k in instance.get_materialized_partitions(campaign_metric_snapshots.key)}
            expected = args.baseline + sum(sizes)
            assert len(taken) == expected, f"{len(taken)} partitions materialized, expected {expected}"
            events = instance.fetch_materializations(campaign_metric_snapshots.key, limit=expected + 10).records
            assert len(events) == expected, "one materialization per partition"

    print(f"{'':<34}{'partitions':>11}{'CPU-s':>9}{'wall s':>9}{'CPU-s per campaign-day':>25}")
    for label, n, c, w in rows:
        print(f"{label:<34}{n:>11,}{c:>9.1f}{w:>9.1f}{c / n:>25.3f}")
    today = rows[0][2] / rows[0][1]
    for label, n, c, _ in rows[1:]:
        per = c / n
        print(f"{label}: {per:.3f} CPU-s per campaign-day (goal <= {GOAL_CPU}), "
              f"{today / per:.0f}x less than today's {today:.1f} (goal >= {GOAL_RATIO:.0f}x): "
              f"{'met' if per <= GOAL_CPU and today / per >= GOAL_RATIO else 'NOT met'}")
    if len(rows) >= 3:
        # A run's cost is about start + n x per-partition: fitted on the two largest batches.
        (_, n1, c1, _), (_, n2, c2, _) = sorted(rows[1:], key=lambda r: r[1])[-2:]
        per = (c2 - c1) / (n2 - n1)
        start = c1 - n1 * per
        days = 7 * args.week_campaigns
        # A run goes once BATCH_MIN days are due or the oldest has waited BATCH_WAIT, whichever is first.
        runs = min(days, max(int(dt.timedelta(days=1) / BATCH_WAIT), -(-days // BATCH_MIN)))
        steady = (runs * start + days * per) / days
        print(f"a batch run costs about {start:.1f} CPU-s to start and {per:.3f} CPU-s per partition; steady state with "
              f"{args.week_campaigns:,} campaigns in their week ({days:,} campaign-days a day, one run per "
              f"{BATCH_WAIT.total_seconds() / 60:g} min or per {BATCH_MIN} due days: {runs} runs): {steady:.3f} CPU-s per campaign-day "
              f"(goal <= {GOAL_CPU}), {today / steady:.0f}x less than today")
    return 0


if __name__ == "__main__":
    sys.exit(main())
