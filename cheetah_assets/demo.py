"""``cheetah-demo``: the day's campaign cycle on the embedded defaults, end to end.

1. seeds the demo customer database (``.cheetah_demo/customers.db``) if it has none,
2. starts the Cheetah Messaging simulator on loopback,
3. runs the ``daily_campaign_cycle`` job for today's partition (catalog and set-up checks,
   validated plan, frozen recipient lists, exactly-once sends),
4. moves the simulator's clock past today's send times and prints, per campaign, what Cheetah
   Messaging actually sent (read back from the simulator),
5. moves it one more day and snapshots day 1 of each sent campaign's metrics, then prints the
   campaign analysis.

Its runs, materializations and checks go to the persistent Dagster instance under the demo folder
(``.cheetah_demo/dagster_home``, the one ``./run dev`` uses), so they show in the UI. Running the
demo again keeps that history and the database; ``--fresh`` deletes the demo folder first. The
environment's own ``DAGSTER_HOME`` is never read or written.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import sys
from pathlib import Path

import dagster as dg


def dagster_home(directory: Path) -> Path:
    """The demo's persistent Dagster instance, shared with ``./run dev`` (never ``$DAGSTER_HOME``)."""
    return directory / "dagster_home"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cheetah-demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=20_000, help="demo customers to seed (default 20,000)")
    parser.add_argument("--fresh", action="store_true", help="delete the demo folder (database and Dagster history) first")
    parser.add_argument("--keep", action="store_true", help="(the default, kept for old scripts) keep the demo folder")
    args = parser.parse_args(argv)

    from . import configuration, embedded
    from .automation.jobs import daily_campaign_cycle_job
    from .clock import ClockResource
    from .metrics.analysis import load_analysis
    from .metrics.assets import campaign_analysis, campaign_metric_snapshots
    from .sending.assets import SEND_ASSETS, SEND_CHECKS
    from .sending.ledger import Ledger

    # The demo never reads the environment's account or database settings: it selects the demo's
    # own (configuration.demo_resources), so real credentials stay where they are.
    env = {configuration.DEMO_DIR_VARIABLE: str(configuration.demo_dir())}
    directory = configuration.demo_dir(env)
    if directory.exists() and args.fresh:
        shutil.rmtree(directory)
    directory.mkdir(parents=True, exist_ok=True)
    port = embedded.free_port(configuration.demo_port())
    env[configuration.SIM_PORT_VARIABLE] = str(port)
    db_url = configuration.demo_db_url(env)
    # The demo's day starts at 06:00 UTC today, whatever the hour: the simulator's clock is pinned
    # there, and so is ours, so the demo shows the same day at any time.
    start = dt.datetime.combine(dt.datetime.now(dt.timezone.utc).date(), dt.time(6), tzinfo=dt.timezone.utc)
    print(f"Seeding {args.customers:,} demo customers in {directory}/customers.db; simulator on port {port}…")
    sim = embedded.start_simulator(port, live_clock=False, now=start, state_path=directory / "simulator.db")
    embedded.ensure_seeded(db_url, customers=args.customers, today=start.date(), now=start)

    resources = configuration.demo_resources(env)
    sim_now = sim.admin.now()
    resources["clock"] = ClockResource(fixed_now=sim_now.isoformat())
    today = sim_now.date()
    home = dagster_home(directory)
    home.mkdir(parents=True, exist_ok=True)
    # This command's own process only: Dagster's telemetry and anything asking for "the" instance
    # write under $DAGSTER_HOME, which must be the demo's, not the user's.
    os.environ["DAGSTER_HOME"] = str(home)
    instance = dg.DagsterInstance.from_config(str(home))
    defs = dg.Definitions(assets=SEND_ASSETS, asset_checks=SEND_CHECKS, jobs=[daily_campaign_cycle_job], resources=resources)
    print(f"Running daily_campaign_cycle for {today}…")
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    result = defs.resolve_job_def("daily_campaign_cycle").execute_in_process(
        partition_key=today.isoformat(), instance=instance, raise_on_error=False, run_config=quiet
    )
    if not result.success:
        for event in result.all_events:
            if event.is_failure and event.step_failure_data:
                print("FAILED:", event.step_failure_data.error.message.strip().splitlines()[0])
        return 1

    engine = resources["customer_db"].get_engine()
    rows = Ledger(engine, lambda: sim_now).for_day(today)
    latest = max((r.send_at for r in rows if r.send_at), default=sim_now)
    sim.admin.set_now(max(latest, sim_now) + dt.timedelta(minutes=1))
    sent = {c["name"]: c for c in sim.admin.sent()["campaigns"]}
    print(f"\nWhat Cheetah Messaging sent for {today} (read back from the simulator):")
    print(f"{'campaign':<16} {'template':<8} {'state':<9} {'send at (UTC)':<17} {'imported':>8} {'rejected':>8} {'sent to':>8} {'times':>5}")
    for r in rows:
        s = sent.get(r.cheetah_name, {})
        print(
            f"{r.campaign_id:<16} {r.template_id:<8} {r.state:<9} {r.send_at:%Y-%m-%d %H:%M} "
            f"{r.rows_accepted or 0:>8} {r.rows_rejected or 0:>8} {len(s.get('recipients', [])):>8} {s.get('sendCount', 0):>5}"
        )
        if r.error and r.state != "APPROVED":
            print(f"{'':<16} {r.error}")

    # Day 1 of the metric path: register the sent campaigns, snapshot day 1, roll up.
    sim.admin.advance(dt.timedelta(days=1))
    now = sim.admin.now()
    resources["clock"] = ClockResource(fixed_now=now.isoformat())
    names = [r.cheetah_name for r in rows if r.cheetah_name in sent]
    if names:
        instance.add_dynamic_partitions("cheetah_campaigns", names)
        for name in names:
            dg.materialize(
                [campaign_metric_snapshots], partition_key=dg.MultiPartitionKey({"campaign": name, "day": "day_1"}),
                resources=resources, instance=instance, run_config=quiet,
            )
        dg.materialize([campaign_analysis], resources=resources, instance=instance, run_config=quiet)
        print("\nCampaign analysis after day 1 (Optimove names):")
        frame = load_analysis(engine)
        table = frame.rename(
            columns={
                "cheetah_name": "campaign", "sent": "Sent", "delivered": "Delivered", "unique_opens": "Unique Opens",
                "unique_clicks": "Unique Clicks", "unique_unsubscribes": "Unique Unsubscribes",
            }
        )[["campaign", "Sent", "Delivered", "Unique Opens", "Unique Clicks", "Unique Unsubscribes"]]
        table["open rate"] = frame["open_rate"].map(lambda v: "" if v != v or v is None else f"{v:.1%}")
        table["click rate"] = frame["click_rate"].map(lambda v: "" if v != v or v is None else f"{v:.1%}")
        print(table.to_string(index=False))
    print(
        f"\nThe demo database is in {directory}, its Dagster history in {home}; `./run dev` opens the same "
        "code location and instance in the Dagster UI (the demo's runs are listed there). "
        "`./run demo --fresh` starts over."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
