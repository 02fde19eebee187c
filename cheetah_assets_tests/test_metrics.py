"""Metric snapshots and the campaign analysis: real Dagster materializations, a real SQLite
database file, and campaigns really sent by the Cheetah Messaging simulator over HTTP.

Ground truth is the simulator's own metric model (``simulator.metrics.metrics_at``): what the
simulator reports for a campaign at any moment after its send.
"""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from cheetah_assets.cheetah.contract import id_from_db
from cheetah_assets.customers.resource import CustomerDatabaseResource
from cheetah_assets.customers.schema import campaign_analysis as analysis_table
from cheetah_assets.customers.schema import metric_snapshot
from cheetah_assets.metrics import analysis, snapshots
from cheetah_assets.metrics import keys
from cheetah_assets.metrics.assets import (
    METRIC_CHECKS,
    campaign_analysis,
    campaign_metric_snapshots,
    campaigns_partitions,
    snapshot_partition_key,
)
from cheetah_assets.metrics.views import campaign_status
from cheetah_assets.simulator.metrics import curve_params, metrics_at
from cheetah_assets.timeutil import utc

from .conftest import cheetah_resource, make_resources
from .helpers import cli_env, dagster_cli, wait_for_runs
from .ledger_rows import insert_ledger_row

SEED = "demo"
DAY = dt.timedelta(days=1)


# ------------------------------------------------------------------------------------------------
# helpers shared with test_metric_sensors.py
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Sent:
    name: str
    camp_id: int
    recipients: int
    send_at: dt.datetime

    def truth(self, as_of: dt.datetime) -> dict[str, int]:
        """What the simulator reports for this campaign at ``as_of``."""
        return metrics_at(SEED, self.camp_id, self.recipients, as_of - self.send_at)


def insert_send(
    engine,
    name: str,
    *,
    send_at: dt.datetime | None,
    camp_id: int | None,
    state: str = "APPROVED",
    updated_at: dt.datetime | None = None,
    template_id: str = "1004",
) -> None:
    """A ledger row of a send named ``name`` as the send path leaves it."""
    stamp = updated_at or (send_at - dt.timedelta(hours=2) if send_at else dt.datetime.now(dt.timezone.utc))
    insert_ledger_row(
        engine,
        campaign_id=name,
        template_id=template_id,
        send_date=(send_at or stamp).date(),
        state=state,
        cheetah_name=name,
        send_at=send_at,
        camp_id=camp_id,
        stamp=stamp,
    )


def make_list(client, name: str, recipients: int) -> int:
    csv = "EMAIL_ADDR,FNAME\n" + "".join(f"{name.lower()}-{i}@example.com,Name{i}\n" for i in range(recipients))
    status = client.wait_for_import(client.start_import(list_name=name, csv_bytes=csv.encode(), file_name=f"{name}.csv"))
    assert status.rows_accepted == recipients, status
    return status.list_id


def launch(client, name: str, list_id: int, send_at: dt.datetime) -> int:
    camp_id = client.create_campaign(name=name, template_obj_id="1004", list_id=list_id, start_time=send_at)
    client.launch_campaign(camp_id)
    client.approve_campaign(camp_id)
    return camp_id


def send_campaign(sim, engine, name: str, recipients: int, send_at: dt.datetime) -> Sent:
    """A campaign really approved in the simulator (sent when its clock passes ``send_at``), with
    the ledger row the send path would have written for it."""
    with cheetah_resource(sim).get_client() as client:
        camp_id = launch(client, name, make_list(client, name, recipients), send_at)
    insert_send(engine, name, send_at=send_at, camp_id=camp_id)
    return Sent(name, camp_id, recipients, send_at)


def set_clock(sim, when: dt.datetime) -> dt.datetime:
    sim.admin.set_now(when)
    return when


def snapshot(sim, db_url, instance, name: str, day: int, *, allow_early: bool = False, raise_on_error: bool = True):
    config = {"ops": {"campaign_metric_snapshots": {"config": {"allow_early": True}}}} if allow_early else None
    return dg.materialize(
        [campaign_metric_snapshots],
        partition_key=snapshot_partition_key(name, day),
        resources=make_resources(sim, db_url),
        instance=instance,
        run_config=config,
        raise_on_error=raise_on_error,
    )


def failure_message(result) -> str:
    failures = [e for e in result.all_events if e.is_step_failure]
    assert failures, "expected a step failure"
    return failures[0].step_failure_data.error.message


def mat_metadata(result) -> dict:
    (event,) = result.get_asset_materialization_events()
    return {k: v.value for k, v in event.materialization.metadata.items()}


def snapshot_rows(engine) -> dict[tuple[str, int], dict]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(metric_snapshot)).mappings().all()
    return {(r["cheetah_name"], r["day"]): dict(r) for r in rows}


def analysis_rows(engine) -> dict[str, dict]:
    with engine.connect() as conn:
        return {r["cheetah_name"]: dict(r) for r in conn.execute(sa.select(analysis_table)).mappings()}


def counts_of(row: dict) -> dict[str, int]:
    return {k: row[c] for k, c in snapshots.COLUMNS.items()}


@pytest.fixture
def engine(db_url):
    engine = CustomerDatabaseResource(url=db_url).get_engine(create=True)
    snapshots.prepare_database(engine)
    return engine


@pytest.fixture
def send_at(sim) -> dt.datetime:
    """One hour after the simulator's (pinned) clock."""
    return sim.admin.now() + dt.timedelta(hours=1)


# ------------------------------------------------------------------------------------------------
# plain functions
# ------------------------------------------------------------------------------------------------
def test_snapshot_days_keys_and_run_keys():
    assert snapshots.SNAPSHOT_DAYS == [f"day_{k}" for k in range(1, 8)]
    assert [snapshots.day_number(k) for k in snapshots.SNAPSHOT_DAYS] == list(range(1, 8))
    for bad in ("day_0", "day_8", "1", "day_01"):
        with pytest.raises(ValueError):
            snapshots.day_number(bad)
    with pytest.raises(ValueError):
        snapshots.day_key(8)
    key = snapshot_partition_key("OPT-C1-1004-20261123", 3)
    assert key.keys_by_dimension == {"campaign": "OPT-C1-1004-20261123", "day": "day_3"}
    assert snapshots.run_key("OPT-C1-1004-20261123", 3) == "OPT-C1-1004-20261123|day_3"


def test_rates_and_their_text():
    assert analysis.rate(5, 0) is None and analysis.rate(1, 4) == 0.25
    assert analysis.pct(None) == "–" and analysis.pct(0.12345) == "12.3%" and analysis.pct(1.0) == "100.0%"


def test_the_asset_names_are_those_the_checks_and_views_use():
    assert campaign_metric_snapshots.key == keys.SNAPSHOTS and campaign_analysis.key == keys.ANALYSIS
    assert campaign_status.key == keys.STATUS and campaigns_partitions.name == keys.CAMPAIGN_PARTITIONS
    assert str(snapshot_partition_key("OPT-C1-1004-20261123", 3)) == snapshots.run_key("OPT-C1-1004-20261123", 3)


def test_restatements_compare_with_the_previous_reported_day(engine):
    now = dt.datetime(2026, 11, 23, tzinfo=dt.timezone.utc)

    def row(name, day, sent, received, opens, clicks, unsubs):
        return dict(
            cheetah_name=name, day=day, camp_id=1, as_of=now + day * DAY, fetched_at=now + day * DAY,
            sent=sent, received=received, message_opens=opens, message_clicks=clicks, unsubs=unsubs,
        )

    with engine.begin() as conn:
        conn.execute(
            metric_snapshot.insert(),
            [
                row("A", 1, 100, 90, 30, 5, 1),
                row("A", 3, 100, 95, 28, 6, 1),  # day 2 missing: opens compared with day 1 (30 -> 28)
                row("A", 4, 100, 96, 33, 6, 0),  # unsubs 1 -> 0
                row("B", 2, 0, 0, 0, 0, 0),  # nothing sent: rates are None, not an error
                row("B", 5, 0, 0, 0, 0, 0),
            ],
        )
    found = {(r.cheetah_name, r.day, r.metric, r.previous_day, r.previous, r.value) for r in analysis.find_restatements(engine)}
    assert found == {("A", 3, "MessageOpens", 1, 30, 28), ("A", 4, "Unsubs", 3, 1, 0)}
    assert analysis.find_impossible(engine) == []

    result = analysis.build_analysis(engine, now + 10 * DAY)
    a, b = result.by_name()["A"], result.by_name()["B"]
    assert (a.days_reported, a.latest_day, a.restated) == (3, 4, True)
    assert [p.day for p in a.curve] == [1, 3, 4]
    assert a.curve[1].restated == ("Unique Opens",) and a.curve[2].restated == ("Unique Unsubscribes",)
    assert a.rates() == {"delivery_rate": 0.96, "open_rate": 33 / 96, "click_rate": 6 / 96, "unsubscribe_rate": 0.0}
    assert b.rates() == dict.fromkeys(analysis.RATES) and b.restated is False
    rows = analysis_rows(engine)
    assert rows["A"]["unique_opens"] == 33 and rows["A"]["restated"] is True
    assert rows["B"]["delivery_rate"] is None and rows["B"]["days_reported"] == 2
    # A second roll-up replaces the rows (no duplicates, no stale campaign).
    with engine.begin() as conn:
        conn.execute(metric_snapshot.delete().where(metric_snapshot.c.cheetah_name == "B"))
    analysis.build_analysis(engine, now + 11 * DAY)
    assert set(analysis_rows(engine)) == {"A"}


# ------------------------------------------------------------------------------------------------
# the snapshot asset
# ------------------------------------------------------------------------------------------------
def test_refetching_a_partition_replaces_only_its_row(sim, db_url, engine, send_at):
    c = send_campaign(sim, engine, "OPT-REFETCH-1004-D", 2000, send_at)
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(campaigns_partitions.name, [c.name])

        t1 = set_clock(sim, send_at + DAY + dt.timedelta(minutes=30))
        meta = mat_metadata(snapshot(sim, db_url, instance, c.name, 1))
        first = snapshot_rows(engine)[(c.name, 1)]
        assert utc(first["as_of"]) == t1
        assert counts_of(first) == c.truth(t1)
        assert meta["Unique Opens (MessageOpens)"] == c.truth(t1)["MessageOpens"]
        assert meta["Delivered (Received)"] == c.truth(t1)["Received"]
        assert meta["Sent (Sent)"] == 2000
        assert (meta["day"], meta["camp_id"], meta["restated"], meta["replaced_earlier_snapshot"]) == (1, c.camp_id, False, False)
        assert meta["as_of"] == t1.timestamp()

        # A refetch of day 1 (a backfill, hours later) replaces that one row with a new as_of.
        t2 = set_clock(sim, t1 + dt.timedelta(hours=8))
        meta = mat_metadata(snapshot(sim, db_url, instance, c.name, 1))
        rows = snapshot_rows(engine)
        assert list(rows) == [(c.name, 1)]
        assert utc(rows[(c.name, 1)]["as_of"]) == t2 and counts_of(rows[(c.name, 1)]) == c.truth(t2)
        assert c.truth(t2) != c.truth(t1)  # the curve moved, so the replacement is visible
        assert meta["replaced_earlier_snapshot"] is True

        # Day 2 is a row of its own; day 1 keeps what it said.
        t3 = set_clock(sim, send_at + 2 * DAY + dt.timedelta(minutes=5))
        meta = mat_metadata(snapshot(sim, db_url, instance, c.name, 2))
        rows = snapshot_rows(engine)
        assert set(rows) == {(c.name, 1), (c.name, 2)}
        assert utc(rows[(c.name, 1)]["as_of"]) == t2 and counts_of(rows[(c.name, 2)]) == c.truth(t3)
        assert meta["compared_with_day"] == 1
        # Every materialization is on record with its partition (Dagster's plots read these).
        records = instance.fetch_materializations(campaign_metric_snapshots.key, limit=10).records
        assert sorted(r.partition_key for r in records) == [f"{c.name}|day_1", f"{c.name}|day_1", f"{c.name}|day_2"]


def test_a_day_that_has_not_come_is_not_due_and_an_early_one_is_provisional(sim, db_url, engine, send_at):
    c = send_campaign(sim, engine, "OPT-EARLY-1004-D", 50, send_at)
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(campaigns_partitions.name, [c.name])
        set_clock(sim, send_at + DAY + dt.timedelta(hours=23))  # one hour before day 2
        # Not due: the run succeeds, nothing is materialized or stored, an observation says when.
        result = snapshot(sim, db_url, instance, c.name, 2)
        assert result.success and result.get_asset_materialization_events() == []
        assert not [e for e in result.all_events if e.is_step_failure]
        (obs,) = instance.fetch_observations(campaign_metric_snapshots.key, limit=5).records
        observation = obs.event_log_entry.asset_observation
        assert observation.partition == f"{c.name}|day_2"
        assert observation.metadata["not_due_until"].value == (send_at + 2 * DAY).timestamp()
        message = observation.metadata["explanation"].value
        assert f"Day 2 of campaign {c.name} comes at {send_at + 2 * DAY:%Y-%m-%d %H:%M} UTC" in message
        assert "allow_early" in message
        assert snapshot_rows(engine) == {}
        assert instance.get_materialized_partitions(campaign_metric_snapshots.key) == set()

        meta = mat_metadata(snapshot(sim, db_url, instance, c.name, 2, allow_early=True))
        assert meta["taken_early"] is True and meta["provisional"] is True
        assert set(snapshot_rows(engine)) == {(c.name, 2)}

        # Day 1 has come: no config needed.
        assert mat_metadata(snapshot(sim, db_url, instance, c.name, 1))["taken_early"] is False
        # The analysis says the early day is provisional, in its status and its columns.
        meta = mat_metadata(materialize_analysis(sim, db_url, instance))
        (row,) = [r.data for r in meta["campaigns"].records]
        # Day 1, taken 23 h after it came, is late (the counts of then): said so too.
        assert row["status"] == "provisional (day 2 taken early); day 1 taken late (counts of when taken)"
        assert row["provisional"] is True and row["late"] is True
        curve = {r.data["day"]: r.data for r in meta["curves"].records}
        assert (curve[1]["provisional"], curve[2]["provisional"]) == (False, True)
        assert (curve[1]["late"], curve[2]["late"]) == (True, False)
        assert meta["campaigns_provisional"] == 1

        # Day 2 fetched again once it has come: no longer provisional.
        set_clock(sim, send_at + 2 * DAY + dt.timedelta(minutes=5))
        snapshot(sim, db_url, instance, c.name, 2)
        meta = mat_metadata(materialize_analysis(sim, db_url, instance))
        (row,) = [r.data for r in meta["campaigns"].records]
        assert row["status"] == "in progress (day 2 of 7); day 1 taken late (counts of when taken)" and row["provisional"] is False


def test_unknown_or_unsent_campaign_fails_with_a_clear_message(sim, db_url, engine, send_at):
    insert_send(engine, "OPT-LAUNCHED-1004-D", send_at=send_at - 3 * DAY, camp_id=77, state="LAUNCHED")
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(campaigns_partitions.name, ["OPT-NOPE-1004-D", "OPT-LAUNCHED-1004-D"])
        result = snapshot(sim, db_url, instance, "OPT-NOPE-1004-D", 1, raise_on_error=False)
        assert "No send in the ledger (cheetah_send_ledger) has the Cheetah campaign name 'OPT-NOPE-1004-D'" in failure_message(result)
        result = snapshot(sim, db_url, instance, "OPT-LAUNCHED-1004-D", 1, raise_on_error=False)
        assert "is LAUNCHED in the ledger" in failure_message(result)

        # The ledger says APPROVED, but Cheetah never sent it (launched, never approved there): 409.
        with cheetah_resource(sim).get_client() as client:
            camp_id = client.create_campaign(
                name="OPT-NOTSENT-1004-D", template_obj_id="1004", list_id=make_list(client, "OPT-NOTSENT", 3),
                start_time=send_at,
            )
            client.launch_campaign(camp_id)
        insert_send(engine, "OPT-NOTSENT-1004-D", send_at=send_at, camp_id=camp_id)
        instance.add_dynamic_partitions(campaigns_partitions.name, ["OPT-NOTSENT-1004-D"])
        set_clock(sim, send_at + DAY + dt.timedelta(minutes=1))
        result = snapshot(sim, db_url, instance, "OPT-NOTSENT-1004-D", 1, raise_on_error=False)
        message = failure_message(result)
        assert f"Campaign {camp_id} has no metrics yet: it has not been sent." in message
        assert "re-execute this partition once it has gone out" in message
    assert snapshot_rows(engine) == {}


def test_backfill_one_campaign_week_and_one_day_across_campaigns(sim, db_url, engine, send_at):
    a = send_campaign(sim, engine, "OPT-BFA-1004-D", 120, send_at)
    b = send_campaign(sim, engine, "OPT-BFB-1004-D", 80, send_at)  # same send time as a
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(campaigns_partitions.name, [a.name, b.name])
        t = set_clock(sim, send_at + 7 * DAY + dt.timedelta(hours=1))
        for _ in range(2):  # the second pass is a re-run of the same backfills
            for day in range(1, 8):  # campaign a, all seven days
                snapshot(sim, db_url, instance, a.name, day)
            for c in (a, b):  # day 3, every campaign
                snapshot(sim, db_url, instance, c.name, 3)
            rows = snapshot_rows(engine)
            assert set(rows) == {(a.name, d) for d in range(1, 8)} | {(b.name, 3)}
            with engine.connect() as conn:
                assert conn.execute(sa.select(sa.func.count()).select_from(metric_snapshot)).scalar() == 8
            for (name, _day), row in rows.items():
                c = a if name == a.name else b
                assert utc(row["as_of"]) == t and counts_of(row) == c.truth(t)
            t = set_clock(sim, t + dt.timedelta(hours=2))


# ------------------------------------------------------------------------------------------------
# the analysis and its checks
# ------------------------------------------------------------------------------------------------
def materialize_analysis(sim, db_url, instance):
    return dg.materialize([campaign_analysis, *METRIC_CHECKS], resources=make_resources(sim, db_url), instance=instance)


def checks_of(result) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def test_analysis_equals_the_simulators_ground_truth(sim, db_url, engine, send_at):
    a = send_campaign(sim, engine, "OPT-ANA-1004-D", 300, send_at)
    b = send_campaign(sim, engine, "OPT-ANB-1004-D", 150, send_at + dt.timedelta(hours=2))
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(campaigns_partitions.name, [a.name, b.name])
        as_of: dict[tuple[str, int], dt.datetime] = {}
        for day in (1, 2, 3):
            for c in (a, b):
                if c is b and day == 3:
                    continue
                as_of[(c.name, day)] = set_clock(sim, c.send_at + day * DAY + dt.timedelta(minutes=10))
                snapshot(sim, db_url, instance, c.name, day)
        result = materialize_analysis(sim, db_url, instance)
        rows = analysis_rows(engine)
        assert set(rows) == {a.name, b.name}
        for c, latest_day in ((a, 3), (b, 2)):
            truth = c.truth(as_of[(c.name, latest_day)])
            row = rows[c.name]
            assert (row["sent"], row["delivered"], row["unique_opens"], row["unique_clicks"], row["unique_unsubscribes"]) == (
                truth["Sent"], truth["Received"], truth["MessageOpens"], truth["MessageClicks"], truth["Unsubs"]
            )
            assert row["delivery_rate"] == pytest.approx(truth["Received"] / truth["Sent"])
            assert row["open_rate"] == pytest.approx(truth["MessageOpens"] / truth["Received"])
            assert row["click_rate"] == pytest.approx(truth["MessageClicks"] / truth["Received"])
            assert row["unsubscribe_rate"] == pytest.approx(truth["Unsubs"] / truth["Received"])
            assert (row["days_reported"], row["latest_day"], id_from_db(row["camp_id"])) == (latest_day, latest_day, c.camp_id)
            assert (row["campaign_id"], row["template_id"], row["send_date"]) == (c.name, "1004", c.send_at.date())
            lower = any(
                c.truth(as_of[(c.name, d)])[m] < c.truth(as_of[(c.name, d - 1)])[m]
                for d in range(2, latest_day + 1)
                for m in snapshots.COLUMNS
            )
            assert row["restated"] is lower

        meta = mat_metadata(result)
        assert meta["dagster/row_count"] == 2
        assert [col.name for col in meta["dagster/column_schema"].columns] == [col.name for col in analysis_table.columns]
        summary = [r.data for r in meta["campaigns"].records]
        # newest send first
        assert [r["campaign"] for r in summary] == [b.name, a.name]
        for r in summary:
            assert r["open_rate"] == analysis.pct(rows[r["campaign"]]["open_rate"])
            assert r["Delivered"] == rows[r["campaign"]]["delivered"]
        assert [r["status"] for r in summary] == ["in progress (day 2 of 7)", "in progress (day 3 of 7)"]
        # ... and per Optimove campaign (its templates added up): every count is kept
        rolled = [r.data for r in meta["campaign_rollup"].records]
        assert sum(r["Delivered"] for r in rolled) == sum(r["Delivered"] for r in summary)
        assert {t for r in rolled for t in r["templates"].split(", ")} == {rows[n]["template_id"] for n in rows}
        # The curves as a typed table: one row per campaign and day, counts and formatted rates.
        curve = {(r.data["campaign"], r.data["day"]): r.data for r in meta["curves"].records}
        assert set(curve) == {(a.name, 1), (a.name, 2), (a.name, 3), (b.name, 1), (b.name, 2)}
        truth = a.truth(as_of[(a.name, 2)])
        assert curve[(a.name, 2)]["Unique Opens"] == truth["MessageOpens"]
        assert curve[(a.name, 2)]["open_rate"] == analysis.pct(truth["MessageOpens"] / truth["Received"])
        # Overall rates as floats (Dagster's plots), the chart embedded and saved.
        total = {k: sum(rows[n][c] for n in rows) for k, c in (("d", "delivered"), ("o", "unique_opens"))}
        assert meta["overall_open_rate"] == pytest.approx(total["o"] / total["d"])
        assert meta["curves_chart"].startswith("![Seven-day curves](data:image/png;base64,")
        png = base64.b64decode(meta["curves_chart"].split("base64,", 1)[1].split(")", 1)[0])
        assert meta["curves_chart"].endswith("The chart draws all 2 campaigns.") and meta["curves_chart_campaigns"] == "all 2 campaigns"
        path = Path(meta["curves_chart_file"])
        assert path.parent == Path(instance.storage_directory()) / "cheetah_charts"
        assert path.read_bytes() == png and png.startswith(b"\x89PNG") and len(png) == meta["curves_chart_bytes"] < 200_000
        checks = checks_of(result)
        assert checks["metrics_are_possible"].passed

        # A second analysis replaces the rows: still one per campaign.
        materialize_analysis(sim, db_url, instance)
        assert len(analysis_rows(engine)) == 2


def test_a_restatement_is_recorded_flagged_and_kept(sim, db_url, engine, send_at):
    """Find a campaign the simulator will restate (deterministic from seed and id), send it,
    snapshot the day before and the day of the restatement."""
    recipients = 3000
    with cheetah_resource(sim).get_client() as client:
        list_id = make_list(client, "OPT-RESTATE", recipients)
        for n in range(40):
            name = f"OPT-RESTATE-{n}"
            camp_id = client.create_campaign(name=name, template_obj_id="1004", list_id=list_id, start_time=send_at)
            r = curve_params(SEED, camp_id).restatement
            if r is not None and metrics_at(SEED, camp_id, recipients, (r.day - 1) * DAY)[r.metric] > 0:
                client.launch_campaign(camp_id)
                client.approve_campaign(camp_id)
                break
        else:
            pytest.fail("no restated campaign among 40 simulator campaign ids")
    insert_send(engine, name, send_at=send_at, camp_id=camp_id)
    c = Sent(name, camp_id, recipients, send_at)
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(campaigns_partitions.name, [name])
        before = set_clock(sim, send_at + (r.day - 1) * DAY + dt.timedelta(minutes=5))
        snapshot(sim, db_url, instance, name, r.day - 1)
        after = set_clock(sim, send_at + r.day * DAY + dt.timedelta(minutes=5))
        meta = mat_metadata(snapshot(sim, db_url, instance, name, r.day))
        assert c.truth(after)[r.metric] < c.truth(before)[r.metric]  # the simulator did restate
        assert meta["restated"] is True and meta["compared_with_day"] == r.day - 1
        restated = {
            "campaign": name,
            "day": r.day,
            "metric": f"{analysis.METRIC_NAMES[r.metric]} ({r.metric})",
            "previous_day": r.day - 1,
            "was": c.truth(before)[r.metric],
            "now": c.truth(after)[r.metric],
        }
        assert restated in [row.data for row in meta["restatements"].records]
        rows = snapshot_rows(engine)
        # Both days keep what they said.
        assert counts_of(rows[(name, r.day - 1)]) == c.truth(before)
        assert counts_of(rows[(name, r.day)]) == c.truth(after)

        result = materialize_analysis(sim, db_url, instance)
        assert analysis_rows(engine)[name]["restated"] is True
        checks = checks_of(result)
        assert checks["metrics_are_possible"].passed
        flagged = checks["no_restated_metrics"]
        assert not flagged.passed and flagged.severity == dg.AssetCheckSeverity.WARN
        assert flagged.description.endswith("restated counts in 1 campaigns")
        assert flagged.metadata["restated_counts"].value >= 1
        assert restated in [row.data for row in flagged.metadata["restatements"].value.records]
        curve = {row.data["day"]: row.data for row in mat_metadata(result)["curves"].records}
        assert analysis.METRIC_NAMES[r.metric] in curve[r.day]["restated"]  # the restated day is marked
        assert curve[r.day - 1]["restated"] == ""


def test_each_metric_check_is_named_for_what_passing_means():
    """The review's finding: a check named ``restatements_flagged`` read "Failed" when it had done
    its job (restatements found). Each check's name says what a pass means, so a failure reads
    right: no restated metrics (WARN), metrics are possible and snapshots on time (ERROR)."""
    from cheetah_assets.metrics.checks import METRIC_CHECKS

    specs = {spec.name: spec for c in METRIC_CHECKS for spec in c.check_specs}
    assert set(specs) == {"metrics_are_possible", "no_restated_metrics", "snapshots_on_time"}
    assert specs["no_restated_metrics"].description.startswith("Passes when no metric count was restated downwards.")
    assert "WARN" in specs["no_restated_metrics"].description


def test_impossible_counts_fail_the_error_check(sim, db_url, engine):
    now = sim.admin.now()

    def row(name, day, **counts):
        base = dict(sent=100, received=90, message_opens=40, message_clicks=10, unsubs=1)
        base.update(counts)
        return dict(cheetah_name=name, day=day, camp_id=9, as_of=now, fetched_at=now, **base)

    with engine.begin() as conn:
        conn.execute(
            metric_snapshot.insert(),
            [
                row("OPT-OK", 1),
                row("OPT-OK", 2, received=95, message_opens=45),
                row("OPT-BAD-RECEIVED", 1, received=101),
                row("OPT-BAD-NEG", 2, message_clicks=-1),
                row("OPT-BAD-OPENS", 3, message_opens=150, message_clicks=120),
            ],
        )
    with dg.DagsterInstance.ephemeral() as instance:
        result = materialize_analysis(sim, db_url, instance)
    assert result.success  # a failed check reports; it does not fail the run
    check = checks_of(result)["metrics_are_possible"]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    assert check.metadata["impossible_snapshots"].value == 3
    listing = [row.data for row in check.metadata["problems"].value.records]
    assert {"campaign": "OPT-BAD-RECEIVED", "day": 1, "problem": "Delivered (Received) 101 > Sent 100"} in listing
    assert {"campaign": "OPT-BAD-NEG", "day": 2, "problem": "MessageClicks -1 < 0"} in listing
    assert {
        "campaign": "OPT-BAD-OPENS",
        "day": 3,
        "problem": "Unique Opens (MessageOpens) 150 > Sent 100; Unique Clicks (MessageClicks) 120 > Sent 100",
    } in listing
    assert "OPT-OK" not in {row["campaign"] for row in listing}
    assert checks_of(result)["no_restated_metrics"].passed


# ------------------------------------------------------------------------------------------------
# backfills from the command line, as an operator types them
# ------------------------------------------------------------------------------------------------
@pytest.mark.slow(seconds=36)
def test_backfills_from_the_cli(sim, db_url, engine, tmp_path):
    """``dagster job backfill`` of one campaign's week and of one day across campaigns, and
    ``dagster asset materialize`` of one partition, on the production definitions and a real
    instance (its runs launched by the default run launcher, in their own processes)."""
    # Production resources read the real clock, so the simulator is put on it: the two campaigns
    # were sent eight days ago.
    real_now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    sent_at = real_now - 8 * DAY
    set_clock(sim, sent_at - dt.timedelta(hours=1))
    a = send_campaign(sim, engine, "OPT-CLIA-1004-D", 60, sent_at)
    b = send_campaign(sim, engine, "OPT-CLIB-1004-D", 40, sent_at)
    now = set_clock(sim, real_now)

    env = cli_env(sim, db_url, tmp_path)
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        instance.add_dynamic_partitions(campaigns_partitions.name, [a.name, b.name])
        # Three days of a's week (each a run of its own process: the suite's time, not the point).
        week = ",".join(str(snapshot_partition_key(a.name, d)) for d in range(1, 4))
        out = dagster_cli(env, "job", "backfill", "-m", "cheetah_assets.definitions", "-j", "metric_snapshot_job", "--partitions", week, "--noprompt")
        assert "Launched backfill job" in out, out
        runs = wait_for_runs(instance, 3)
        assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs), [(r.tags, r.status) for r in runs]

        day_3 = ",".join(str(snapshot_partition_key(c.name, 3)) for c in (a, b))
        dagster_cli(env, "job", "backfill", "-m", "cheetah_assets.definitions", "-j", "metric_snapshot_job", "--partitions", day_3, "--noprompt")
        runs = wait_for_runs(instance, 5)
        assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs), [(r.tags, r.status) for r in runs]

        dagster_cli(
            env, "asset", "materialize", "-m", "cheetah_assets.definitions",
            "--select", "campaign_metric_snapshots", "--partition", str(snapshot_partition_key(b.name, 5)),
        )  # fmt: skip
        assert len(instance.get_runs()) == 6
        materialized = instance.get_materialized_partitions(campaign_metric_snapshots.key)
        assert materialized == {str(snapshot_partition_key(a.name, d)) for d in range(1, 4)} | {
            str(snapshot_partition_key(b.name, d)) for d in (3, 5)
        }

    rows = snapshot_rows(engine)
    assert set(rows) == {(a.name, d) for d in range(1, 4)} | {(b.name, 3), (b.name, 5)}  # a's day 3 fetched twice, kept once
    for (name, _day), row in rows.items():
        c = a if name == a.name else b
        assert counts_of(row) == c.truth(now)
