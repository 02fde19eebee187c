"""Issue 9: each campaign is prepared a lead time before its send time, by
``campaign_preparation_sensor`` (real sensor evaluations, real runs of the daily cycle against the
simulator, real SQLite/PostgreSQL). MISSED means first seen after the send time; OVERDUE is a
campaign known in time that was not handed over; both fail ``no_missed_sends``."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from cheetah_assets.automation.prepare_sensor import campaign_preparation_sensor
from cheetah_assets.clock import ClockResource
from cheetah_assets.customers import seed
from cheetah_assets.customers.resource import CustomerDatabaseResource
from cheetah_assets.customers.schema import campaign_plan
from cheetah_assets.sending import preparation
from cheetah_assets.sending.partitions import daily_partitions

from .conftest import cheetah_resource
from .helpers import ledger_rows, run_cycle
from .pg import fresh_postgres_database

UTC = dt.timezone.utc
LEAD = 120


def _clock(now: dt.datetime) -> ClockResource:
    return ClockResource(fixed_now=now.isoformat(), lead_time_minutes=LEAD, account_time_zone="UTC")


class World:
    """A customer database, the simulator and an instance, moved together through time."""

    def __init__(self, sim, db_url: str, instance):
        self.sim, self.db_url, self.instance, self.cursor = sim, db_url, instance, None
        self.engine = CustomerDatabaseResource(url=db_url).get_engine(create=True)

    def resources(self, now):
        return {"cheetah": cheetah_resource(self.sim), "customer_db": CustomerDatabaseResource(url=self.db_url), "clock": _clock(now)}

    def tick(self, now: dt.datetime):
        """One sensor evaluation at ``now`` (the cursor carried over, as the daemon does)."""
        self.sim.admin.set_now(now)
        from cheetah_assets.definitions import defs

        ctx = dg.build_sensor_context(
            instance=self.instance, cursor=self.cursor, resources=self.resources(now), repository_def=defs.get_repository_def()
        )
        data = campaign_preparation_sensor.evaluate_tick(ctx)
        self.cursor = data.cursor
        return data.run_requests or []

    def run(self, now: dt.datetime, day: str, **kwargs):
        self.sim.admin.set_now(now)
        return run_cycle(self.resources(now), dt.date.fromisoformat(day), self.instance, **kwargs)

    def plan(self) -> dict[str, dict]:
        with self.engine.connect() as conn:
            return {r["campaign_id"]: dict(r) for r in conn.execute(sa.select(campaign_plan)).mappings()}

    def add(self, cid, day, at, tz):
        seed.add_campaign(
            self.engine, campaign_id=cid, name=cid, send_date=day, send_time=at, time_zone=tz,
            template_ids="1002", target_group="all_customers",
        )


@pytest.fixture
def world(sim, db_url):
    with dg.DagsterInstance.ephemeral() as instance:
        w = World(sim, db_url, instance)
        today = dt.datetime.now(UTC).date()
        seed.seed_demo(w.engine, customers=8, days=0, today=today, now=sim.admin.now())
        yield w


def test_morning_sends_east_of_utc_and_at_00_05_utc_are_prepared_the_evening_before_and_sent_at_their_time(world):
    """Regression (issue 9): Tokyo 08:00, Sydney 10:00 and Kolkata 05:30 on D, and 00:05 UTC on D,
    were all MISSED by the 00:15 UTC run of D. Now each is prepared 2 h before its own time (on
    D-1 UTC for the first three) and Cheetah sends each at its time, exactly once."""
    d = dt.datetime.now(UTC).date() + dt.timedelta(days=1)
    eve = dt.datetime.combine(d - dt.timedelta(days=1), dt.time(), tzinfo=UTC)
    world.add("TOKYO", d, "08:00", "Asia/Tokyo")  # D-1 23:00 UTC
    world.add("SYDNEY", d, "10:00", "Australia/Sydney")  # D-1 23:00 UTC (AEDT)
    world.add("KOLKATA", d, "05:30", "Asia/Kolkata")  # D-1 24:00 UTC
    world.add("MIDNIGHT", d, "00:05", "UTC")
    assert world.tick(eve + dt.timedelta(hours=20, minutes=30)) == []  # nothing due yet
    (first,) = world.tick(eve + dt.timedelta(hours=21))
    assert first.partition_key == d.isoformat() and first.run_key.startswith(f"prepare-{d}-")
    assert d.isoformat() in daily_partitions.get_partition_keys(current_time=eve + dt.timedelta(hours=21))
    assert world.run(eve + dt.timedelta(hours=21), first.partition_key).success
    plan = world.plan()
    assert {c: plan[c]["status"] for c in plan} == {"TOKYO": "READY", "SYDNEY": "READY", "KOLKATA": "WAITING", "MIDNIGHT": "WAITING"}
    assert plan["KOLKATA"]["reason"] == f"prepared from {d - dt.timedelta(days=1)} 22:00 UTC"
    assert world.tick(eve + dt.timedelta(hours=21, minutes=1)) == []  # same due set: no new run
    (second,) = world.tick(eve + dt.timedelta(hours=22, minutes=5))
    assert second.partition_key == d.isoformat() and second.run_key != first.run_key
    assert world.run(eve + dt.timedelta(hours=22, minutes=5), second.partition_key).success
    states = {r["campaign_id"]: (r["state"], r["send_at"]) for r in ledger_rows(world.engine)}
    assert {c: s for c, (s, _) in states.items()} == dict.fromkeys(["KOLKATA", "MIDNIGHT", "SYDNEY", "TOKYO"], "APPROVED")
    world.sim.admin.set_now(eve + dt.timedelta(days=2))
    sent = {c["name"]: c for c in world.sim.admin.sent(recipients=False)["campaigns"]}
    want = {"TOKYO": "23:00", "SYDNEY": "23:00", "KOLKATA": "00:00", "MIDNIGHT": "00:05"}
    assert len(sent) == 4 and all(c["sendCount"] == 1 for c in sent.values()), sent
    got = {name.split("-")[1]: dt.datetime.fromisoformat(c["sentAt"]).astimezone(UTC).strftime("%H:%M") for name, c in sent.items()}
    assert got == want, got


def test_a_campaign_scheduled_20_minutes_before_its_time_is_prepared_on_the_next_tick(world):
    """Regression (issue 9): a campaign added after the 00:15 run was never prepared."""
    d = dt.datetime.now(UTC).date()
    morning = dt.datetime.combine(d, dt.time(10, 0), tzinfo=UTC)
    assert world.tick(morning) == []
    world.add("LATE", d, "14:00", "UTC")
    (request,) = world.tick(dt.datetime.combine(d, dt.time(13, 41), tzinfo=UTC))
    assert request.partition_key == d.isoformat()
    assert world.run(dt.datetime.combine(d, dt.time(13, 41), tzinfo=UTC), request.partition_key).success
    ((state, send_at),) = [(r["state"], r["send_at"]) for r in ledger_rows(world.engine)]
    assert state == "APPROVED" and send_at.replace(tzinfo=UTC) == dt.datetime.combine(d, dt.time(14), tzinfo=UTC)
    # The same day's next ticks request nothing more; a re-run of the day sends nothing twice.
    assert world.tick(dt.datetime.combine(d, dt.time(13, 42), tzinfo=UTC)) == []
    assert world.run(dt.datetime.combine(d, dt.time(13, 43), tzinfo=UTC), d.isoformat()).success
    world.sim.admin.set_now(dt.datetime.combine(d, dt.time(15), tzinfo=UTC))
    assert [c["sendCount"] for c in world.sim.admin.sent(recipients=False)["campaigns"]] == [1]


@pytest.mark.parametrize("change", ["next day", "later the same day", "deleted"])
def test_a_handed_over_campaign_moved_or_deleted_alone_on_its_date_is_taken_back(world, change):
    """Regression (review of this stop): when the moved campaign was the only one due on its date,
    that date's due set became empty and no run was requested: the old campaign went out at 11:00
    anyway, and a move to the next day sent it twice."""
    from cheetah_assets.customers.schema import campaign_schedule

    d = dt.datetime.now(UTC).date()
    at = lambda h, m=0, day=d: dt.datetime.combine(day, dt.time(h, m), tzinfo=UTC)  # noqa: E731
    world.add("X", d, "11:00", "UTC")
    (request,) = world.tick(at(9, 30))
    assert world.run(at(9, 30), request.partition_key).success
    row = campaign_schedule.c.campaign_id == "X"
    with world.engine.begin() as conn:
        if change == "next day":
            conn.execute(campaign_schedule.update().where(row).values(send_date=d + dt.timedelta(days=1)))
        elif change == "later the same day":
            conn.execute(campaign_schedule.update().where(row).values(send_time="15:00"))
        else:
            conn.execute(campaign_schedule.delete().where(row))
    (request,) = world.tick(at(9, 45))
    assert request.partition_key == d.isoformat()
    world.run(at(9, 46), d.isoformat())
    assert world.tick(at(9, 47)) == []  # requested once
    world.sim.admin.set_now(at(11, 5))
    assert world.sim.admin.sent(recipients=False)["campaigns"] == []  # the 11:00 campaign was taken back
    later = {"next day": at(9, 30, d + dt.timedelta(days=1)), "later the same day": at(13, 0)}.get(change)
    if later is not None:  # prepared again for its new time, and sent once, then
        for r in world.tick(later):
            world.run(later, r.partition_key)
        world.sim.admin.set_now(later + dt.timedelta(hours=6))
        sent = world.sim.admin.sent(recipients=False)["campaigns"]
        assert [c["sendCount"] for c in sent] == [1], sent


def _tick_and_run(world, now):
    """One tick, then each run it requested, tagged with its run key as the daemon tags it."""
    from cheetah_assets.automation.run_keys import RUN_KEY_TAG

    requests = world.tick(now)
    for r in requests:
        world.run(now, r.partition_key, tags={RUN_KEY_TAG: r.run_key})
    return requests


def test_a_preparation_run_that_failed_is_requested_again_and_the_campaign_goes_out(world):
    """Regression (review of this stop): a run failed by a short Cheetah outage (503 on create,
    past the client's retries) was never requested again: the due set had not changed, so every
    later tick skipped, and the campaign was never sent."""
    d = dt.datetime.now(UTC).date()
    at = lambda h, m=0: dt.datetime.combine(d, dt.time(h, m), tzinfo=UTC)  # noqa: E731
    world.add("X", d, "11:00", "UTC")
    world.sim.admin.add_fault(kind="status", method="POST", path="/services2/api/EmailCampaign", status=503, times=None)
    (first,) = _tick_and_run(world, at(9, 0))
    assert [r["state"] for r in ledger_rows(world.engine)] != ["APPROVED"]
    world.sim.admin.clear_faults()  # the outage is over
    assert _tick_and_run(world, at(9, 1)) == []  # the failure seen; its retry waits a minute
    (again,) = _tick_and_run(world, at(9, 2))
    assert again.partition_key == d.isoformat() and again.run_key != first.run_key
    assert [r["state"] for r in ledger_rows(world.engine)] == ["APPROVED"]
    assert _tick_and_run(world, at(9, 3)) == [] and _tick_and_run(world, at(9, 40)) == []  # it succeeded
    world.sim.admin.set_now(at(11, 5))
    assert [c["sendCount"] for c in world.sim.admin.sent(recipients=False)["campaigns"]] == [1]


def test_a_preparation_run_that_keeps_failing_is_requested_a_bounded_number_of_times(world):
    from cheetah_assets.automation.prepare_sensor import RETRY_DELAYS

    d = dt.datetime.now(UTC).date()
    world.add("X", d, "11:00", "UTC")
    world.sim.admin.add_fault(kind="status", method="POST", path="/services2/api/EmailCampaign", status=503, times=None)
    keys = []
    for minute in range(0, 90):
        keys += [r.run_key for r in _tick_and_run(world, dt.datetime.combine(d, dt.time(9), tzinfo=UTC) + dt.timedelta(minutes=minute))]
    assert len(keys) == 1 + len(RETRY_DELAYS) == len(set(keys))
    assert world.sim.admin.sent(recipients=False)["campaigns"] == []


def test_a_plan_made_earlier_but_stored_last_does_not_undo_a_later_one(world):
    """Regression (review of this stop): two runs of one date (requested as X, then Y, became due);
    the first read its clock before Y was due but stored its plan last, putting Y back to WAITING:
    the second run's lists and sends read that plan, nothing sent Y, both runs succeeded, and no
    further run was requested."""
    from cheetah_assets.sending.assets import SEND_ASSETS

    d = dt.datetime.now(UTC).date()
    at = lambda h, m=0, s=0: dt.datetime.combine(d, dt.time(h, m, s), tzinfo=UTC)  # noqa: E731
    world.add("X", d, "11:00", "UTC")
    world.add("Y", d, "11:01", "UTC")

    def steps(now, names):
        world.sim.admin.set_now(now)
        return dg.materialize(SEND_ASSETS, partition_key=d.isoformat(), resources=world.resources(now),
                              instance=world.instance, selection=names, raise_on_error=False).success

    assert len(world.tick(at(9, 0))) == 1
    assert steps(at(9, 0, 30), ["cheetah_template_catalog"])  # run 1 starts
    assert len(world.tick(at(9, 1))) == 1
    assert steps(at(9, 1, 10), ["cheetah_template_catalog", "scheduled_campaigns"])  # run 2 plans X and Y READY
    assert steps(at(9, 0, 50), ["scheduled_campaigns"])  # run 1's plan, made at 09:00:50, stored last
    assert {k: v["status"] for k, v in world.plan().items()} == {"X": "READY", "Y": "READY"}
    assert steps(at(9, 1, 20), ["recipient_lists", "campaign_sends"])
    assert steps(at(9, 1, 25), ["recipient_lists", "campaign_sends"])
    assert sorted(r["state"] for r in ledger_rows(world.engine)) == ["APPROVED", "APPROVED"]


@pytest.mark.parametrize("bad_zone", ["America", "Europe/", "../../etc/passwd", "Nowhere/Else"])
def test_a_time_zone_that_is_a_folder_of_the_tz_database_is_one_invalid_row_not_a_crash(world, bad_zone):
    """Regression (review of this stop): ``ZoneInfo("America")`` raises IsADirectoryError, which
    nothing caught: every tick of the preparation sensor failed, and no campaign of any date was
    prepared while that one row existed."""
    d = dt.datetime.now(UTC).date()
    world.add("GOOD", d, "11:00", "Europe/London")
    world.add("TYPO", d + dt.timedelta(days=1), "11:00", bad_zone)
    keys = {r.partition_key for r in world.tick(dt.datetime.combine(d, dt.time(9, 30), tzinfo=UTC))}
    assert d.isoformat() in keys  # (and the typo's date: its run reports the row INVALID)
    assert world.run(dt.datetime.combine(d, dt.time(9, 31), tzinfo=UTC), d.isoformat()).success
    assert [r["state"] for r in ledger_rows(world.engine)] == ["APPROVED"]
    assert world.run(dt.datetime.combine(d, dt.time(9, 32), tzinfo=UTC), (d + dt.timedelta(days=1)).isoformat(),
                     raise_on_error=False) is not None
    typo = world.plan()["TYPO"]
    assert typo["status"] == "INVALID" and "IANA time zone" in typo["reason"], typo


def test_missed_means_first_seen_after_its_send_time_and_overdue_means_known_but_not_handed_over(world):
    d = dt.datetime.now(UTC).date()
    at = lambda h, m=0: dt.datetime.combine(d, dt.time(h, m), tzinfo=UTC)  # noqa: E731
    world.add("KNOWN", d, "11:00", "UTC")
    world.tick(at(8))  # seen at 08:00; the integration is then down until 11:30
    world.add("AFTER", d, "09:00", "Europe/Paris")  # 08:00 UTC, first seen at 08:12
    world.tick(at(8, 12))
    result = world.run(at(11, 30), d.isoformat())
    assert result.success  # one bad day never fails the run: the check says it
    plan = world.plan()
    assert plan["AFTER"]["status"] == "MISSED"
    assert plan["AFTER"]["reason"].startswith(
        f"scheduled for 09:00 Europe/Paris ({d} 08:00 UTC) but first seen at {d} 08:12 UTC: its send time has passed"
    )
    assert plan["KNOWN"]["status"] == "OVERDUE" and plan["KNOWN"]["reason"].startswith(f"known since {d} 08:00 UTC")
    (check,) = [e for e in result.get_asset_check_evaluations() if e.asset_check_key.name == "no_missed_sends"]
    assert check.passed is False and check.severity == dg.AssetCheckSeverity.ERROR
    assert "AFTER (MISSED)" in check.description and "KNOWN (OVERDUE)" in check.description
    (mat,) = [m for m in result.get_asset_materialization_events() if m.asset_key.path == ["scheduled_campaigns"]]
    meta = mat.materialization.metadata
    assert meta["missed"].value == 1 and meta["overdue"].value == 1
    assert {r.data["campaign"] for r in meta["not sent in time"].records} == {"AFTER", "KNOWN"}
    assert ledger_rows(world.engine) == [] and world.sim.admin.sent()["campaigns"] == []
    # A deliberate backfill still sends them, late.
    assert world.run(at(11, 31), d.isoformat(), send_late=True).success
    assert {r["campaign_id"]: r["state"] for r in ledger_rows(world.engine)} == {"AFTER": "APPROVED", "KNOWN": "APPROVED"}


def _statements(engine, fn):
    seen: list[str] = []

    def listen(conn, cursor, statement, *args):
        seen.append(statement)

    sa.event.listen(engine, "before_cursor_execute", listen)
    try:
        fn()
    finally:
        sa.event.remove(engine, "before_cursor_execute", listen)
    return seen


def _two_queries_per_quiet_tick(world, engine):
    """The statements of a quiet tick (nothing changed, nothing handed over ahead): the schedule's
    window, and the ledger's sends handed over whose time is ahead (late_suppression.py)."""
    from cheetah_assets.sending.late_suppression import handed_over_statement

    d = dt.datetime.now(UTC).date()
    now = dt.datetime.combine(d, dt.time(6), tzinfo=UTC)
    world.add("A", d, "07:00", "UTC")
    assert len(world.tick(now)) == 1
    quiet = _statements(engine, lambda: world.tick(now + dt.timedelta(minutes=1)))
    assert len(quiet) == 2 and "campaign_schedule" in quiet[0] and "send_date BETWEEN" in quiet[0], quiet
    assert "cheetah_send_ledger" in quiet[1] and "send_at >" in quiet[1], quiet
    return [
        (preparation.window_statement(d, d + dt.timedelta(days=2)), "ix_campaign_schedule_send_date"),
        (handed_over_statement(now), "ix_cheetah_send_ledger_send_at"),
    ]


def _literal(stmt, engine):
    return str(stmt.compile(engine, compile_kwargs={"literal_binds": True}))


def test_a_quiet_tick_is_two_indexed_queries_on_sqlite(world):
    for stmt, index in _two_queries_per_quiet_tick(world, world.engine):
        with world.engine.connect() as conn:
            plan = " ".join(str(r[-1]) for r in conn.execute(sa.text("EXPLAIN QUERY PLAN " + _literal(stmt, world.engine))))
        assert index in plan, plan


def test_a_quiet_tick_is_two_indexed_queries_on_postgres(sim):
    with fresh_postgres_database() as url, dg.DagsterInstance.ephemeral() as instance:
        w = World(sim, url, instance)
        seed.seed_demo(w.engine, customers=8, days=0, today=dt.datetime.now(UTC).date(), now=sim.admin.now())
        for stmt, index in _two_queries_per_quiet_tick(w, w.engine):
            with w.engine.connect() as conn:
                conn.execute(sa.text("SET enable_seqscan = off"))  # a tiny table: ask whether the index serves it
                plan = " ".join(r[0] for r in conn.execute(sa.text("EXPLAIN " + _literal(stmt, w.engine))))
            assert index in plan, plan


def test_a_prepared_campaign_cancelled_an_hour_before_its_time_is_requested_again_and_never_sent(world):
    from cheetah_assets.customers.queries import set_campaign_status

    d = dt.datetime.now(UTC).date()
    at = lambda h, m=0: dt.datetime.combine(d, dt.time(h, m), tzinfo=UTC)  # noqa: E731
    world.add("GONE", d, "14:00", "UTC")
    (first,) = world.tick(at(12))
    assert world.run(at(12), first.partition_key).success
    assert [r["state"] for r in ledger_rows(world.engine)] == ["APPROVED"]
    set_campaign_status(world.engine, "GONE", "CANCELLED")
    (again,) = world.tick(at(13))
    assert again.partition_key == d.isoformat() and again.run_key != first.run_key
    assert world.run(at(13), again.partition_key).success
    assert world.plan()["GONE"]["status"] == "CANCELLED"
    assert [r["state"] for r in ledger_rows(world.engine)] == ["CANCELLED"]
    world.sim.admin.set_now(at(15))
    assert [c for c in world.sim.admin.sent(recipients=False)["campaigns"] if c.get("sendCount")] == []


@pytest.mark.parametrize("endpoint", ["same", "another"], ids=["same-endpoint", "another-endpoint"])
def test_a_day_handed_over_then_requested_again_after_its_send_times_reports_its_sends_as_sent(world, endpoint):
    """Regression (``./run dev`` on the demo folder): the demo handed the day over in-process (no
    sensor), then dev's sensor, on its first tick (no cursor: every due date is new to it), ran the
    day again hours after the send times, with the simulator on another port (the sensor now
    leaves such a day alone; a backfill or re-execution still runs it, as here). The plan called the
    three APPROVED sends OVERDUE ("nothing was sent"), no_missed_sends failed, and campaign_sends
    showed all zeros. Now they are SENT (another endpoint: handed over to that account, not sent
    again), the check passes and campaign_sends lists them as already done."""
    d = dt.datetime.now(UTC).date()
    at = lambda h, m=0: dt.datetime.combine(d, dt.time(h, m), tzinfo=UTC)  # noqa: E731
    world.add("NINE", d, "09:00", "UTC")
    world.add("HALF", d, "10:30", "Europe/London")
    assert world.run(at(8, 45), d.isoformat()).success  # both due (lead 2 h): handed over
    assert {r["campaign_id"]: r["state"] for r in ledger_rows(world.engine)} == {"NINE": "APPROVED", "HALF": "APPROVED"}
    assert world.tick(at(16, 24)) == []  # its first tick: handed over as scheduled (test_prepare_sensor_settled.py)
    resources = world.resources(at(16, 25))
    if endpoint == "another":  # the same simulated account, reached at another address
        resources["cheetah"] = cheetah_resource(world.sim, endpoint=world.sim.url.replace("127.0.0.1", "localhost"))
    world.sim.admin.set_now(at(16, 25))
    result = run_cycle(resources, d, world.instance)
    assert result.success
    plan = world.plan()
    assert {c: p["status"] for c, p in plan.items()} == {"NINE": "SENT", "HALF": "SENT"}, plan
    if endpoint == "another":  # a loopback address and port are one account: not "another account's"
        assert not any("another account" in (p["reason"] or "") for p in plan.values()), plan
    (check,) = [e for e in result.get_asset_check_evaluations() if e.asset_check_key.name == "no_missed_sends"]
    assert check.passed, check.description
    (sends,) = [m for m in result.get_asset_materialization_events() if m.asset_key.path == ["campaign_sends"]]
    meta = sends.materialization.metadata
    assert meta["dagster/row_count"].value == 2 and meta["approved"].value == 2
    records = {r.data["campaign"]: r.data for r in meta["sends"].records}
    assert set(records) == {"NINE", "HALF"} and all(r["note"].startswith("already done") for r in records.values())
    assert all(r["state"] == "APPROVED" and r["accepted"] for r in records.values()), records
    world.sim.admin.set_now(at(17))
    sent = world.sim.admin.sent(recipients=False)["campaigns"]
    assert sorted(c["sendCount"] for c in sent) == [1, 1], sent  # nothing created or sent again


def test_a_schedule_change_that_is_reverted_gets_a_run_key_of_its_own(world):
    """11:00 -> 10:45 -> back to 11:00: three requests with three run keys. The daemon skips a
    run key the sensor used before, so a key made from the due set alone repeated for the revert
    and no run was launched (review: send-path finding 4). An unchanged due set requests nothing."""
    from cheetah_assets.customers.schema import campaign_schedule

    d = dt.datetime.now(UTC).date()
    at = lambda h, m=0: dt.datetime.combine(d, dt.time(h, m), tzinfo=UTC)  # noqa: E731
    world.add("R", d, "11:00", "UTC")
    keys = []
    for i, send_time in enumerate(("11:00", "10:45", "11:00")):
        with world.engine.begin() as conn:
            conn.execute(campaign_schedule.update().where(campaign_schedule.c.campaign_id == "R").values(send_time=send_time))
        (request,) = world.tick(at(9, 30 + 2 * i))  # due from 09:00 (lead 2 h)
        assert request.partition_key == d.isoformat()
        keys.append(request.run_key)
        assert world.tick(at(9, 31 + 2 * i)) == []  # unchanged: no second request
    assert len(set(keys)) == 3, keys


def test_after_an_outage_of_several_days_the_dates_it_skipped_are_still_planned_and_reported(world):
    """The sensor normally reads from today - 2. After an outage of five days its first tick reads
    from where its last tick did (bounded), so campaigns 3 and 4 days back are planned and reported
    OVERDUE or MISSED, never sent late (review: send-path finding 10)."""
    d = dt.datetime.now(UTC).date()
    for back in (1, 2, 3, 4):
        world.add(f"D{back}", d - dt.timedelta(days=back), "11:00", "UTC")

    def tick(now, cursor):  # without World.tick: the simulator's clock never goes back
        from cheetah_assets.definitions import defs

        ctx = dg.build_sensor_context(
            instance=world.instance, cursor=cursor, repository_def=defs.get_repository_def(),
            resources=world.resources(now),
        )
        data = campaign_preparation_sensor.evaluate_tick(ctx)
        return sorted(r.partition_key for r in data.run_requests or []), data.cursor

    before, cursor = tick(dt.datetime.combine(d - dt.timedelta(days=5), dt.time(12), tzinfo=UTC), None)
    assert before == []  # the last tick before the outage: nothing due yet (it reads d-7 .. d-3)
    after, cursor = tick(dt.datetime.combine(d, dt.time(6), tzinfo=UTC), cursor)
    assert after == [(d - dt.timedelta(days=b)).isoformat() for b in (4, 3, 2, 1)]
    assert tick(dt.datetime.combine(d, dt.time(6, 1), tzinfo=UTC), cursor)[0] == []  # back to the usual window
    result = world.run(dt.datetime.combine(d, dt.time(6), tzinfo=UTC), (d - dt.timedelta(days=4)).isoformat())
    assert world.plan()["D4"]["status"] == "OVERDUE"  # known since d-5, never handed over
    (check,) = [e for e in result.get_asset_check_evaluations() if e.asset_check_key.name == "no_missed_sends"]
    assert check.passed is False and "D4 (OVERDUE)" in check.description
    assert ledger_rows(world.engine) == [] and world.sim.admin.sent()["campaigns"] == []


@settings(max_examples=200, deadline=None)
@given(
    previous=st.dictionaries(st.integers(0, 9), st.sampled_from("abc"), max_size=6),
    current=st.dictionaries(st.integers(0, 9), st.sampled_from("abc"), max_size=6),
    first=st.integers(0, 9),
)
def test_changed_days_are_the_new_the_changed_and_the_emptied_in_the_window(previous, current, first):
    day = lambda n: (dt.date(2026, 12, 1) + dt.timedelta(days=n)).isoformat()  # noqa: E731
    prev, cur = {day(k): v for k, v in previous.items()}, {day(k): v for k, v in current.items()}
    got = preparation.changed_days(prev, cur, dt.date.fromisoformat(day(first)))
    want = {day(k) for k, v in current.items() if previous.get(k) != v}
    want |= {day(k) for k in previous if k not in current and k >= first}
    assert got == sorted(want)
    assert preparation.changed_days(cur, cur, dt.date.fromisoformat(day(first))) == []  # a quiet tick
