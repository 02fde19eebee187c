"""campaign_status after a real day's cycle (the send path against the simulator): each planned
send in one row, plan -> list -> send -> metrics, the invalid one included; an A/B campaign's rows
count each template's own recipients (they add up to the list), and the state column follows the
send past the plan (SENT once an approved send's time has passed)."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import sqlalchemy as sa

from cheetah_assets.customers import seed
from cheetah_assets.customers.queries import freeze_recipient_list, get_frozen_list, list_key
from cheetah_assets.customers.schema import campaign_plan, send_ledger
from cheetah_assets.metrics.status import current_state, status_rows
from cheetah_assets.metrics.views import DETAIL_COLUMNS, STATUS_COLUMNS, campaign_status

from .conftest import make_resources
from .helpers import run_cycle
from .ledger_rows import insert_ledger_row
from .test_metrics import engine, mat_metadata  # noqa: F401 - fixture


def status_at(sim, db_url, instance, now: dt.datetime) -> dict:
    return mat_metadata(dg.materialize([campaign_status], resources=make_resources(sim, db_url, now=now), instance=instance))


def records(meta: dict, table: str = "campaigns") -> list[dict]:
    return [r.data for r in meta[table].records]


def test_each_planned_send_has_one_status_row(sim, db_url, engine):  # noqa: F811
    start = sim.admin.now()  # 06:00 UTC today
    day = start.date()
    seed.seed_demo(engine, customers=40, days=0, today=day, now=start)
    seed.add_campaign(engine, campaign_id="ST1", name="Status sent", send_date=day, send_time="09:00",
                      time_zone="UTC", template_ids="1004", target_group="all_customers")
    seed.add_campaign(engine, campaign_id="ST2", name="Status invalid", send_date=day, send_time="10:00",
                      time_zone="UTC", template_ids="NOPE", target_group="all_customers")
    with dg.DagsterInstance.ephemeral() as instance:
        run_cycle(make_resources(sim, db_url), day, instance)
        meta = status_at(sim, db_url, instance, start)
    details = {r["campaign"]: r for r in records(meta, "details")}
    rows = {d["campaign"]: r for r, d in zip(records(meta), records(meta, "details"))}  # row for row
    assert set(rows) == set(details) == {"ST1", "ST2"} and meta["dagster/row_count"] == 2
    sent, invalid = rows["ST1"], rows["ST2"]
    # Approved in Cheetah, going out at 09:00: its metric week has not begun.
    assert (sent["name"], sent["template"], sent["state"], details["ST1"]["stage"]) == ("Status sent", "1004", "APPROVED", "approved")
    assert sent["metrics"] == f"goes out {day:%m-%d} 09:00 UTC" and sent["recipients"] > 0
    assert sent["time"] == "09:00" and details["ST1"]["cheetah_name"].startswith("OPT-ST1-1004-")
    assert (sent["delivered"], sent["opened"], details["ST1"]["days_taken"], details["ST1"]["ledger"]) == (None, None, 0, "APPROVED")
    # Invalid in the plan: no list, no send, the plan's reason.
    assert (invalid["state"], details["ST2"]["stage"], details["ST2"]["ledger"], invalid["metrics"]) == ("INVALID", "invalid", "–", "–")
    assert "NOPE" in details["ST2"]["note"] and details["ST2"]["cheetah_name"] is None
    assert meta["by_stage"] == {"approved": 1, "invalid": 1} and meta["overdue"] == 0


def test_an_ab_campaign_counts_each_templates_own_recipients_and_a_sent_one_reads_sent(sim, db_url, engine):  # noqa: F811
    """The review's misreading: both rows of an A/B campaign showed the whole list (19,118 each,
    38,236 added up), and the plan column said READY for sends that had gone out the day before."""
    start = sim.admin.now()  # 06:00 UTC today
    day = start.date()
    seed.seed_demo(engine, customers=60, days=0, today=day, now=start)
    seed.add_campaign(engine, campaign_id="AB", name="Status A/B", send_date=day, send_time="09:00",
                      time_zone="UTC", template_ids="1001,1003", target_group="all_customers")
    with dg.DagsterInstance.ephemeral() as instance:
        run_cycle(make_resources(sim, db_url), day, instance)
        before = status_at(sim, db_url, instance, start)
        after = status_at(sim, db_url, instance, start + dt.timedelta(hours=4))  # 10:00: it went out at 09:00
    frozen = get_frozen_list(engine, list_key("AB", day), ["1001", "1003"])
    assert frozen is not None and min(frozen.per_template.values()) > 0
    for meta in (before, after):
        rows = records(meta)
        assert [(r["name"], r["template"]) for r in rows] == [("Status A/B", "1001 (1/2)"), ("Status A/B", "1003 (2/2)")]
        assert [(r["campaign"], r["template"]) for r in records(meta, "details")] == [("AB", "1001 (1/2)"), ("AB", "1003 (2/2)")]
        assert [r["recipients"] for r in rows] == [frozen.per_template["1001"], frozen.per_template["1003"]]
        assert sum(r["recipients"] for r in rows) == frozen.row_count  # the rows add up to the list
    assert [r["state"] for r in records(before)] == ["APPROVED", "APPROVED"]  # approved, not out yet
    assert [r["state"] for r in records(after)] == ["SENT", "SENT"]
    assert [r["ledger"] for r in records(after, "details")] == ["APPROVED", "APPROVED"]
    # The stored plan keeps what planning found (the send path reads it): READY.
    with engine.connect() as conn:
        assert set(conn.execute(sa.select(campaign_plan.c.status).where(campaign_plan.c.campaign_id == "AB")).scalars()) == {"READY"}


def _plan_row(engine, campaign_id: str, template_id: str, index: int, count: int, day: dt.date, send_at: dt.datetime, status: str, now: dt.datetime):
    with engine.begin() as conn:
        conn.execute(campaign_plan.insert().values(
            send_date=day, campaign_id=campaign_id, template_id=template_id, template_index=index, template_count=count,
            campaign_name=campaign_id, target_group="all_customers", send_at=send_at, status=status, reason=None, planned_at=now,
        ))


def test_a_frozen_ab_list_not_handed_over_is_counted_per_template_and_overdue_once_its_time_passed(engine):  # noqa: F811
    now = dt.datetime(2026, 12, 8, 6, tzinfo=dt.timezone.utc)
    day = now.date()
    seed.seed_demo(engine, customers=50, days=0, today=day, now=now)
    frozen = freeze_recipient_list(engine, campaign_id="LATE", send_date=day, target_group="all_customers",
                                   identifier_column="email", fields={"FNAME": "first_name"}, template_ids=["1001", "1003"])
    send_at = now + dt.timedelta(hours=3)
    for i, t in enumerate(["1001", "1003"]):
        _plan_row(engine, "LATE", t, i, 2, day, send_at, "READY", now)
    insert_ledger_row(engine, campaign_id="LATE", template_id="1001", send_date=day, state="PENDING", send_at=send_at)
    rows = [r for r in status_rows(engine, now) if r["campaign"] == "LATE"]
    assert [(r["template"], r["recipients"], r["state"], r["stage"]) for r in rows] == [
        ("1001 (1/2)", frozen.per_template["1001"], "READY", "sending"),  # a send run has its PENDING row
        ("1003 (2/2)", frozen.per_template["1003"], "READY", "list frozen"),
    ]
    # Its time passed and it was never handed over: not READY any more, OVERDUE (nothing sent).
    late = [r for r in status_rows(engine, send_at + dt.timedelta(minutes=1)) if r["campaign"] == "LATE"]
    assert [r["state"] for r in late] == ["OVERDUE", "OVERDUE"]
    # Once handed over, the ledger's count of the template is what the row shows.
    with engine.begin() as conn:
        conn.execute(send_ledger.update().where(send_ledger.c.template_id == "1001").values(state="IMPORTING", rows_in_list=7))
    (first, _) = [r for r in status_rows(engine, now) if r["campaign"] == "LATE"]
    assert (first["recipients"], first["state"]) == (7, "IMPORTING")


def test_the_state_follows_the_send_and_the_plan():
    now = dt.datetime(2026, 12, 8, 12, tzinfo=dt.timezone.utc)
    past, ahead = now - dt.timedelta(hours=1), now + dt.timedelta(hours=1)
    assert current_state("READY", past, "APPROVED", past, now) == "SENT"
    assert current_state("SENT", past, "APPROVED", past, now) == "SENT"
    assert current_state("READY", ahead, "APPROVED", ahead, now) == "APPROVED"
    assert current_state("READY", ahead, "LAUNCHED", ahead, now) == "LAUNCHED"
    assert current_state("READY", past, "EMPTY", past, now) == "EMPTY"
    assert current_state("READY", past, "MISSED", past, now) == "MISSED"
    assert current_state("CANCELLED", ahead, "CANCELLED", ahead, now) == "CANCELLED"
    assert current_state("READY", ahead, None, None, now) == "READY"
    assert current_state("WAITING", ahead, None, None, now) == "WAITING"
    assert current_state("READY", past, None, None, now) == "OVERDUE"
    assert current_state("READY", past, "PENDING", past, now) == "OVERDUE"
    assert current_state("WAITING", past, None, None, now) == "OVERDUE"
    assert current_state("INVALID", None, None, None, now) == "INVALID"
    assert current_state("MISSED", past, None, None, now) == "MISSED"


def test_the_tables_are_narrow_and_their_schemas_match_the_rows():
    """The main table has no free-text column (the notes are in ``details``), at most 10 columns,
    and each column name is short; both tables' rows carry every column their schema names."""
    assert len(STATUS_COLUMNS) <= 10 and all(len(name) <= 10 for name, _, _ in STATUS_COLUMNS)
    assert "note" not in {c[0] for c in STATUS_COLUMNS} and "note" in {c[0] for c in DETAIL_COLUMNS}
    assert all(desc for _, _, desc in STATUS_COLUMNS + DETAIL_COLUMNS)
