"""The daily cycle as real Dagster materializations against the simulator and a real database."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest
import sqlalchemy as sa

from cheetah_assets.customers import seed
from cheetah_assets.customers.resource import CustomerDatabaseResource
from cheetah_assets.customers.schema import campaign_plan, recipient_list
from cheetah_assets.sending import ledger as sending_ledger

from .conftest import make_resources
from .helpers import audit_sends, ledger_rows, run_cycle


@pytest.fixture
def day(sim) -> dt.date:
    return sim.admin.now().date()


@pytest.fixture
def engine(db_url):
    return CustomerDatabaseResource(url=db_url).get_engine(create=True)


def _campaign(engine, day, campaign_id, *, templates="1001", at="12:00", tz="UTC", group="all_customers", status="SCHEDULED"):
    seed.add_campaign(
        engine, campaign_id=campaign_id, name=f"Campaign {campaign_id}", send_date=day, send_time=at,
        time_zone=tz, template_ids=templates, target_group=group, status=status,
    )


def _plan(engine, day) -> dict[tuple[str, str], dict]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(campaign_plan).where(campaign_plan.c.send_date == day)).mappings()
        return {(r["campaign_id"], r["template_id"]): dict(r) for r in rows}


# 5 requests a second, below the account's default 20: the run must meet the limit even on a loaded
# machine (two test workers on two cores), so the test always sees 429s absorbed.
@pytest.mark.parametrize("rate_limit", [0, 5], ids=["unlimited", "a rate limit of 5 requests a second"])
def test_full_day_is_sent_correctly(sim, db_url, engine, day, rate_limit):
    sim.admin.reset(seed="demo", now=sim.admin.now(), rate_limit=rate_limit)
    summary = seed.seed_demo(engine, customers=400, days=1, today=day, now=sim.admin.now())
    assert summary is not None
    with dg.DagsterInstance.ephemeral() as instance:
        result = run_cycle(make_resources(sim, db_url), day, instance)
        assert result.success
        rows = ledger_rows(engine)
        assert rows and all(r["state"] == "APPROVED" for r in rows), [(r["send_key"], r["state"], r["error"]) for r in rows]
        # A two-template campaign was split between its templates.
        assert len({r["campaign_id"] for r in rows}) < len(rows)
        mats = {
            e.asset_key.to_user_string(): e.materialization.metadata
            for e in result.get_asset_materialization_events()
        }
        assert mats["campaign_sends"]["approved"].value == len(rows)
        assert mats["recipient_lists"]["dagster/row_count"].value > 0
        # Nothing has gone out before the send times; then each campaign goes out exactly once.
        assert sim.admin.sent()["campaigns"] == []
        sim.admin.advance(dt.timedelta(days=1))
        sent = sim.admin.sent()
        audit = audit_sends(engine, sent)
        assert audit.ok, audit
        assert audit.campaigns_checked == len(rows)
    refused = sum(by_status.get("429", 0) for by_status in sim.admin.stats()["requests"].values())
    assert (refused > 0) == (rate_limit > 0)  # the rate limit was really met, and absorbed


def test_unknown_template_stops_only_that_campaign(sim, db_url, engine, day):
    seed.seed_demo(engine, customers=50, days=0, today=day, now=sim.admin.now())
    _campaign(engine, day, "GOOD", templates="1002")
    _campaign(engine, day, "BAD", templates="9999")
    with dg.DagsterInstance.ephemeral() as instance:
        result = run_cycle(make_resources(sim, db_url), day, instance)
    assert result.success
    plan = _plan(engine, day)
    assert plan[("BAD", "9999")]["status"] == "INVALID"
    assert "template 9999 is not in the Optimove folder" in plan[("BAD", "9999")]["reason"]
    assert plan[("GOOD", "1002")]["status"] == "READY"
    states = {r["campaign_id"]: r["state"] for r in ledger_rows(engine)}
    assert states == {"GOOD": "APPROVED"}
    checks = {e.asset_check_key.name: e for e in result.get_asset_check_evaluations()}
    assert checks["campaigns_valid"].passed is False


def test_rerun_and_backfill_send_nothing_twice(sim, db_url, engine, day):
    seed.seed_demo(engine, customers=120, days=0, today=day, now=sim.admin.now())
    _campaign(engine, day, "A", templates="1001,1003")
    res = make_resources(sim, db_url)
    with dg.DagsterInstance.ephemeral() as instance:
        assert run_cycle(res, day, instance).success
        first = {r["send_key"]: r["camp_id"] for r in ledger_rows(engine)}
        # The customer table changes after the send started: the frozen list must not.
        with engine.begin() as conn:
            frozen_before = conn.execute(sa.select(recipient_list.c.row_count)).scalar()
        seed.add_customers(engine, [{"email": f"late{i}@example.com", "first_name": "Late"} for i in range(10)])
        for _ in range(2):  # re-execution, then a backfill of the same day
            assert run_cycle(res, day, instance).success
        assert {r["send_key"]: r["camp_id"] for r in ledger_rows(engine)} == first
        with engine.begin() as conn:
            assert conn.execute(sa.select(recipient_list.c.row_count)).scalar() == frozen_before
        sim.admin.advance(dt.timedelta(days=1))
        audit = audit_sends(engine, sim.admin.sent())
        assert audit.ok and audit.campaigns_checked == 2


def test_backfill_of_a_past_day_reports_missed_unless_told_to_send_late(sim, db_url, engine, day):
    yesterday = day - dt.timedelta(days=1)
    seed.seed_demo(engine, customers=60, days=0, today=day, now=sim.admin.now())
    _campaign(engine, yesterday, "OLD", templates="1002", at="10:00")
    res = make_resources(sim, db_url)
    with dg.DagsterInstance.ephemeral() as instance:
        assert run_cycle(res, yesterday, instance).success
        plan = _plan(engine, yesterday)
        assert plan[("OLD", "1002")]["status"] == "MISSED"
        assert "has passed" in plan[("OLD", "1002")]["reason"]
        assert ledger_rows(engine) == []
        assert run_cycle(res, yesterday, instance, send_late=True).success
        (row,) = ledger_rows(engine)
        assert row["state"] == "APPROVED"
        now = sim.admin.now()
        send_at = row["send_at"].replace(tzinfo=dt.timezone.utc)
        assert now < send_at <= now + dt.timedelta(minutes=15)
        # Backfilling again sends nothing more.
        assert run_cycle(res, yesterday, instance, send_late=True).success
        assert len(ledger_rows(engine)) == 1
    sim.admin.advance(dt.timedelta(hours=1))
    assert audit_sends(engine, sim.admin.sent()).ok


@pytest.mark.parametrize(
    "tz, at, reason",
    [
        (None, "12:00", "has no time zone"),
        ("Mars/Olympus", "12:00", "not an IANA time zone"),
        ("UTC", "25:00", "is not HH:MM"),
    ],
)
def test_bad_send_times_make_the_campaign_invalid(sim, db_url, engine, day, tz, at, reason):
    seed.seed_demo(engine, customers=20, days=0, today=day, now=sim.admin.now())
    _campaign(engine, day, "T", templates="1002", at=at, tz=tz)
    with dg.DagsterInstance.ephemeral() as instance:
        assert run_cycle(make_resources(sim, db_url), day, instance).success
    row = _plan(engine, day)[("T", "1002")]
    assert row["status"] == "INVALID" and reason in row["reason"]
    assert ledger_rows(engine) == []
    assert sim.admin.sent()["campaigns"] == []


def test_ledger_states_are_monotonic_and_named(sim, db_url, engine, day, monkeypatch):
    seed.seed_demo(engine, customers=30, days=0, today=day, now=sim.admin.now())
    _campaign(engine, day, "N", templates="1002")
    # Record every state the ledger is given: the row's creation, then each advance (from, to).
    transitions: list[tuple[str, str | None, str]] = []
    ensure, advance = sending_ledger.Ledger.ensure, sending_ledger.Ledger.advance

    def recording_ensure(self, **kwargs):
        before = self.get(sending_ledger.send_key(kwargs["campaign_id"], kwargs["template_id"], kwargs["send_date"]))
        row = ensure(self, **kwargs)
        if before is None:
            transitions.append((row.send_key, None, row.state))
        return row

    def recording_advance(self, key, owner, state, *args, **kwargs):
        before = self.get(key)
        row = advance(self, key, owner, state, *args, **kwargs)
        transitions.append((key, before.state, row.state))
        return row

    monkeypatch.setattr(sending_ledger.Ledger, "ensure", recording_ensure)
    monkeypatch.setattr(sending_ledger.Ledger, "advance", recording_advance)
    with dg.DagsterInstance.ephemeral() as instance:
        assert run_cycle(make_resources(sim, db_url), day, instance).success
    (row,) = ledger_rows(engine)
    happy = [sending_ledger.PENDING, sending_ledger.IMPORTING, sending_ledger.IMPORTED, sending_ledger.CREATED, sending_ledger.LAUNCHED, sending_ledger.APPROVED]
    assert row["state"] == sending_ledger.APPROVED
    assert {key for key, _, _ in transitions} == {row["send_key"]}
    # Monotonic: each step starts where the previous one ended and moves strictly forward.
    for (_, _, prev_to), (_, frm, to) in zip(transitions, transitions[1:]):
        assert frm == prev_to and happy.index(to) > happy.index(frm), transitions
    # And exactly the happy path, one step at a time.
    assert transitions == [(row["send_key"], None, sending_ledger.PENDING)] + [
        (row["send_key"], a, b) for a, b in zip(happy, happy[1:])
    ]
    assert row["cheetah_name"] == sending_ledger.cheetah_name("N", "1002", day)
    assert row["claimed_by"] is None  # released after the send


def test_backfill_of_a_past_day_from_the_cli_as_the_readme_says(sim, db_url, engine, tmp_path):
    """``dagster job backfill -w workspace.yaml -j daily_campaign_cycle --partitions <day>``, on
    the production definitions and a real instance: yesterday's campaign is reported MISSED and
    nothing reaches Cheetah Messaging."""
    from pathlib import Path

    from .helpers import cli_env, dagster_cli, wait_for_runs

    # Production resources read the real clock, so the simulator is put on it.
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    sim.admin.set_now(now)
    yesterday = now.date() - dt.timedelta(days=1)
    seed.seed_demo(engine, customers=40, days=0, today=now.date(), now=now)
    _campaign(engine, yesterday, "OLD", templates="1002", at="09:00")
    env = cli_env(sim, db_url, tmp_path)
    out = dagster_cli(
        env, "job", "backfill", "-w", "workspace.yaml", "-j", "daily_campaign_cycle",
        "--partitions", yesterday.isoformat(), "--noprompt", cwd=Path(__file__).resolve().parents[1],
    )
    assert "Launched backfill job" in out, out
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        (run,) = wait_for_runs(instance, 1)
        assert run.status == dg.DagsterRunStatus.SUCCESS, run.status
        assert run.tags["dagster/partition"] == yesterday.isoformat() and "dagster/backfill" in run.tags
    plan = _plan(engine, yesterday)
    assert plan[("OLD", "1002")]["status"] == "MISSED" and "has passed" in plan[("OLD", "1002")]["reason"]
    assert ledger_rows(engine) == []
    # The only writes are the send-path set-up check's own (one-row import of its test address,
    # a DRAFT campaign, deleted): no list of customers imported, nothing launched.
    writes = [f"{r['method']} {r['path']}" for r in sim.admin.requests() if r["method"] in ("POST", "PUT", "DELETE") and "/api/" in r["path"]]
    assert writes == [
        "POST /services2/api/Import", "POST /services2/api/EmailCampaign", "DELETE /services2/api/EmailCampaign"
    ], writes
    assert [x["listName"] for x in sim.admin.lists(rows=False)] == ["OPTSETUPCHECK-LIST"]
    assert sim.admin.sent()["campaigns"] == []
