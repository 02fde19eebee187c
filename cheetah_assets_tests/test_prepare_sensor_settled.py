"""``campaign_preparation_sensor`` does not request a date whose due campaigns are all handed over
as scheduled (``sending/settled.py``), on its first tick or later; a date with a failed, changed,
moved or renamed campaign, or one handed over in another account, still is. Real sensor
evaluations on one instance, the cursor carried from tick to tick as the daemon does, and real
runs of the daily cycle against the simulator."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest

from cheetah_assets.clock import ClockResource
from cheetah_assets.customers import seed
from cheetah_assets.customers.schema import campaign_schedule

from .conftest import cheetah_resource
from .helpers import ledger_rows, run_cycle
from .test_prepare_sensor import World

UTC = dt.timezone.utc


@pytest.fixture
def world(sim, db_url):
    """``test_prepare_sensor``'s world: a customer database, the simulator and one instance."""
    with dg.DagsterInstance.ephemeral() as instance:
        w = World(sim, db_url, instance)
        seed.seed_demo(w.engine, customers=8, days=0, today=dt.datetime.now(UTC).date(), now=sim.admin.now())
        yield w


def _at(day: dt.date):
    return lambda h, m=0: dt.datetime.combine(day, dt.time(h, m), tzinfo=UTC)


def _demo_run(world: World, now: dt.datetime, day: dt.date):
    """A run of the day as ``./run demo`` makes one: not requested by the sensor, on a clock of its
    own with no lead time (every campaign of the day is prepared)."""
    world.sim.admin.set_now(now)
    resources = {**world.resources(now), "clock": ClockResource(fixed_now=now.isoformat(), account_time_zone="UTC")}
    return run_cycle(resources, day, world.instance)


def test_a_day_handed_over_without_the_sensor_is_not_requested_again_on_its_first_tick(world: World):
    """Regression (UX review, ``./run dev`` after ``./run demo``): the demo runs each day's cycle
    itself, so dev's sensor had no cursor on its first tick and requested every date with a due
    campaign again, finished ones included (runs that only listed the sends "already done"). The
    day's sends are all APPROVED as scheduled: nothing to request, on the first tick or later ones
    as the rest of the day comes due. The cursor records the date, so nothing is left pending."""
    d = dt.datetime.now(UTC).date()
    at = _at(d)
    world.add("NINE", d, "09:00", "UTC")
    world.add("NOON", d, "12:00", "UTC")
    assert _demo_run(world, at(6, 30), d).success
    assert {r["campaign_id"]: r["state"] for r in ledger_rows(world.engine)} == {"NINE": "APPROVED", "NOON": "APPROVED"}
    assert world.tick(at(7, 30)) == []  # the first tick: NINE due (lead 2 h), handed over as scheduled
    assert d.isoformat() in world.cursor
    assert world.tick(at(10, 0)) == []  # NOON comes due: handed over already too
    assert world.tick(at(16, 0)) == []


@pytest.mark.parametrize("case", ["handed over", "failed", "changed", "another account"])
def test_on_a_first_tick_only_a_date_with_something_to_do_is_requested(world: World, case):
    """A failed run (the day's send not APPROVED), a campaign changed after hand-over, and sends
    recorded against another account leave the date to a run; a settled date does not."""
    d = dt.datetime.now(UTC).date()
    at = _at(d)
    world.add("X", d, "09:30", "UTC")
    if case == "failed":
        world.sim.admin.add_fault(kind="status", method="POST", path="/services2/api/EmailCampaign", status=503, times=None)
    assert _demo_run(world, at(6, 30), d).success is (case != "failed")
    world.sim.admin.clear_faults()
    if case == "changed":
        with world.engine.begin() as conn:
            conn.execute(campaign_schedule.update().where(campaign_schedule.c.campaign_id == "X").values(target_group="vip"))
    if case == "another account":
        same = world.resources
        world.resources = lambda now: {**same(now), "cheetah": cheetah_resource(world.sim, cust_id="777")}
    requested = [r.partition_key for r in world.tick(at(8, 0))]
    assert requested == ([] if case == "handed over" else [d.isoformat()])


@pytest.mark.parametrize("change", ["moved", "renamed"])
def test_a_settled_date_is_requested_again_when_a_run_has_something_to_do(world: World, change):
    """With a cursor: a campaign moved away after hand-over must be taken back by a run of its old
    date, and a renamed one re-planned under its new name; neither date counts as settled."""
    d = dt.datetime.now(UTC).date()
    at = _at(d)
    world.add("A", d, "11:00", "UTC")
    world.add("B", d, "11:30", "UTC")
    (request,) = world.tick(at(9, 30))
    assert world.run(at(9, 30), request.partition_key).success
    assert world.tick(at(9, 31)) == []
    values = {"moved": {"send_date": d + dt.timedelta(days=1)}, "renamed": {"name": "B, renamed"}}[change]
    with world.engine.begin() as conn:
        conn.execute(campaign_schedule.update().where(campaign_schedule.c.campaign_id == "B").values(**values))
    (request,) = world.tick(at(9, 32))
    assert request.partition_key == d.isoformat()
