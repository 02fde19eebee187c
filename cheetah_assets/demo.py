"""``cheetah-demo``: a week of campaigns through the real pipeline, then today's cycle, end to end.

On the embedded defaults (the demo customer database, the Cheetah Messaging simulator's demo
account on loopback), with the simulator's clock moved, never rows written into Dagster or the
simulator:

1. seeds the demo customer database (``.cheetah_demo/customers.db``) if it has none, with
   campaigns on the seven days before today as well as today and the next two days;
2. starts the simulator, its clock at 06:00 UTC seven days ago (a first run) or where the last
   run left it;
3. for each day up to today: moves the clock to 06:00 UTC that day, runs the
   ``daily_campaign_cycle`` job on the day's partition (catalog and set-up checks, validated plan,
   frozen recipient lists, exactly-once sends), and replays the metric sensors at that time
   (:class:`~.automation.time_lapse.TimeLapse`): the sends that went out are registered, each
   snapshot day that has come is requested once and taken by ``metric_snapshot_job``. Moving
   the clock a day sends the day's campaigns and grows (or restates) their counts;
4. moves the clock past today's send times and prints what Cheetah Messaging sent, then to the
   next morning, when today's first day is due, takes the snapshots due then and runs the
   analysis sensor (``campaign_analysis_job``: the analysis, its checks and ``campaign_status``),
   and prints the campaign analysis.

Its runs, materializations and checks go to the persistent Dagster instance under the demo folder
(``.cheetah_demo/dagster_home``, the one ``./run dev`` uses), tagged as the daemon tags the
sensors' runs, so ``./run dev``'s sensors see them as done. Running the demo again keeps that
history and the database: its clock goes on from where it stopped (one more day, or every day up
to today), and nothing is sent or snapshotted twice. ``--fresh`` deletes the demo folder first.
The environment's own ``DAGSTER_HOME`` is never read or written.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

import dagster as dg

#: The demo's day starts at 06:00 UTC: its clock is moved there each simulated day.
DAY_START = dt.time(6)
#: A run stops by 07:50 UTC on the morning after its last day: before that day's first send (the
#: seed's later days send at 09:00 local time and after), so a next run starts with that day.
STOP_BY = dt.time(7, 50)
DAY = dt.timedelta(days=1)
MINUTE = dt.timedelta(minutes=1)
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
DEMO_TAGS = {"cheetah/demo": "week"}
ANALYSIS_SENSOR = "campaign_analysis_sensor"


def dagster_home(directory: Path) -> Path:
    """The demo's persistent Dagster instance, shared with ``./run dev`` (never ``$DAGSTER_HOME``)."""
    return directory / "dagster_home"


def demo_definitions(resources: dict) -> dg.Definitions:
    """The code location's assets and checks, the jobs the demo runs and the metric sensors."""
    from .automation.jobs import METRIC_JOBS, daily_campaign_cycle_job
    from .automation.metric_sensors import METRIC_SENSORS
    from .metrics.assets import METRIC_ASSETS, METRIC_CHECKS
    from .sending.assets import SEND_ASSETS, SEND_CHECKS

    return dg.Definitions(
        assets=[*SEND_ASSETS, *METRIC_ASSETS], asset_checks=[*SEND_CHECKS, *METRIC_CHECKS],
        jobs=[daily_campaign_cycle_job, *METRIC_JOBS], sensors=METRIC_SENSORS, resources=resources,
        executor=dg.in_process_executor,
    )


def metric_tick(lapses, when: dt.datetime, *, analyse: bool) -> None:
    """The metric path at ``when``, as the daemon would run it: the sends that have gone out
    registered, every snapshot day that has come requested once and taken (as the request sensor
    asks: one ``metric_snapshot_job`` run per campaign-day), then, if ``analyse``, the analysis
    sensor (its run rolls every snapshot up). The one place the demo takes snapshots. ``lapses``:
    the snapshot sensors' time-lapse, then the analysis sensor's (the daemon evaluates sensors in
    name order, which would put the analysis before the tick's snapshots)."""
    snapshots, analysis = lapses
    snapshots.tick(when)
    if analyse:
        analysis.tick(when)


#: Snapshot days due within this of each other are taken by one tick (one run), after the last of
#: them: each is taken at most this plus BATCH_WAIT after it was due, well within SNAPSHOT_GRACE,
#: so none reads as "taken late"; and a day costs a few runs, not one per due time.
TICK_GROUP = dt.timedelta(hours=2)


def snapshot_ticks(send_times, after: dt.datetime, before: dt.datetime, *, wait: dt.timedelta) -> list[dt.datetime]:
    """When the daemon's 30-second ticks would take the snapshot days falling due in ``(after,
    before)``, of sends at ``send_times``, as few ticks as keep each on time: the due times (each send
    time plus 1 to 7 days) in groups spanning at most :data:`TICK_GROUP`, each group's tick ``wait``
    (the request sensor's BATCH_WAIT: it gathers a few due days that long) after its last due time,
    and before ``before`` (a tick at ``before`` takes the rest)."""
    from .metrics.snapshots import DAY as SNAP_DAY, DAYS

    due = sorted({s + k * SNAP_DAY for s in send_times for k in DAYS if after < s + k * SNAP_DAY < before})
    ticks: list[dt.datetime] = []
    first = last = None
    for when in due + [None]:
        if when is not None and first is not None and when - first <= TICK_GROUP:
            last = when
            continue
        if first is not None and last + wait < before:
            ticks.append(last + wait)
        first = last = when
    return [t for t in ticks if t > after]


def _day_start(day: dt.date, began: dt.datetime) -> dt.datetime:
    return max(began, dt.datetime.combine(day, DAY_START, tzinfo=dt.timezone.utc))


def _at(ticks: list[dt.datetime]) -> str:
    return f" (sensor ticks at {', '.join(f'{t:%H:%M}' for t in ticks)} as well)" if ticks else ""


def sent_times(engine, day: dt.date, now: dt.datetime) -> list[dt.datetime]:
    """The send times of the sends handed over on ``day`` and the week before it (their snapshot days
    may fall due on ``day``)."""
    from .metrics.snapshots import DAYS
    from .sending.ledger import APPROVED, Ledger

    ledger = Ledger(engine, lambda: now)
    back = [day - k * DAY for k in range(len(DAYS) + 1)]
    return [r.send_at for d in back for r in ledger.for_day(d) if r.state == APPROVED and r.send_at is not None]


def run_cycle(defs: dg.Definitions, instance, resources: dict, day: dt.date, when: dt.datetime):
    """``daily_campaign_cycle`` on ``day``'s partition, the clock pinned to ``when``."""
    from .automation.time_lapse import with_clock_at

    return defs.resolve_job_def("daily_campaign_cycle").execute_in_process(
        partition_key=day.isoformat(), instance=instance, resources=with_clock_at(resources, when),
        raise_on_error=False, run_config=QUIET, tags={**DEMO_TAGS, "cheetah/demo_day": day.isoformat()},
    )


def _failure(result) -> str:
    for event in result.all_events:
        if event.is_failure and event.step_failure_data:
            return event.step_failure_data.error.message.strip().splitlines()[0]
    return f"run {result.run_id} failed"


def _pct(value) -> str:
    return "" if value is None else f"{value:.1%}"


def print_sent(rows, sent: dict, day: dt.date) -> None:
    print(f"\nWhat Cheetah Messaging sent for {day} (read back from the simulator):")
    print(f"{'campaign':<16} {'template':<8} {'state':<9} {'send at (UTC)':<17} {'imported':>8} {'rejected':>8} {'sent to':>8} {'times':>5}")
    for r in rows:
        s = sent.get(r.cheetah_name, {})
        when = f"{r.send_at:%Y-%m-%d %H:%M}" if r.send_at else ""
        print(
            f"{r.campaign_id:<16} {r.template_id:<8} {r.state:<9} {when:<17} "
            f"{r.rows_accepted or 0:>8} {r.rows_rejected or 0:>8} {len(s.get('recipients', [])):>8} {s.get('sendCount', 0):>5}"
        )
        if r.error and r.state != "APPROVED":
            print(f"{'':<16} {r.error}")


def print_analysis(engine, now: dt.datetime) -> tuple[int, int]:
    """The campaign analysis as the asset last computed it, one line per Optimove campaign (its
    templates added up; an A/B split's rates per template below it); (final Optimove campaigns,
    restated counts)."""
    from .metrics.analysis import compute_analysis
    from .metrics.rollup import rollup
    from .metrics.status import campaign_names

    with engine.connect() as conn:
        result = compute_analysis(conn, now)
    names = campaign_names(engine, [c.cheetah_name for c in result.campaigns])
    print(f"\nCampaign analysis at {now:%Y-%m-%d %H:%M} UTC (oldest first; Optimove names and metrics):")
    width = max([len(names.get(c.cheetah_name, "")) for c in result.campaigns] + [len("campaign")])
    print(f"{'sent (UTC)':<16} {'campaign':<{width}} {'templates':<9} {'status':<26} {'Delivered':>9} {'open':>6} "
          f"{'click':>6} restated")
    for r in reversed(rollup(result)):
        rates, sent_at = r.rates(), min(p.send_at or now for p in r.parts)
        print(
            f"{sent_at:%Y-%m-%d %H:%M} {names.get(r.parts[0].cheetah_name, r.campaign_id):<{width}} "
            f"{'+'.join(r.templates):<9} {r.status:<26} {r.counts['Delivered']:>9} "
            f"{_pct(rates['open_rate']):>6} {_pct(rates['click_rate']):>6} {'yes' if r.restated else ''}"
        )
        if len(r.parts) > 1:
            print(f"{'':<16}   A/B: opens {r.template_rates('open_rate')}; clicks {r.template_rates('click_rate')}")
    for r in result.restatements[:5]:
        print(f"  restated: {r.cheetah_name} day {r.day}: {r.optimove} {r.previous} on day {r.previous_day} -> {r.value}")
    if len(result.restatements) > 5:
        print(f"  ... and {len(result.restatements) - 5} more restated counts (campaign_analysis: no_restated_metrics)")
    return sum(r.status.startswith("final") for r in rollup(result)), len(result.restatements)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cheetah-demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=20_000, help="demo customers to seed (default 20,000)")
    parser.add_argument("--days", type=int, default=7, help="days of history before today, on a first run (default 7)")
    parser.add_argument("--fresh", action="store_true", help="delete the demo folder (database and Dagster history) first")
    parser.add_argument("--keep", action="store_true", help="(the default, kept for old scripts) keep the demo folder")
    args = parser.parse_args(argv)
    if not 0 <= args.days <= 7:
        parser.error("--days must be 0 to 7 (a snapshot week)")

    from . import configuration, embedded
    from .automation.metric_sensors import BATCH_WAIT, METRIC_SENSORS
    from .automation.time_lapse import TimeLapse, with_clock_at
    from .clock import ClockResource
    from .metrics.keys import SNAPSHOTS
    from .sending.ledger import APPROVED, Ledger

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
    # Today starts at 06:00 UTC, whatever the hour, so the demo shows the same days at any time.
    today = dt.datetime.combine(dt.datetime.now(dt.timezone.utc).date(), DAY_START, tzinfo=dt.timezone.utc)
    week_start = today - args.days * DAY
    sim = embedded.start_simulator(port, live_clock=False, now=week_start, state_path=directory / "simulator.db")
    if embedded.ensure_seeded(db_url, customers=args.customers, today=today.date(), now=today, past_days=args.days):
        print(f"Seeded {args.customers:,} demo customers and {args.days} days of past campaigns in {directory}/customers.db.")
    began = sim.admin.now()  # restored: where the last run left the clock (it never goes back)
    days = [began.date() + k * DAY for k in range((max(today.date(), began.date()) - began.date()).days + 1)]

    # The simulator moves an import on at each poll: no need to wait the default 2 s between them.
    resources = {**configuration.demo_resources(env, import_poll_interval_seconds=0.05), "clock": ClockResource()}
    engine = resources["customer_db"].get_engine()
    home = dagster_home(directory)
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():  # the demo's own instance: no telemetry banner mid-output
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n", encoding="utf-8")
    # This command's own process only: Dagster's telemetry and anything asking for "the" instance
    # write under $DAGSTER_HOME, which must be the demo's, not the user's.
    os.environ["DAGSTER_HOME"] = str(home)
    instance = dg.DagsterInstance.from_config(str(home))
    defs = demo_definitions(resources)
    # The snapshot sensors, then the analysis sensor: two time-lapses, so the analysis reads the
    # tick's snapshots (the daemon evaluates sensors in name order, which puts it first).
    metric = [s.name for s in METRIC_SENSORS]
    lapses = [
        TimeLapse(defs, instance, sim.admin.set_now, resources=lambda when: with_clock_at(resources, when),
                  include=set(names), run_config=lambda _job: QUIET)
        for names in ([n for n in metric if n != ANALYSIS_SENSOR], [ANALYSIS_SENSOR])
    ]

    def snapshots() -> int:  # however the sensor batches them: the partitions materialized
        return len(instance.get_materialized_partitions(SNAPSHOTS))

    print(
        f"Simulated: the Cheetah Messaging account (the simulator's demo account on 127.0.0.1:{port}) and its "
        f"clock, from {began:%Y-%m-%d %H:%M} UTC; the customers and campaigns (demo database).\n"
        f"Running {len(days)} day{'s' if len(days) != 1 else ''} through the pipeline ({days[0]} to {days[-1]}):"
    )
    started = time.perf_counter()
    for day in days:
        when = _day_start(day, began)
        sim.admin.set_now(when)
        result = run_cycle(defs, instance, resources, day, when)
        if not result.success:
            print(f"FAILED: daily_campaign_cycle {day}: {_failure(result)}")
            return 1
        taken = snapshots()
        metric_tick(lapses, when, analyse=False)
        ticks = []
        if day != days[-1]:  # through the day, as the daemon would take them (the last day: below)
            ticks = snapshot_ticks(sent_times(engine, day, when), when, _day_start(day + DAY, began), wait=BATCH_WAIT)
        for tick in ticks:
            metric_tick(lapses, tick, analyse=False)
        snaps = snapshots() - taken
        handed = sum(r.state == APPROVED for r in Ledger(engine, lambda: when).for_day(day))
        print(f"  {day}  clock {when:%H:%M} UTC: {handed} sends handed to Cheetah Messaging; {snaps} metric snapshots taken"
              f"{_at(ticks)} ({time.perf_counter() - started:.0f} s)")

    # Today's sends go out, then the next morning brings their first day (by STOP_BY at the latest).
    last = days[-1]
    rows = Ledger(engine, lambda: when).for_day(last)
    latest = max([r.send_at for r in rows if r.state == APPROVED and r.send_at] + [when])
    # The next morning: a tick after today's first days are due and BATCH_WAIT has passed (the sensor
    # takes them then), before the next day's first send.
    end = max(latest + MINUTE, min(latest + DAY + BATCH_WAIT + MINUTE,
                                   dt.datetime.combine(last + DAY, STOP_BY, tzinfo=dt.timezone.utc)))
    ticks = snapshot_ticks(sent_times(engine, last, when), when, end, wait=BATCH_WAIT)
    taken = snapshots()
    for tick in [t for t in ticks if t <= latest + MINUTE]:
        metric_tick(lapses, tick, analyse=False)
    sim.admin.set_now(latest + MINUTE)
    print_sent(rows, {c["name"]: c for c in sim.admin.sent(recipients=True)["campaigns"]}, last)
    for tick in [t for t in ticks if t > latest + MINUTE]:
        metric_tick(lapses, tick, analyse=False)
    metric_tick(lapses, end, analyse=True)
    snaps = snapshots() - taken
    print(f"\n  {end:%Y-%m-%d %H:%M} UTC: {snaps} metric snapshots taken since {when:%H:%M} the day before{_at(ticks)}")
    failures = [f for lapse in lapses for f in lapse.report.failures]
    for failure in failures:
        print("FAILED:", failure)
    if failures:
        return 1
    final, restated = print_analysis(engine, end)
    print(
        f"\nSimulated clock: {began:%Y-%m-%d %H:%M} -> {end:%Y-%m-%d %H:%M} UTC (it goes on from there next time). "
        f"This run: {len(days)} daily cycle{'s' if len(days) != 1 else ''}; the metric sensors' runs: "
        + ", ".join(f"{job} {n}" for job, n in sorted(Counter(r.job for x in lapses for r in x.report.runs).items()))
        + "; no failure.\n"
        f"The demo database is in {directory}, its Dagster history in {home}. `./run dev` opens both in the "
        "Dagster UI (http://127.0.0.1:3000); look at:\n"
        "  Runs: the daily cycles and the sensors' snapshot and analysis runs of the simulated week;\n"
        "  Assets > campaign_metric_snapshots > Partitions: the campaign x day matrix filling in, older "
        "campaigns with more days taken;\n"
        f"  Assets > campaign_analysis: the campaigns table and the curves chart ({final} campaigns final at day 7), "
        f"and its no_restated_metrics check (a warning when Cheetah restated a count: {restated} restated counts);\n"
        "  Assets > campaign_status: each planned send in one row, its state (SENT once it has gone out), "
        "its template's own recipients and its metric week.\n"
        "`./run demo` again goes on from this clock (nothing is sent twice); `./run demo --fresh` starts over."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
