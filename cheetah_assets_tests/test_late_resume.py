"""A send interrupted part-way and resumed after its send time is not launched or approved late.

Approving a campaign whose start time has passed sends it at once: hours late, without anybody
having asked for that. The resumed send deletes our campaign in Cheetah instead, records MISSED
with the reason, and says how to send it late on purpose. A campaign that had already been
approved before the interruption is recorded as handed over, as before.
(Regression: before the fix, the resumed run launched and approved it, and the simulator sent it
at 14:00 for an 11:00 start.)
"""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest

from cheetah_assets.cheetah.client import CheetahClient
from cheetah_assets.customers.schema import campaign_schedule
from cheetah_assets.sending import plan

from .conftest import cheetah_resource, make_resources
from .helpers import CAMPAIGN_X, demo_database, failure_messages, ledger_rows, run_cycle


class Crash(Exception):
    """The process dies right after a Cheetah call took effect."""


def _interrupted_then_resumed(sim, db_url, day, monkeypatch, method: str, resume_at: dt.time):
    engine = demo_database(db_url, sim, day, customers=12, campaigns=CAMPAIGN_X)  # X at 11:00 UTC
    original = getattr(CheetahClient, method)
    calls = {"n": 0}

    def crashing(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 1:
            raise Crash(f"killed after {method}")
        return out

    monkeypatch.setattr(CheetahClient, method, crashing)
    with dg.DagsterInstance.ephemeral() as instance:
        first = run_cycle(make_resources(sim, db_url), day, instance)
        assert not first.success
        monkeypatch.setattr(CheetahClient, method, original)
        sim.admin.set_now(dt.datetime.combine(day, resume_at, tzinfo=dt.timezone.utc))
        second = run_cycle(make_resources(sim, db_url), day, instance)
    return engine, second


@pytest.mark.parametrize("method, state", [("create_campaign", "IMPORTED"), ("launch_campaign", "CREATED")])
def test_a_send_resumed_after_its_time_is_deleted_and_missed_not_sent_late(sim, db_url, day, monkeypatch, method, state):
    engine, second = _interrupted_then_resumed(sim, db_url, day, monkeypatch, method, dt.time(14, 0))
    (row,) = ledger_rows(engine)
    assert row["state"] == "MISSED", row
    assert "11:00 UTC passed before the campaign was" in row["error"] and "send_late" in row["error"], row["error"]
    assert second.success  # MISSED is an outcome (the no_missed_sends check reports it), not a failure
    with dg.DagsterInstance.ephemeral() as instance:  # the day again: the plan says MISSED, nothing is sent
        assert run_cycle(make_resources(sim, db_url), day, instance).success
    (p,) = plan.load_plan(engine, day)
    assert p.status == plan.MISSED and "send_late" in p.reason, p
    sim.admin.advance(dt.timedelta(days=1))
    assert sim.admin.sent()["campaigns"] == []  # not at 14:00, not ever
    with cheetah_resource(sim).get_client() as client:
        found = client.find_campaign(row["cheetah_name"])
    assert found is None or found.status == "CANCELLED", found  # ours, deleted: nobody can approve it by mistake


def test_a_send_resumed_before_its_time_goes_out_at_its_time(sim, db_url, day, monkeypatch):
    """The same interruption, resumed at 10:30 for 11:00: launched, approved, sent once at 11:00."""
    engine, second = _interrupted_then_resumed(sim, db_url, day, monkeypatch, "launch_campaign", dt.time(10, 30))
    assert second.success
    (row,) = ledger_rows(engine)
    assert row["state"] == "APPROVED"
    sim.admin.advance(dt.timedelta(days=1))
    (sent,) = sim.admin.sent(recipients=False)["campaigns"]
    assert sent["sendCount"] == 1 and sent["sentAt"].startswith(f"{day.isoformat()}T11:00"), sent


# ------------------------------------------------------------------------------------------------
# What the MISSED and CANCELLED messages promise: a later time (or send_late) sends it after all
# ------------------------------------------------------------------------------------------------
def _reschedule(engine, **values):
    with engine.begin() as conn:
        conn.execute(campaign_schedule.update().where(campaign_schedule.c.campaign_id == "X").values(**values))


def test_a_send_missed_in_the_ledger_goes_out_once_at_the_later_time_it_is_given(sim, db_url, day, monkeypatch):
    """Regression: a ledger MISSED was final; the plan said MISSED whatever the schedule said
    (the message's "give it a later time" did nothing)."""
    engine, _ = _interrupted_then_resumed(sim, db_url, day, monkeypatch, "create_campaign", dt.time(14, 0))
    old_name = ledger_rows(engine)[0]["cheetah_name"]
    _reschedule(engine, send_time="16:00")
    with dg.DagsterInstance.ephemeral() as instance:
        result = run_cycle(make_resources(sim, db_url), day, instance)
        assert result.success, failure_messages(result)
        assert run_cycle(make_resources(sim, db_url), day, instance).success  # again: nothing more
    (row,) = ledger_rows(engine)
    assert (row["state"], row["revision"]) == ("APPROVED", 1), row
    assert "missed" in row["history"] and "16:00" in row["history"], row["history"]
    sim.admin.advance(dt.timedelta(days=1))
    sent = sim.admin.sent(recipients=False)
    assert [(c["name"], c["startTime"][:16], c["sendCount"]) for c in sent["campaigns"]] == [
        (row["cheetah_name"], f"{day}T16:00", 1)
    ]
    assert row["cheetah_name"] != old_name


def test_a_send_missed_in_the_ledger_goes_out_late_with_send_late(sim, db_url, day, monkeypatch):
    engine, _ = _interrupted_then_resumed(sim, db_url, day, monkeypatch, "launch_campaign", dt.time(14, 0))
    with dg.DagsterInstance.ephemeral() as instance:
        result = run_cycle(make_resources(sim, db_url), day, instance, send_late=True)
        assert result.success, failure_messages(result)
    (row,) = ledger_rows(engine)
    assert row["state"] == "APPROVED" and row["send_at"] > dt.datetime.combine(day, dt.time(14, 0)), row
    sim.admin.advance(dt.timedelta(days=1))
    (campaign,) = sim.admin.sent(recipients=False)["campaigns"]
    assert campaign["sendCount"] == 1 and campaign["startTime"][:13] == f"{day}T14", campaign


def test_a_cancelled_campaign_scheduled_again_says_so_and_goes_out_only_with_a_new_time(sim, db_url, day):
    """Regression: a campaign cancelled (and deleted in Cheetah), then set back to SCHEDULED, was
    planned CANCELLED for good, with every check green: never sent, and nothing said why."""
    engine = demo_database(db_url, sim, day, customers=12, campaigns=CAMPAIGN_X)
    with dg.DagsterInstance.ephemeral() as instance:
        assert run_cycle(make_resources(sim, db_url), day, instance).success
        _reschedule(engine, status="CANCELLED")
        assert run_cycle(make_resources(sim, db_url), day, instance).success
        assert ledger_rows(engine)[0]["state"] == "CANCELLED"
        _reschedule(engine, status="SCHEDULED")
        assert run_cycle(make_resources(sim, db_url), day, instance).success
        (p,) = plan.load_plan(engine, day)
        assert p.status == plan.INVALID and "cancelled" in p.reason and "new send time" in p.reason, p
        assert ledger_rows(engine)[0]["state"] == "CANCELLED"
        _reschedule(engine, send_time="12:00")
        result = run_cycle(make_resources(sim, db_url), day, instance)
        assert result.success, failure_messages(result)
    (row,) = ledger_rows(engine)
    assert (row["state"], row["revision"]) == ("APPROVED", 1), row
    sim.admin.advance(dt.timedelta(days=1))
    sent = sim.admin.sent(recipients=False)
    assert [(c["name"], c["startTime"][:16]) for c in sent["campaigns"]] == [(row["cheetah_name"], f"{day}T12:00")]
