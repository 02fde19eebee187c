"""One run per sensor tick takes every due snapshot (``metric_snapshot_batch_job``), evaluated for
real: the request sensor through ``build_sensor_context`` + ``evaluate_tick``, the batch run
executed in a real instance against the simulator, the snapshots in a real SQLite database.

Each (campaign, day) stays its own partition of ``campaign_metric_snapshots`` with its own
metadata; a campaign that fails is reported and asked for again by the next tick, never stopping
the others; a backfill through the asset (the UI and CLI path) still works next to it.
"""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest

from cheetah_assets.automation.jobs import metric_snapshot_batch_job
from cheetah_assets.automation.metric_sensors import (
    BATCH_WAIT,
    campaign_analysis_sensor,
    register_sent_campaigns_sensor,
    request_metric_snapshots_sensor,
)
from cheetah_assets.customers.schema import send_ledger
from cheetah_assets.metrics.analysis import compute_analysis
from cheetah_assets.metrics.assets import METRIC_CHECKS, campaign_analysis, campaign_metric_snapshots, campaigns_partitions
from cheetah_assets.metrics.batch import MAX_ATTEMPTS, RETRY_DELAYS, parse_partition
from cheetah_assets.metrics.snapshots import SnapshotError, run_key, take_snapshot
from cheetah_assets.sending.ledger import Account, account_of

from .conftest import cheetah_resource, make_resources
from .test_metric_sensors import Ticker, batch_partitions, definitions
from .test_metrics import (  # noqa: F401 - fixtures
    DAY,
    counts_of,
    engine,
    insert_send,
    send_at,
    send_campaign,
    set_clock,
    snapshot,
    snapshot_rows,
)

KEYS = campaign_metric_snapshots.key
MINUTE = dt.timedelta(minutes=1)
REPORT = "/services2/api/Reports/EmailCampaign"
LABELS = {"Sent": "Sent (Sent)", "Received": "Delivered (Received)", "MessageOpens": "Unique Opens (MessageOpens)",
          "MessageClicks": "Unique Clicks (MessageClicks)", "Unsubs": "Unique Unsubscribes (Unsubs)"}


@pytest.fixture
def instance():
    with dg.instance_for_test() as instance:
        yield instance


def run_batches(sim, db_url, instance, ticker: Ticker, now: dt.datetime) -> list[dg.ExecuteInProcessResult]:
    """One tick of both metric sensors at ``now``, and the batch runs it asked for, as the daemon would."""
    set_clock(sim, now)
    before = len(ticker.runs)
    ticker.both(now)
    return [
        metric_snapshot_batch_job.execute_in_process(
            run_config=rr.run_config, resources=make_resources(sim, db_url, now), instance=instance,
            tags=rr.tags, raise_on_error=False,
        )
        for rr in ticker.runs[before:]
    ]


def observations(instance, key: str) -> list[dict]:
    records = instance.fetch_observations(dg.AssetRecordsFilter(asset_key=KEYS, asset_partitions=[key]), limit=20).records
    return [{k: v.value for k, v in r.asset_observation.metadata.items()} for r in reversed(records)]


def failure_of(result) -> dg.DagsterEvent:
    (event,) = [e for e in result.all_events if e.is_step_failure]
    return event


def test_partition_keys_parse_as_the_partitions_definition_writes_them():
    assert parse_partition(run_key("OPT-C1-1004-20261123", 3)) == ("OPT-C1-1004-20261123", 3)
    for bad in ("OPT-C1", "OPT-C1|day_8", "|day_1", "OPT-C1|3"):
        with pytest.raises(ValueError):
            parse_partition(bad)


def test_one_run_takes_every_due_partition_each_with_its_own_metadata(sim, db_url, engine, send_at, instance):  # noqa: F811
    sent = [send_campaign(sim, engine, f"OPT-BT{i}-1004-D", 40 + 20 * i, send_at) for i in range(3)]
    ticker = Ticker(instance, db_url, definitions(db_url, cheetah_resource(sim)))
    now = send_at + 2 * DAY + MINUTE
    (result,) = run_batches(sim, db_url, instance, ticker, now)  # the first tick: days 1 and 2 of each, one run
    assert result.success
    expected = {run_key(c.name, k) for c in sent for k in (1, 2)}
    assert set(ticker.run_keys()) == expected and len(ticker.run_keys()) == 6

    # One run, six materializations: each its own partition, with its own metadata.
    assert instance.get_runs_count(dg.RunsFilter(job_name=metric_snapshot_batch_job.name)) == 1
    assert {str(k) for k in instance.get_materialized_partitions(KEYS)} == expected
    records = instance.fetch_materializations(KEYS, limit=20).records
    assert len(records) == 6 and {r.run_id for r in records} == {result.run_id}
    rows = snapshot_rows(engine)
    by_name = {c.name: c for c in sent}
    for record in records:
        name, day = parse_partition(record.partition_key)
        metadata = {k: v.value for k, v in record.asset_materialization.metadata.items()}
        truth = by_name[name].truth(now)
        assert metadata["day"] == day and metadata["camp_id"] == by_name[name].camp_id
        assert {m: metadata[label] for m, label in LABELS.items()} == truth == counts_of(rows[(name, day)])
        assert metadata["provisional"] is False and metadata["due_at"] == (send_at + day * DAY).timestamp()
        assert metadata.get("compared_with_day") == (1 if day == 2 else None)
    assert result.output_for_node("take_due_snapshots") == 6

    # The analysis sees them, and its checks pass; the next tick asks for nothing.
    assert ticker.tick(campaign_analysis_sensor, now).run_requests
    analysis = dg.materialize([campaign_analysis, *METRIC_CHECKS], resources=make_resources(sim, db_url, now), instance=instance)
    assert all(e.passed for e in analysis.get_asset_check_evaluations())
    assert run_batches(sim, db_url, instance, ticker, now + MINUTE) == []
    # Day 3 comes for all three at once: the ticks gather it for BATCH_WAIT, then one run, three partitions.
    assert run_batches(sim, db_url, instance, ticker, send_at + 3 * DAY + MINUTE) == []
    held = ticker.tick(request_metric_snapshots_sensor, send_at + 3 * DAY + 2 * MINUTE)
    assert "3 snapshot days due" in held.skip_message and "gathering" in held.skip_message
    (day_3,) = run_batches(sim, db_url, instance, ticker, send_at + 3 * DAY + BATCH_WAIT)
    assert day_3.success and sorted(batch_partitions(ticker.runs[-1])) == sorted(run_key(c.name, 3) for c in sent)


def test_a_failing_campaign_is_isolated_reported_and_retried_by_the_next_tick(sim, db_url, engine, send_at, instance):  # noqa: F811
    good = [send_campaign(sim, engine, f"OPT-GD{i}-1004-D", 30, send_at) for i in range(3)]
    insert_send(engine, "OPT-BAD-1004-D", send_at=send_at, camp_id=987654)  # Cheetah has no such campaign: 404, always
    ticker = Ticker(instance, db_url, definitions(db_url, cheetah_resource(sim)))
    now = send_at + DAY + BATCH_WAIT
    # The first report request (OPT-BAD's, first in name order) fails by itself (404); the fault makes
    # the second one (OPT-GD0's) fail with 503 for every attempt of the client: a passing Cheetah error.
    sim.admin.add_fault(kind="status", method="GET", path=REPORT, status=503, after=1, times=5)
    (first,) = run_batches(sim, db_url, instance, ticker, now)
    keys = batch_partitions(ticker.runs[-1])
    assert keys == sorted(["OPT-BAD-1004-D|day_1", *(run_key(c.name, 1) for c in good)])
    bad, flaky = keys[0], keys[1]

    # The run fails, naming the two; the others were taken in it all the same.
    assert not first.success
    failure = failure_of(first)
    assert "2 of 4 snapshots were not taken (2 taken)" in failure.step_failure_data.error.message
    table = failure.step_failure_data.user_failure_data.metadata["failed_snapshots"].value
    assert sorted((r.data["partition"], r.data["attempt"], r.data["retried"]) for r in table.records) == [
        (bad, 1, False), (flaky, 1, True)
    ]
    assert {str(k) for k in instance.get_materialized_partitions(KEYS)} == set(keys[2:])
    # A campaign Cheetah does not know (deleted there?) is permanent: said so, never asked for again.
    reason = observations(instance, bad)[-1]["snapshot_failed"]
    assert reason.startswith("Cheetah Messaging has no campaign 987654.") and "deleted" in reason

    # The flaky one is asked for again once its back-off has passed (attempt 2), and taken.
    assert run_batches(sim, db_url, instance, ticker, now + MINUTE) == []
    (second,) = run_batches(sim, db_url, instance, ticker, now + RETRY_DELAYS[0])
    assert batch_partitions(ticker.runs[-1]) == [flaky]
    assert ticker.runs[-1].run_config["ops"]["take_due_snapshots"]["config"]["attempts"] == {flaky: 2}
    assert second.success
    assert {str(k) for k in instance.get_materialized_partitions(KEYS)} == set(keys[1:])
    assert run_batches(sim, db_url, instance, ticker, now + 2 * RETRY_DELAYS[-1]) == []  # day 2 is not due yet
    # Nothing good was asked for twice, the deleted one once.
    requested = ticker.run_keys()
    assert all(requested.count(k) == 1 for k in keys[2:]) and requested.count(flaky) == 2
    assert requested.count(bad) == 1


def test_retries_are_spaced_out_over_hours_then_left_to_snapshots_on_time(sim, db_url, engine, send_at, instance):  # noqa: F811
    """Regression: the four attempts came one a minute (a 409 or a 20-minute outage lost the day)."""
    a = send_campaign(sim, engine, "OPT-RTY-1004-D", 30, send_at)
    key = run_key(a.name, 1)
    ticker = Ticker(instance, db_url, definitions(db_url, cheetah_resource(sim)))
    sim.admin.add_fault(kind="status", method="GET", path=REPORT, status=503, times=None)  # down until cleared
    when = send_at + DAY + BATCH_WAIT
    (run,) = run_batches(sim, db_url, instance, ticker, when)
    assert not run.success
    for attempt, delay in enumerate(RETRY_DELAYS, 1):
        last = observations(instance, key)[-1]
        assert last["attempt"] == attempt and last["retried"] is True
        assert last["retry_at"] == (when + delay).timestamp() and last["failed_at"] == when.timestamp()
        # While it waits, the ticks ask for nothing.
        for wait in (MINUTE, delay / 2, delay - MINUTE):
            assert run_batches(sim, db_url, instance, ticker, when + wait) == []
        when += delay
        (run,) = run_batches(sim, db_url, instance, ticker, when)
        assert batch_partitions(ticker.runs[-1]) == [key] and not run.success
    assert len(RETRY_DELAYS) + 1 == MAX_ATTEMPTS and sum(RETRY_DELAYS, dt.timedelta()) >= dt.timedelta(hours=5)
    assert observations(instance, key)[-1] | {"snapshot_failed": ""} == {
        "snapshot_failed": "", "attempt": MAX_ATTEMPTS, "retried": False, "failed_at": when.timestamp()
    }
    assert run_batches(sim, db_url, instance, ticker, when + 4 * RETRY_DELAYS[-1]) == []


def test_a_twenty_minute_outage_at_the_due_time_loses_nothing(sim, db_url, engine, send_at, instance):  # noqa: F811
    a = send_campaign(sim, engine, "OPT-OUT20-1004-D", 30, send_at)
    key = run_key(a.name, 1)
    ticker = Ticker(instance, db_url, definitions(db_url, cheetah_resource(sim)))
    sim.admin.add_fault(kind="status", method="GET", path=REPORT, status=503, times=None)
    due = send_at + DAY
    taken = []
    # Every 5 minutes for three hours (Cheetah is back 50 min after the first try; the retries wait
    # 15 min, then 1 h), then every hour for the rest of the day: nothing more is asked for.
    for minutes in [*range(0, 3 * 60, 5), *range(3 * 60, 24 * 60, 60)]:
        if minutes == 50:
            sim.admin.clear_faults()
        taken += [r.success for r in run_batches(sim, db_url, instance, ticker, due + minutes * MINUTE)]
    assert taken[-1] is True and taken.count(True) == 1 and len(taken) <= 3
    assert {str(k) for k in instance.get_materialized_partitions(KEYS)} == {key}


def test_a_send_recorded_against_another_account_is_never_registered_nor_fetched(sim, db_url, engine, send_at, instance):  # noqa: F811
    """Regression: a send of the old account (another endpoint and Cust_ID) had its camp_id fetched
    from the current account, storing another campaign's counts."""
    ours = send_campaign(sim, engine, "OPT-NEW-1004-X", 40, send_at)
    current = account_of(cheetah_resource(sim).settings())
    old = Account("https://api.old-region.example.com", "999")
    insert_send(engine, "OPT-OLD-1001-Y", send_at=send_at - 3 * MINUTE * 60, camp_id=ours.camp_id, template_id="1001")
    with engine.begin() as conn:
        for name, account in (("OPT-OLD-1001-Y", old), (ours.name, current)):
            conn.execute(send_ledger.update().where(send_ledger.c.cheetah_name == name).values(
                endpoint=account.endpoint, cust_id=account.cust_id))
    ticker = Ticker(instance, db_url, definitions(db_url, cheetah_resource(sim)))
    skipped = ticker.tick(register_sent_campaigns_sensor, send_at - 2 * MINUTE * 60)  # only the old one has gone out
    assert "OPT-OLD-1001-Y" in skipped.skip_message and "another account" in skipped.skip_message
    assert old.describe() in skipped.skip_message
    (run,) = run_batches(sim, db_url, instance, ticker, send_at + DAY + BATCH_WAIT)
    assert run.success and batch_partitions(ticker.runs[-1]) == [run_key(ours.name, 1)]
    assert instance.get_dynamic_partitions(campaigns_partitions.name) == [ours.name]
    assert set(snapshot_rows(engine)) == {(ours.name, 1)}
    # Asked for by hand (a backfill), it is refused, naming both accounts, and nothing is fetched.
    with cheetah_resource(sim).get_client() as client:
        with pytest.raises(SnapshotError) as err:
            take_snapshot(client, engine, "OPT-OLD-1001-Y", 1, send_at + DAY, account=account_of(client.settings))
    assert old.describe() in str(err.value) and current.describe() in str(err.value)
    assert set(snapshot_rows(engine)) == {(ours.name, 1)}


def test_a_catch_up_after_an_outage_is_marked_late_in_the_metadata_and_the_analysis(sim, db_url, engine, send_at, instance):  # noqa: F811
    """Regression: days caught up after an outage stored today's counts under old days, unmarked."""
    a = send_campaign(sim, engine, "OPT-LATE-1004-D", 200, send_at)
    ticker = Ticker(instance, db_url, definitions(db_url, cheetah_resource(sim)))
    resume = send_at + 3 * DAY + 7 * MINUTE * 60  # the daemon was down since before the send
    (run,) = run_batches(sim, db_url, instance, ticker, resume)
    assert run.success
    metadata = {
        parse_partition(r.partition_key)[1]: {k: v.value for k, v in r.asset_materialization.metadata.items()}
        for r in instance.fetch_materializations(KEYS, limit=10).records
    }
    assert {d: m["late"] for d, m in metadata.items()} == {1: True, 2: True, 3: True}
    assert metadata[1]["taken_at"] == resume.timestamp() and metadata[1]["due_at"] == (send_at + DAY).timestamp()
    with engine.connect() as conn:
        (campaign,) = compute_analysis(conn, resume).campaigns
    assert [p.late for p in campaign.curve] == [True, True, True]
    assert "late" in campaign.status and "1, 2, 3" in campaign.status
    # Day 4, taken on time, is not late.
    (day_4,) = run_batches(sim, db_url, instance, ticker, send_at + 4 * DAY + BATCH_WAIT)
    (record,) = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=KEYS, asset_partitions=[run_key(a.name, 4)]), limit=1).records
    assert record.asset_materialization.metadata["late"].value is False


def test_backfills_not_due_early_and_unknown_partitions_next_to_the_batches(sim, db_url, engine, send_at, instance):  # noqa: F811
    a = send_campaign(sim, engine, "OPT-BFX-1004-D", 50, send_at)
    ticker = Ticker(instance, db_url, definitions(db_url, cheetah_resource(sim)))
    now = send_at + DAY + BATCH_WAIT
    sim.admin.add_fault(kind="status", method="GET", path=REPORT, status=503, times=5)  # every attempt of the client
    (failed,) = run_batches(sim, db_url, instance, ticker, now)
    assert not failed.success and observations(instance, run_key(a.name, 1))[-1]["retried"] is True
    # Re-fetched through the asset before the next tick (a backfill, or the CLI): not asked for again.
    assert snapshot(sim, db_url, instance, a.name, 1).success
    assert run_batches(sim, db_url, instance, ticker, now + MINUTE) == []

    def batch(partitions: list[str], **config):
        return metric_snapshot_batch_job.execute_in_process(
            run_config={"ops": {"take_due_snapshots": {"config": {"partitions": partitions, **config}}}},
            resources=make_resources(sim, db_url, now), instance=instance, raise_on_error=False,
        )

    # By hand: a day not come yet is not due (observed, not materialized, no failure); a partition
    # of a campaign that is not registered, and a key that is no partition, fail and are not retried.
    not_due = batch([run_key(a.name, 3)])
    assert not_due.success and not_due.output_for_node("take_due_snapshots") == 0
    assert "not_due_until" in observations(instance, run_key(a.name, 3))[-1]
    wrong = batch(["OPT-NOPE|day_1", "nonsense", run_key(a.name, 2)])
    table = failure_of(wrong).step_failure_data.user_failure_data.metadata["failed_snapshots"].value
    assert sorted((r.data["partition"], r.data["retried"]) for r in table.records) == [("OPT-NOPE|day_1", False), ("nonsense", False)]
    assert "not a cheetah_campaigns partition" in table.records[0].data["reason"] + table.records[1].data["reason"]
    assert run_batches(sim, db_url, instance, ticker, now + 2 * MINUTE) == []
    # allow_early takes it anyway, provisional.
    early = batch([run_key(a.name, 3)], allow_early=True)
    assert early.success
    (event,) = early.get_asset_materialization_events()
    assert event.partition == run_key(a.name, 3) and event.materialization.metadata["provisional"].value is True
    assert {str(k) for k in instance.get_materialized_partitions(KEYS)} == {run_key(a.name, d) for d in (1, 3)}
    assert instance.get_dynamic_partitions(campaigns_partitions.name) == [a.name]


def test_a_partition_failing_on_a_database_error_never_stops_the_others_and_is_retried(sim, db_url, engine, send_at, instance):  # noqa: F811
    """Regression (review of the batch): only Cheetah and snapshot errors were caught per partition.
    Any other error (the database refusing one write, a bug for one campaign) ended the op: the
    partitions after it were never tried, none was observed as failed, so the sensor never asked
    for them again, and they were left to the overdue alert six hours later."""
    import sqlalchemy as sa

    sent = [send_campaign(sim, engine, f"OPT-DB{i}-1004-D", 30, send_at) for i in range(3)]
    bad = run_key(sent[0].name, 1)  # first in the batch
    with engine.begin() as conn:  # the database refuses that one partition's snapshot row
        conn.exec_driver_sql(
            f"CREATE TRIGGER refuse_one BEFORE INSERT ON cheetah_metric_snapshot WHEN NEW.cheetah_name = '{sent[0].name}' "
            "BEGIN SELECT RAISE(ABORT, 'simulated database failure'); END"
        )
    ticker = Ticker(instance, db_url, definitions(db_url, cheetah_resource(sim)))
    now = send_at + DAY + BATCH_WAIT
    (first,) = run_batches(sim, db_url, instance, ticker, now)
    assert batch_partitions(ticker.runs[-1]) == sorted(run_key(c.name, 1) for c in sent)
    assert not first.success
    # The others were taken all the same; the bad one is reported with its error, to be retried.
    assert {str(k) for k in instance.get_materialized_partitions(KEYS)} == {run_key(c.name, 1) for c in sent[1:]}
    failure = failure_of(first)
    assert "1 of 3 snapshots were not taken (2 taken)" in failure.step_failure_data.error.message
    (row,) = failure.step_failure_data.user_failure_data.metadata["failed_snapshots"].value.records
    assert (row.data["partition"], row.data["attempt"], row.data["retried"]) == (bad, 1, True)
    assert "IntegrityError" in row.data["reason"] and "simulated database failure" in row.data["reason"]
    last = observations(instance, bad)[-1]
    assert last["retried"] is True and last["retry_at"] == (now + RETRY_DELAYS[0]).timestamp()
    assert "simulated database failure" in last["snapshot_failed"]
    # Asked for again once its back-off has passed, as a Cheetah failure is; taken once the database lets it.
    assert run_batches(sim, db_url, instance, ticker, now + MINUTE) == []
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TRIGGER refuse_one"))
    (second,) = run_batches(sim, db_url, instance, ticker, now + RETRY_DELAYS[0])
    assert batch_partitions(ticker.runs[-1]) == [bad]
    assert ticker.runs[-1].run_config["ops"]["take_due_snapshots"]["config"]["attempts"] == {bad: 2}
    assert second.success
    assert {str(k) for k in instance.get_materialized_partitions(KEYS)} == {run_key(c.name, 1) for c in sent}


def test_a_database_down_when_a_batch_starts_fails_each_partition_to_be_retried(sim, db_url, engine, send_at, instance):  # noqa: F811
    """Regression (review of the batch): an error before the first partition (the customer database
    unreachable as the run starts) ended the op with no partition observed as failed, so the sensor
    never asked for any of them again."""
    from cheetah_assets.customers.resource import CustomerDatabaseResource

    sent = [send_campaign(sim, engine, f"OPT-DOWN{i}-1004-D", 30, send_at) for i in range(2)]
    keys = sorted(run_key(c.name, 1) for c in sent)
    ticker = Ticker(instance, db_url, definitions(db_url, cheetah_resource(sim)))
    now = set_clock(sim, send_at + DAY + BATCH_WAIT)
    ticker.both(now)
    (request,) = ticker.runs
    unreachable = CustomerDatabaseResource(url="postgresql://postgres@127.0.0.1:9/none")  # connection refused
    down = {**make_resources(sim, db_url, now), "customer_db": unreachable}
    first = metric_snapshot_batch_job.execute_in_process(
        run_config=request.run_config, resources=down, instance=instance, tags=request.tags, raise_on_error=False,
    )
    assert not first.success
    table = failure_of(first).step_failure_data.user_failure_data.metadata["failed_snapshots"].value
    rows = sorted((r.data["partition"], r.data["attempt"], r.data["retried"]) for r in table.records)
    assert rows == [(k, 1, True) for k in keys]
    assert all("OperationalError" in r.data["reason"] for r in table.records)
    assert run_batches(sim, db_url, instance, ticker, now + MINUTE) == []
    (second,) = run_batches(sim, db_url, instance, ticker, now + RETRY_DELAYS[0])
    assert second.success and batch_partitions(ticker.runs[-1]) == keys
    assert {str(k) for k in instance.get_materialized_partitions(KEYS)} == set(keys)


def test_a_bug_recording_one_partition_never_stops_the_others(sim, db_url, engine, send_at, instance, monkeypatch):  # noqa: F811
    """Its snapshot was stored, but building its metadata raised: that one fails (with the error, to
    be retried), the partitions after it are taken and recorded."""
    from cheetah_assets.metrics import batch

    sent = [send_campaign(sim, engine, f"OPT-BUG{i}-1004-D", 30, send_at) for i in range(3)]
    bad = run_key(sent[0].name, 1)
    real = batch.snapshot_metadata

    def metadata(outcome, label):
        if outcome.snapshot.cheetah_name == sent[0].name:
            raise KeyError("a bug for this one campaign")
        return real(outcome, label)

    monkeypatch.setattr(batch, "snapshot_metadata", metadata)
    ticker = Ticker(instance, db_url, definitions(db_url, cheetah_resource(sim)))
    (run,) = run_batches(sim, db_url, instance, ticker, send_at + DAY + BATCH_WAIT)
    assert not run.success
    assert {str(k) for k in instance.get_materialized_partitions(KEYS)} == {run_key(c.name, 1) for c in sent[1:]}
    last = observations(instance, bad)[-1]
    assert last["retried"] is True and last["snapshot_failed"].startswith("KeyError: 'a bug for this one campaign'")
