"""Issue 8, item 8: ids as strings. A second implementation of the contract handed out its ids
as strings (``"listId": "list-9001"``); every send failed after the set-up checks had passed.

Every id the API hands out is opaque: kept as received, stored as text
(``contract.id_to_db``), passed back as received. Here the whole day (send and metrics) runs
against the simulator's string-id variant (ids and counts as strings, extra fields, another key
order, and a list id passed back as anything but the string it was is refused), and the metric
path is checked with an id that is not even numeric.
"""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest
import sqlalchemy as sa

from cheetah_assets.cheetah.contract import CampaignMetrics, id_from_db, id_to_db
from cheetah_assets.customers import seed
from cheetah_assets.customers.resource import CustomerDatabaseResource
from cheetah_assets.customers.schema import campaign_analysis as analysis_table
from cheetah_assets.customers.schema import metric_snapshot, send_ledger
from cheetah_assets.metrics.analysis import build_analysis
from cheetah_assets.metrics.chart import curves_png
from cheetah_assets.metrics.assets import (
    campaign_analysis,
    campaign_metric_snapshots,
    campaigns_partitions,
    snapshot_partition_key,
)
from cheetah_assets.metrics.snapshots import SnapshotError, prepare_database, previous_snapshot, take_snapshot

from .conftest import make_resources
from .helpers import audit_sends, ledger_rows, run_cycle

DAY = dt.timedelta(days=1)
OPAQUE = "C-5001/spring"  # not a number, and not a JSON document either


class FakeReports:
    """A metrics source handing out an opaque campaign id, as received."""

    def __init__(self, camp_id):
        self.camp_id = camp_id
        self.asked: list = []

    def get_metrics(self, camp_id) -> CampaignMetrics:
        self.asked.append(camp_id)
        now = dt.datetime(2026, 3, 3, 12, tzinfo=dt.timezone.utc)
        counts = {"Sent": 10, "Received": 9, "MessageOpens": 4, "MessageClicks": 2, "Unsubs": 0}
        return CampaignMetrics(camp_id=self.camp_id, as_of=now, counts=counts)


@pytest.fixture
def engine(tmp_path):
    engine = CustomerDatabaseResource(url=f"sqlite:///{tmp_path / 'ids.db'}").get_engine(create=True)
    prepare_database(engine)
    return engine


def _insert_sent(engine, name: str, camp_id, send_at: dt.datetime) -> None:
    with engine.begin() as conn:
        conn.execute(send_ledger.insert().values(
            send_key=f"{name}/1004/{send_at.date()}", campaign_id=name, template_id="1004",
            send_date=send_at.date(), list_key=f"{name}/{send_at.date()}", cheetah_name=name, state="APPROVED",
            send_at=send_at, camp_id=id_to_db(camp_id), created_at=send_at, updated_at=send_at,
        ))


@pytest.mark.parametrize("camp_id", [OPAQUE, "5001", 5001], ids=["opaque", "numeric-string", "number"])
def test_the_metric_path_keeps_a_campaign_id_as_received(engine, camp_id):
    send_at = dt.datetime(2026, 3, 2, 10, tzinfo=dt.timezone.utc)
    _insert_sent(engine, "SPRING", camp_id, send_at)
    reports = FakeReports(camp_id)
    outcome = take_snapshot(reports, engine, "SPRING", 1, send_at + DAY)
    assert reports.asked == [camp_id] and type(reports.asked[0]) is type(camp_id)  # passed back as received
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(metric_snapshot)).scalar_one() == 1
        snap = previous_snapshot(conn, "SPRING", 2)  # the stored day-1 snapshot, read back
    assert snap.camp_id == camp_id and type(snap.camp_id) is type(camp_id)
    assert outcome.snapshot.counts["Sent"] == 10
    result = build_analysis(engine, send_at + 2 * DAY)
    (c,) = result.campaigns
    assert c.camp_id == camp_id and type(c.camp_id) is type(camp_id)
    with engine.connect() as conn:
        stored = conn.execute(sa.select(analysis_table.c.camp_id)).scalar_one()
    assert id_from_db(stored) == camp_id
    assert curves_png(result).startswith(b"\x89PNG\r\n\x1a\n")  # the chart draws whatever the id's kind


def test_a_report_naming_another_campaign_is_refused_with_string_ids(engine):
    send_at = dt.datetime(2026, 3, 2, 10, tzinfo=dt.timezone.utc)
    _insert_sent(engine, "SPRING", OPAQUE, send_at)
    with pytest.raises(SnapshotError, match="with campaign C-5002's"):
        take_snapshot(FakeReports("C-5002"), engine, "SPRING", 1, send_at + DAY)
    # the same id spelled as a number and as a string is the same campaign
    _insert_sent(engine, "AUTUMN", 5001, send_at)
    take_snapshot(FakeReports("5001"), engine, "AUTUMN", 1, send_at + DAY)


def test_the_whole_day_send_and_metrics_works_against_the_string_id_variant(sim, db_url):
    """The send path and the metric path, end to end, against a simulator serving every id and
    count as a string (list and import ids not even numeric), extra fields and another key order."""
    day = sim.admin.now().date()
    sim.admin.reset(seed="demo", now=sim.admin.now(), rate_limit=0, string_ids=True)
    engine = CustomerDatabaseResource(url=db_url).get_engine(create=True)
    seed.seed_demo(engine, customers=120, days=0, today=day, now=sim.admin.now())
    for cid, templates, at in (("S1", "1001,1003", "09:00"), ("S2", "1002", "10:00")):
        seed.add_campaign(engine, campaign_id=cid, name=cid, send_date=day, send_time=at, time_zone="UTC",
                          template_ids=templates, target_group="all_customers")
    with dg.DagsterInstance.ephemeral() as instance:
        result = run_cycle(make_resources(sim, db_url), day, instance)
        rows = ledger_rows(engine)
        assert result.success, [(r["send_key"], r["state"], r["error"]) for r in rows]
        assert len(rows) == 3 and {r["state"] for r in rows} == {"APPROVED"}, rows
        for r in rows:  # stored as text, decoded exactly as Cheetah handed them out
            assert id_from_db(r["list_id"]).startswith("list-")
            assert isinstance(id_from_db(r["camp_id"]), str)
        # every create passed the list id back as the string it was (a number would be a 400)
        creates = [q for q in sim.admin.requests() if q["method"] == "POST" and q["path"].endswith("/EmailCampaign")]
        assert creates and {q["status"] for q in creates} == {200}
        # a re-execution finds the day done: nothing imported or created again
        before = len(sim.admin.requests())
        assert run_cycle(make_resources(sim, db_url), day, instance).success
        again = [q for q in sim.admin.requests()[before:] if q["method"] == "POST" and "/Token" not in q["path"]]
        assert again == []

        sim.admin.advance(DAY)
        audit = audit_sends(engine, sim.admin.sent())
        assert audit.ok and audit.campaigns_checked == 3, audit

        # metrics: one day-1 snapshot per campaign, then the analysis
        sim.admin.advance(DAY)
        resources = make_resources(sim, db_url)
        instance.add_dynamic_partitions(campaigns_partitions.name, [r["cheetah_name"] for r in rows])
        for r in rows:
            res = dg.materialize([campaign_metric_snapshots], partition_key=snapshot_partition_key(r["cheetah_name"], 1),
                                 resources=resources, instance=instance)
            assert res.success
        assert dg.materialize([campaign_analysis], resources=resources, instance=instance).success
    with engine.connect() as conn:
        snaps = conn.execute(sa.select(metric_snapshot)).mappings().all()
        analysis = conn.execute(sa.select(analysis_table)).mappings().all()
    by_name = {r["cheetah_name"]: id_from_db(r["camp_id"]) for r in rows}
    assert {s["cheetah_name"]: id_from_db(s["camp_id"]) for s in snaps} == by_name
    assert {a["cheetah_name"]: id_from_db(a["camp_id"]) for a in analysis} == by_name
    sent = {c["name"]: c["recipientCount"] for c in sim.admin.sent(recipients=False)["campaigns"]}
    assert {s["cheetah_name"]: s["sent"] for s in snaps} == sent
