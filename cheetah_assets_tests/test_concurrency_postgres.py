"""Two runs of the same day at once, in two processes, against a real PostgreSQL database."""

from __future__ import annotations

import datetime as dt

import pytest

from cheetah_assets.customers import seed
from cheetah_assets.customers.resource import CustomerDatabaseResource

from .helpers import audit_sends, create_tables_at_once, ledger_rows, run_days_at_once
from .pg import fresh_postgres_database

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_url():
    with fresh_postgres_database() as url:
        yield url


def test_two_runs_at_once_on_postgres_send_once(sim, pg_url):
    now = sim.admin.now()
    day = now.date()
    engine = CustomerDatabaseResource(url=pg_url).get_engine()
    seed.seed_demo(engine, customers=300, days=0, today=day, now=now)
    for cid, templates, at in (("P1", "1001,1003", "09:00"), ("P2", "1002", "09:30"), ("P3", "1004", "10:00")):
        seed.add_campaign(
            engine, campaign_id=cid, name=cid, send_date=day, send_time=at, time_zone="UTC",
            template_ids=templates, target_group="all_customers",
        )
    outcomes = run_days_at_once(sim, pg_url, now, day, runs=2)
    # Each run either sent or found the work done: both end cleanly.
    assert outcomes == [True, True]
    rows = ledger_rows(engine)
    assert [r["state"] for r in rows] == ["APPROVED"] * 4, [(r["send_key"], r["state"], r["error"]) for r in rows]
    assert all(r["claimed_by"] is None for r in rows)
    sim.admin.advance(dt.timedelta(days=1))
    audit = audit_sends(engine, sim.admin.sent())
    assert audit.ok, audit
    assert audit.campaigns_checked == 4
    # Exactly one campaign per send was ever created in Cheetah Messaging.
    creates = [r for r in sim.admin.requests() if r["method"] == "POST" and r["path"].endswith("/EmailCampaign") and r["status"] == 200]
    assert len(creates) == 4


def test_replacing_the_same_days_rows_concurrently_on_postgres(pg_url):
    """Two runs re-planning (or re-fetching the catalog of) the same day at once: on PostgreSQL both
    would delete nothing and collide on insert without the advisory lock."""
    import threading

    from cheetah_assets.customers.schema import create_integration_tables
    from cheetah_assets.sending.plan import PlanRow, _store

    engine = CustomerDatabaseResource(url=pg_url).get_engine()
    create_integration_tables(engine)
    day = dt.date(2026, 11, 23)
    now = dt.datetime(2026, 11, 23, 6, tzinfo=dt.timezone.utc)
    rows = [
        PlanRow(day, f"C{i}", "1001", 0, 1, f"C{i}", "all", now, "READY", None) for i in range(50)
    ]
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def replan():
        barrier.wait()
        try:
            for _ in range(10):
                _store(engine, day, rows, now)
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=replan) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    from cheetah_assets.sending.plan import load_plan

    assert len(load_plan(engine, day)) == 50


@pytest.mark.parametrize("create", ["integration tables", "campaign_seen"])
def test_tables_created_by_two_runs_at_once_on_first_use(pg_url, create):
    """Regression (a fresh-clone CI failure of the test above): two runs' first ``plan_day`` both
    created cheetah_campaign_seen at once, and one died with PostgreSQL's UniqueViolation on
    pg_type. Each round drops the tables, then several threads create them at the same moment."""
    create_tables_at_once(CustomerDatabaseResource(url=pg_url).get_engine(), create)
