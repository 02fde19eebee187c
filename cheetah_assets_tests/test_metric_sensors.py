"""The metric sensors, evaluated for real (``build_sensor_context`` + ``evaluate_tick`` against a
real ``DagsterInstance`` and the code location's definitions) over a real SQLite ledger, with the
clock pinned tick by tick. What the daemon would do with a tick's result (add the requested
partitions, launch the requested runs) the tests do by hand, with real materializations.
"""

from __future__ import annotations

import datetime as dt
import random
from collections import Counter
from dataclasses import dataclass, field

import dagster as dg
import pytest
import sqlalchemy as sa
from dagster._core.test_utils import create_run_for_test

from cheetah_assets.automation.metric_sensors import (
    BATCH_WAIT,
    METRIC_SENSORS,
    campaign_analysis_sensor,
    register_sent_campaigns_sensor,
    request_metric_snapshots_sensor,
)
from cheetah_assets.cheetah.resource import CheetahMessagingResource
from cheetah_assets.clock import ClockResource
from cheetah_assets.customers import seed
from cheetah_assets.customers.resource import CustomerDatabaseResource
from cheetah_assets.customers.schema import send_ledger
from cheetah_assets.automation.jobs import METRIC_JOBS, metric_snapshot_batch_job
from cheetah_assets.metrics.assets import (
    METRIC_ASSETS,
    METRIC_CHECKS,
    campaign_analysis,
    campaign_metric_snapshots,
    campaigns_partitions,
    snapshot_partition_key,
)
from cheetah_assets.metrics.due import snapshots_due
from cheetah_assets.metrics.snapshots import prepare_database
from cheetah_assets.metrics.views import campaign_status
from cheetah_assets.simulator.metrics import metrics_at
from cheetah_assets.timeutil import parse_iso, utc

from .conftest import DEMO_CREDENTIALS, make_resources
from .helpers import ledger_rows, run_cycle
from .test_metrics import DAY, SEED, analysis_rows, counts_of, insert_send, set_clock, snapshot_rows
from .test_metrics import engine  # noqa: F401 - fixture

T0 = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.timezone.utc)
PARTITIONS = campaigns_partitions.name


def definitions(db_url: str, cheetah: CheetahMessagingResource | None = None) -> dg.Definitions:
    return dg.Definitions(
        assets=METRIC_ASSETS,
        asset_checks=METRIC_CHECKS,
        jobs=METRIC_JOBS,
        sensors=METRIC_SENSORS,
        resources={
            "cheetah": cheetah or CheetahMessagingResource(endpoint="https://cheetah.invalid", **DEMO_CREDENTIALS),
            "customer_db": CustomerDatabaseResource(url=db_url),
            "clock": ClockResource(),
        },
    )


@dataclass
class Ticker:
    """Evaluates sensors tick by tick, keeping each one's cursor, and does what the daemon does
    with a result: adds the requested partitions. Every request is logged with its tick time: for a
    snapshot batch run, each partition it lists (``"<campaign>|day_k"``); for another run, its run key."""

    instance: dg.DagsterInstance
    db_url: str
    defs: dg.Definitions
    cursors: dict[str, str | None] = field(default_factory=dict)
    requested: list[tuple[dt.datetime, str, dg.RunRequest]] = field(default_factory=list)
    registered: list[tuple[dt.datetime, str]] = field(default_factory=list)
    runs: list[dg.RunRequest] = field(default_factory=list)

    def tick(self, sensor, now: dt.datetime):
        context = dg.build_sensor_context(
            instance=self.instance,
            instance_ref=self.instance.get_ref(),  # as in the daemon: partition keys are validated
            cursor=self.cursors.get(sensor.name),
            resources={
                "cheetah": self.defs.resources["cheetah"],  # the account the sends must be recorded against
                "customer_db": CustomerDatabaseResource(url=self.db_url),
                "clock": ClockResource(fixed_now=now.isoformat()),
            },
            definitions=self.defs,
        )
        data = sensor.evaluate_tick(context)
        self.cursors[sensor.name] = data.cursor
        for req in data.dynamic_partitions_requests or []:
            self.instance.add_dynamic_partitions(req.partitions_def_name, list(req.partition_keys))
            self.registered.extend((now, k) for k in req.partition_keys)
        for rr in data.run_requests or []:
            self.runs.append(rr)
            for key in batch_partitions(rr) if rr.run_key.startswith("snapshots-") else [rr.run_key]:
                self.requested.append((now, key, rr))
        return data

    def both(self, now: dt.datetime) -> list[str]:
        """One tick of the registration sensor, then of the request sensor; the partitions it asked for."""
        before = len(self.requested)
        self.tick(register_sent_campaigns_sensor, now)
        self.tick(request_metric_snapshots_sensor, now)
        return [key for _, key, _ in self.requested[before:]]

    def run_keys(self) -> list[str]:
        """Every snapshot partition requested (in batch runs) and every other run's key, in order."""
        return [key for _, key, _ in self.requested]

    def first_requested(self) -> dict[str, dt.datetime]:
        out: dict[str, dt.datetime] = {}
        for when, key, _ in self.requested:
            out.setdefault(key, when)
        return out


def batch_partitions(rr: dg.RunRequest) -> list[str]:
    """The partitions a run request of metric_snapshot_batch_job lists."""
    return list(rr.run_config["ops"]["take_due_snapshots"]["config"]["partitions"])


@pytest.fixture
def instance():
    with dg.instance_for_test() as instance:
        yield instance


@pytest.fixture
def ticker(instance, db_url, engine):  # noqa: F811
    return Ticker(instance, db_url, definitions(db_url))


def week_keys(name: str) -> set[str]:
    return {f"{name}|day_{k}" for k in range(1, 8)}


# ------------------------------------------------------------------------------------------------
# registration
# ------------------------------------------------------------------------------------------------
def test_registration_adds_each_sent_campaign_once(ticker, instance, engine):  # noqa: F811
    insert_send(engine, "OPT-S1", send_at=T0 - dt.timedelta(hours=1), camp_id=1)
    insert_send(engine, "OPT-S2", send_at=T0 - dt.timedelta(hours=1), camp_id=2)  # same send time
    insert_send(engine, "OPT-FUTURE", send_at=T0 + dt.timedelta(hours=2), camp_id=3)
    insert_send(engine, "OPT-LAUNCHED", send_at=T0 - dt.timedelta(hours=2), camp_id=4, state="LAUNCHED")
    insert_send(engine, "OPT-NO-ID", send_at=T0 - dt.timedelta(hours=2), camp_id=None)
    insert_send(engine, "OPT-CANCELLED", send_at=T0 - dt.timedelta(hours=3), camp_id=5, state="CANCELLED")

    ticker.tick(register_sent_campaigns_sensor, T0)
    assert set(instance.get_dynamic_partitions(PARTITIONS)) == {"OPT-S1", "OPT-S2"}
    data = ticker.tick(register_sent_campaigns_sensor, T0 + dt.timedelta(minutes=1))
    assert not data.dynamic_partitions_requests and "no newly sent campaign" in data.skip_message
    # Not before its send time...
    ticker.tick(register_sent_campaigns_sensor, T0 + dt.timedelta(hours=1, minutes=59))
    assert "OPT-FUTURE" not in instance.get_dynamic_partitions(PARTITIONS)
    # ...and at the first tick after it.
    ticker.tick(register_sent_campaigns_sensor, T0 + dt.timedelta(hours=2, minutes=1))
    assert "OPT-FUTURE" in instance.get_dynamic_partitions(PARTITIONS)

    # A send recorded as APPROVED only days after its send time (a run recovered a lost reply):
    # its send time is far behind the cursor; its updated_at is not.
    late_at = T0 + dt.timedelta(hours=3)
    with engine.begin() as conn:
        conn.execute(
            send_ledger.update()
            .where(send_ledger.c.cheetah_name == "OPT-LAUNCHED")
            .values(state="APPROVED", updated_at=late_at)
        )
    ticker.tick(register_sent_campaigns_sensor, late_at + dt.timedelta(minutes=1))
    assert sorted(instance.get_dynamic_partitions(PARTITIONS)) == ["OPT-FUTURE", "OPT-LAUNCHED", "OPT-S1", "OPT-S2"]
    assert Counter(k for _, k in ticker.registered) == Counter({"OPT-S1": 1, "OPT-S2": 1, "OPT-FUTURE": 1, "OPT-LAUNCHED": 1})


# ------------------------------------------------------------------------------------------------
# snapshot requests
# ------------------------------------------------------------------------------------------------
def test_each_day_is_requested_once_at_its_time_never_before_never_an_eighth(ticker, engine):  # noqa: F811
    send = dt.datetime(2026, 11, 20, 9, 17, 23, tzinfo=dt.timezone.utc)
    sends = {"OPT-C1": send, "OPT-C2": send, "OPT-C3": send + dt.timedelta(hours=5, minutes=3)}
    for n, (name, at) in enumerate(sends.items()):
        insert_send(engine, name, send_at=at, camp_id=100 + n)
    dues = {f"{name}|day_{k}": at + k * DAY for name, at in sends.items() for k in range(1, 8)}
    points = {send - dt.timedelta(hours=2) + i * dt.timedelta(minutes=97) for i in range(int(10 * 24 * 60 / 97))}
    for due in dues.values():
        points |= {due - dt.timedelta(seconds=1), due, due + dt.timedelta(seconds=1)}
        points |= {due + BATCH_WAIT - dt.timedelta(seconds=1), due + BATCH_WAIT, due + BATCH_WAIT + dt.timedelta(seconds=1)}
    ticks = sorted(points)
    for now in ticks:
        ticker.both(now)

    keys = ticker.run_keys()
    assert len(keys) == len(set(keys)) == 21  # each once
    assert set(keys) == set(dues)  # exactly days 1..7 of each campaign
    for key, when in ticker.first_requested().items():
        # A lone day waits for others BATCH_WAIT at most: requested at the first tick at or after
        # its due time plus that wait, never before its due time.
        assert when == dues[key] + BATCH_WAIT, (key, when, dues[key])
    # One batch run per tick with something due, listing that tick's partitions (two at once when
    # OPT-C1 and OPT-C2, sent together, come due together), no partition in two runs.
    runs = ticker.runs
    assert len(runs) == len({rr.run_key for rr in runs}) == len({when for when, _, _ in ticker.requested})
    assert sorted(len(batch_partitions(rr)) for rr in runs) == [1] * 7 + [2] * 7
    for rr in runs:
        assert rr.run_key.startswith("snapshots-") and rr.partition_key is None
        assert rr.tags["cheetah/snapshots"] == str(len(batch_partitions(rr)))
        for key in batch_partitions(rr):
            name, day = key.split("|")
            assert str(snapshot_partition_key(name, int(day.removeprefix("day_")))) == key
    assert request_metric_snapshots_sensor.job_name == metric_snapshot_batch_job.name


def test_a_two_day_outage_is_caught_up_exactly_once(ticker, engine):  # noqa: F811
    send = T0
    insert_send(engine, "OPT-OUT", send_at=send, camp_id=1)
    insert_send(engine, "OPT-DURING", send_at=send + 2 * DAY, camp_id=2)  # sent while the daemon was down
    hour = dt.timedelta(hours=1)
    before = [send - hour + i * hour for i in range(29)]  # up to send + 1d 3h
    assert before[-1] == send + DAY + 3 * hour
    for now in before:
        ticker.both(now)
    assert ticker.run_keys() == ["OPT-OUT|day_1"]

    resume = send + 3 * DAY + 6 * hour  # two days and three hours later
    caught_up = ticker.both(resume)
    assert sorted(caught_up) == ["OPT-DURING|day_1", "OPT-OUT|day_2", "OPT-OUT|day_3"]

    for i in range(1, 24 * 7):
        ticker.both(resume + i * hour)
    keys = ticker.run_keys()
    assert len(keys) == len(set(keys))
    assert set(keys) == week_keys("OPT-OUT") | week_keys("OPT-DURING")
    first = ticker.first_requested()
    for k in range(4, 8):  # back on schedule: at the first hourly tick once a lone day has waited BATCH_WAIT
        assert send + k * DAY + BATCH_WAIT <= first[f"OPT-OUT|day_{k}"] < send + k * DAY + BATCH_WAIT + hour


def test_a_send_recorded_late_gets_its_missed_days_once(ticker, engine):  # noqa: F811
    send = T0
    insert_send(engine, "OPT-ONTIME", send_at=send, camp_id=1)
    insert_send(engine, "OPT-LATE", send_at=send, camp_id=2, state="LAUNCHED")
    hour = dt.timedelta(hours=1)
    now = send - hour
    while now < send + 3 * DAY + 12 * hour:
        ticker.both(now)
        now += hour
    assert not any(k.startswith("OPT-LATE") for k in ticker.run_keys())
    with engine.begin() as conn:  # the send path records it APPROVED three and a half days late
        conn.execute(
            send_ledger.update().where(send_ledger.c.cheetah_name == "OPT-LATE").values(state="APPROVED", updated_at=now)
        )
    late = ticker.both(now)
    assert sorted(late) == ["OPT-LATE|day_1", "OPT-LATE|day_2", "OPT-LATE|day_3"]
    while now < send + 8 * DAY:
        now += hour
        ticker.both(now)
    keys = ticker.run_keys()
    assert len(keys) == len(set(keys)) and set(keys) == week_keys("OPT-ONTIME") | week_keys("OPT-LATE")


def test_the_first_tick_requests_what_is_due_within_a_week(ticker, instance, engine):  # noqa: F811
    now = T0
    insert_send(engine, "OPT-RECENT", send_at=now - dt.timedelta(days=2, hours=12), camp_id=1)
    insert_send(engine, "OPT-OLD", send_at=now - dt.timedelta(days=10, hours=1), camp_id=2)
    insert_send(engine, "OPT-UNREGISTERED", send_at=now - dt.timedelta(days=1, hours=12), camp_id=3)
    instance.add_dynamic_partitions(PARTITIONS, ["OPT-RECENT", "OPT-OLD"])

    ticker.tick(request_metric_snapshots_sensor, now)
    assert sorted(ticker.run_keys()) == [
        "OPT-OLD|day_4", "OPT-OLD|day_5", "OPT-OLD|day_6", "OPT-OLD|day_7",  # days 1-3 are over a week old
        "OPT-RECENT|day_1", "OPT-RECENT|day_2",
    ]
    later = ticker.both(now + dt.timedelta(minutes=1))  # registers OPT-UNREGISTERED, asks its due day
    assert later == ["OPT-UNREGISTERED|day_1"]


def test_a_tick_reads_only_the_sends_with_a_day_due(engine):  # noqa: F811
    """1,000 campaigns inside their week: a steady-state tick reads the few sends with a day due
    in its minute, and asks the instance about those names only."""
    now = T0
    rng = random.Random(7)
    sends = {f"OPT-B{i:04d}": now - dt.timedelta(seconds=rng.randrange(1, 7 * 86_400)) for i in range(998)}
    # and two whose days fall due in the steady-state tick's minute (day 2 and day 5)
    sends |= {"OPT-EDGE2": now - 2 * DAY + dt.timedelta(seconds=30), "OPT-EDGE5": now - 5 * DAY + dt.timedelta(seconds=60)}
    stamp = now - 8 * DAY
    with engine.begin() as conn:
        conn.execute(
            send_ledger.insert(),
            [
                dict(
                    send_key=f"{n}/1004/{at.date()}", campaign_id=n, template_id="1004", send_date=at.date(),
                    list_key=f"{n}/{at.date()}", cheetah_name=n, state="APPROVED", send_at=at, camp_id=i,
                    created_at=stamp, updated_at=stamp,
                )
                for i, (n, at) in enumerate(sends.items())
            ],
        )
    asked: list[list[str]] = []

    def registered(names):
        asked.append(list(names))
        return set(names)

    first = snapshots_due(engine, now=now, last_tick=None, registered=registered, registered_since_last_tick=lambda: list(sends))
    expected = {(n, k) for n, at in sends.items() for k in range(1, 8) if at + k * DAY <= now}
    assert {(d.cheetah_name, d.day) for d in first.due} == expected and len(first.due) == len(expected)

    last, now2 = now, now + dt.timedelta(seconds=60)
    due_now = {(n, k) for n, at in sends.items() for k in range(1, 8) if last < at + k * DAY <= now2}
    steady = snapshots_due(engine, now=now2, last_tick=last, registered=registered, registered_since_last_tick=list)
    assert {(d.cheetah_name, d.day) for d in steady.due} == due_now
    assert steady.window_sends == len({n for n, _ in due_now})  # nothing else was read
    assert sorted(asked[-1]) == sorted({n for n, _ in due_now})
    assert {("OPT-EDGE2", 2), ("OPT-EDGE5", 5)} <= due_now and len(due_now) < 20  # a handful, not 7,000


# ------------------------------------------------------------------------------------------------
# the analysis sensor
# ------------------------------------------------------------------------------------------------
def test_analysis_is_requested_once_per_newer_snapshot(ticker, instance, db_url, engine):  # noqa: F811
    assert ticker.tick(campaign_analysis_sensor, T0).skip_message == "no metric snapshot yet"
    instance.add_dynamic_partitions(PARTITIONS, ["OPT-X"])

    def report_snapshot(day: int) -> int:
        instance.report_runless_asset_event(
            dg.AssetMaterialization(campaign_metric_snapshots.key, partition=f"OPT-X|day_{day}")
        )
        return instance.fetch_materializations(campaign_metric_snapshots.key, limit=1).records[0].storage_id

    first = report_snapshot(1)
    data = ticker.tick(campaign_analysis_sensor, T0)
    (key,) = [rr.run_key for rr in data.run_requests]
    assert key.startswith(f"analysis-{first}-")  # then the sensor's epoch and sequence number
    # Same state, no run launched for it yet: the same run key, which the daemon launches once.
    assert [rr.run_key for rr in ticker.tick(campaign_analysis_sensor, T0).run_requests] == [key]

    resources = {"customer_db": CustomerDatabaseResource(url=db_url), "clock": ClockResource(fixed_now=T0.isoformat())}
    dg.materialize([campaign_analysis], resources=resources, instance=instance)
    assert "up to date" in ticker.tick(campaign_analysis_sensor, T0).skip_message

    second = report_snapshot(2)
    run = create_run_for_test(instance, job_name="campaign_analysis_job", status=dg.DagsterRunStatus.STARTED)
    assert "still in flight" in ticker.tick(campaign_analysis_sensor, T0).skip_message
    instance.report_run_canceled(run)
    (again,) = [rr.run_key for rr in ticker.tick(campaign_analysis_sensor, T0).run_requests]
    assert again.startswith(f"analysis-{second}-") and again != key


def test_a_failed_analysis_run_is_requested_again_under_new_run_keys(ticker, instance):
    """Review D4: a failed analysis run is requested again after 5, 15 and 60 minutes, each time
    under a run key never used before (the daemon skips a key it has launched, so a repeated key
    left the analysis stale until the next snapshot); then the sensor gives up on that state. A
    state whose run succeeded is not requested again."""
    instance.add_dynamic_partitions(PARTITIONS, ["OPT-X"])
    instance.report_runless_asset_event(dg.AssetMaterialization(campaign_metric_snapshots.key, partition="OPT-X|day_1"))
    launched: list[str] = []

    def tick(minutes: int, outcome=dg.DagsterRunStatus.FAILURE):
        """One tick at T0 + minutes, its requests handled as the daemon does (a key that already
        has a run is skipped); each launched run ends with ``outcome``."""
        data = ticker.tick(campaign_analysis_sensor, T0 + dt.timedelta(minutes=minutes))
        for rr in data.run_requests or []:
            tags = {"dagster/run_key": rr.run_key, "dagster/sensor_name": campaign_analysis_sensor.name}
            if not instance.get_runs(filters=dg.RunsFilter(tags=tags), limit=1):
                create_run_for_test(instance, job_name="campaign_analysis_job", status=outcome, tags=tags)
                launched.append(rr.run_key)
        return data

    tick(0)
    assert len(launched) == 1
    assert "requested again at" in tick(1).skip_message  # the first back-off: 5 minutes
    tick(6)
    assert len(launched) == 2 and "-retry1-" in launched[1]
    assert not tick(7).run_requests
    tick(22)  # 15 minutes after the retry's failure was seen (at 7)
    assert len(launched) == 3 and "-retry2-" in launched[2]
    assert not tick(23).run_requests and not tick(82).run_requests
    tick(83)  # 60 minutes after its failure was seen (at 23)
    assert len(launched) == 4 and "-retry3-" in launched[3]
    skipped = tick(200).skip_message
    assert "failed 4 times" in skipped and "campaign_analysis_job" in skipped
    assert not tick(500).run_requests
    assert len(set(launched)) == len(launched) == 4  # no key repeated: the daemon launched every one

    # A new snapshot: a fresh request; once its run succeeded, that state is not requested again.
    instance.report_runless_asset_event(dg.AssetMaterialization(campaign_metric_snapshots.key, partition="OPT-X|day_2"))
    tick(600, outcome=dg.DagsterRunStatus.SUCCESS)
    assert len(launched) == 5 and "-retry" not in launched[4]
    for minutes in (601, 700, 900):
        assert not tick(minutes).run_requests
    assert len(set(launched)) == 5


# ------------------------------------------------------------------------------------------------
# end to end: the send path, the sensors, the snapshots, the analysis
# ------------------------------------------------------------------------------------------------
def test_end_to_end_from_the_send_path_to_the_analysis(sim, db_url, engine):  # noqa: F811
    with dg.instance_for_test() as instance:
        send_then_measure_a_week(sim, db_url, engine, instance)


@pytest.mark.slow(seconds=23)
@pytest.mark.postgres
def test_end_to_end_on_a_postgres_instance_and_database(sim):
    """The production shape: Dagster's runs, events and dynamic partitions in PostgreSQL
    (dagster-postgres), and the customer database in PostgreSQL too."""
    from .pg import fresh_postgres_database, postgres_dagster_instance

    with fresh_postgres_database() as db_url, postgres_dagster_instance() as instance:
        engine = CustomerDatabaseResource(url=db_url).get_engine()
        prepare_database(engine)
        send_then_measure_a_week(sim, db_url, engine, instance)
        # What the sensors registered lives in PostgreSQL, where the daemon would read it.
        storage = sa.create_engine(instance.run_storage.postgres_url)
        try:
            with storage.connect() as conn:
                stored = conn.execute(sa.text("SELECT count(*) FROM dynamic_partitions")).scalar()
        finally:
            storage.dispose()
        assert stored == len(instance.get_dynamic_partitions(PARTITIONS)) == 1


def send_then_measure_a_week(sim, db_url, engine, instance) -> None:  # noqa: F811
    """One campaign sent by the daily cycle, then a week of sensor ticks every four hours, with
    the requested snapshots and analyses materialized; checked against the simulator's truth."""
    start = sim.admin.now()  # 06:00 UTC today
    day = start.date()
    seed.seed_demo(engine, customers=300, days=0, today=day, now=start)
    seed.add_campaign(
        engine, campaign_id="MET1", name="Metrics end to end", send_date=day, send_time="09:00",
        time_zone="UTC", template_ids="1004", target_group="all_customers",
    )
    cheetah = make_resources(sim, db_url)["cheetah"]
    assert run_cycle(make_resources(sim, db_url), day, instance).success
    (row,) = ledger_rows(engine)
    assert row["state"] == "APPROVED"
    name, send_at = row["cheetah_name"], utc(row["send_at"])

    ticker = Ticker(instance, db_url, definitions(db_url, cheetah))
    step = dt.timedelta(hours=4)
    now = start
    analyses = 0
    while now <= send_at + 8 * DAY:
        set_clock(sim, now)
        before = len(ticker.runs)
        ticker.both(now)
        for rr in ticker.runs[before:]:  # what the daemon would launch: one batch run per tick
            result = metric_snapshot_batch_job.execute_in_process(
                run_config=rr.run_config, resources=make_resources(sim, db_url), instance=instance, tags=rr.tags,
            )
            assert result.success
        analysis = ticker.tick(campaign_analysis_sensor, now)
        for _ in analysis.run_requests or []:
            last = dg.materialize(  # what campaign_analysis_job selects
                [campaign_analysis, campaign_status, *METRIC_CHECKS], resources=make_resources(sim, db_url), instance=instance
            )
            assert last.success
            analyses += 1
        now += step
    assert "up to date" in ticker.tick(campaign_analysis_sensor, now).skip_message

    keys = ticker.run_keys()
    assert sorted(k for k in keys if not k.startswith("analysis-")) == sorted(week_keys(name))
    # One analysis for the day's sends (the status view), one after each new snapshot, none for an unchanged state.
    assert len([k for k in keys if k.startswith("analysis-")]) == analyses == 8
    assert len([k for k in keys if "-sends-" in k]) == 1
    (sent,) = [c for c in sim.admin.sent()["campaigns"] if c["name"] == name]
    recipients, sent_at = len(sent["recipients"]), parse_iso(sent["sentAt"])
    assert sent["sendCount"] == 1 and sent_at == send_at and recipients > 200
    rows = snapshot_rows(engine)
    assert set(rows) == {(name, k) for k in range(1, 8)}
    for (_, k), snap in rows.items():
        as_of = utc(snap["as_of"])
        assert send_at + k * DAY <= as_of < send_at + k * DAY + step  # taken once its day had come
        assert counts_of(snap) == metrics_at(SEED, row["camp_id"], recipients, as_of - sent_at)
    truth = metrics_at(SEED, row["camp_id"], recipients, utc(rows[(name, 7)]["as_of"]) - sent_at)
    result = analysis_rows(engine)[name]
    assert (result["days_reported"], result["latest_day"]) == (7, 7)
    assert (result["sent"], result["delivered"], result["unique_opens"], result["unique_clicks"], result["unique_unsubscribes"]) == (
        truth["Sent"], truth["Received"], truth["MessageOpens"], truth["MessageClicks"], truth["Unsubs"]
    )
    assert result["open_rate"] == pytest.approx(truth["MessageOpens"] / truth["Received"])
    assert result["delivery_rate"] == pytest.approx(truth["Received"] / truth["Sent"])
    # The last analysis's tables: the campaign by its Optimove name, final; its status row.
    metadata = {
        e.materialization.asset_key.to_user_string(): {k: v.value for k, v in e.materialization.metadata.items()}
        for e in last.get_asset_materialization_events()
    }
    (campaign,) = [r.data for r in metadata["campaign_analysis"]["campaigns"].records]
    assert (campaign["name"], campaign["status"], campaign["provisional"]) == ("Metrics end to end", "final (day 7)", False)
    (status,) = [r.data for r in metadata["campaign_status"]["campaigns"].records]
    (detail,) = [r.data for r in metadata["campaign_status"]["details"].records]
    assert {k: status[k] for k in ("name", "template", "state", "metrics", "recipients", "delivered")} == {
        "name": "Metrics end to end", "template": "1004", "state": "SENT",
        "metrics": "final (7 of 7 days)", "recipients": recipients, "delivered": truth["Received"],
    }
    assert {k: detail[k] for k in ("campaign", "ledger", "stage", "days_taken", "cheetah_name")} == {
        "campaign": "MET1", "ledger": "APPROVED", "stage": "final", "days_taken": 7, "cheetah_name": name,
    }
    assert status["opened"] == f"{truth['MessageOpens'] / truth['Received']:.1%}"
    assert metadata["campaign_status"]["dagster/row_count"] == 1 and metadata["campaign_status"]["overdue"] == 0
    latest_snapshot = instance.fetch_materializations(campaign_metric_snapshots.key, limit=1).records[0]
    assert latest_snapshot.asset_materialization.metadata["campaign_name"].value == "Metrics end to end"
