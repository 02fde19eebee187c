"""Exactly once: lost replies at every call, crashes between calls, concurrent runs, dead claims."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import pathlib

import dagster as dg
import pytest

from cheetah_assets.cheetah.client import CheetahClient
from cheetah_assets.clock import ClockResource
from cheetah_assets.sending import ledger as sending_ledger

from .conftest import make_resources, production_env
from .helpers import TWO_CAMPAIGNS, assert_exactly_once, demo_database, failure_texts, run_days_at_once, until_done

API = "/services2/api"
TOKEN = "/services2/authorization/oAuth2/Token"
PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture
def engine(db_url, sim, day):
    return demo_database(db_url, sim, day, customers=150, campaigns=TWO_CAMPAIGNS)


# Every call the send path makes, with "apply the request, then drop the reply" on it.
LOST_REPLIES = [
    ("POST", TOKEN, 0),
    ("GET", f"{API}/DataMap", 1),
    ("POST", f"{API}/Import", 0),
    ("POST", f"{API}/Import", 2),
    ("GET", f"{API}/Import", 0),
    ("POST", f"{API}/EmailCampaign", 0),
    ("POST", f"{API}/EmailCampaign", 1),
    ("GET", f"{API}/EmailCampaign", 0),
    ("GET", f"{API}/EmailCampaign", 3),
    ("PUT", f"{API}/EmailCampaign", 0),  # LAUNCH applied, reply lost
    ("PUT", f"{API}/EmailCampaign", 1),  # APPROVE applied, reply lost
]


@pytest.mark.parametrize("method, path, after", LOST_REPLIES, ids=[f"{m} {p.rsplit('/', 1)[-1]} #{a}" for m, p, a in LOST_REPLIES])
def test_lost_reply_at_every_call(sim, db_url, engine, day, method, path, after):
    sim.admin.add_fault(method=method, path=path, kind="apply_then_drop", after=after, times=1)
    with dg.DagsterInstance.ephemeral() as instance:
        until_done(make_resources(sim, db_url), day, instance)
    assert sum(f["fired"] for f in sim.admin.faults()) == 1
    assert_exactly_once(sim, engine)


@pytest.mark.parametrize("method, path", [("POST", f"{API}/EmailCampaign"), ("PUT", f"{API}/EmailCampaign"), ("POST", f"{API}/Import")])
def test_many_lost_replies_in_a_row(sim, db_url, engine, day, method, path):
    """Replies lost more often than the client retries: the protocol re-reads Cheetah and recovers,
    within the run or in the next one."""
    sim.admin.add_fault(method=method, path=path, kind="apply_then_drop", times=12)
    with dg.DagsterInstance.ephemeral() as instance:
        until_done(make_resources(sim, db_url), day, instance, attempts=8)
    assert sum(f["fired"] for f in sim.admin.faults()) >= 3
    assert_exactly_once(sim, engine)


class Crash(Exception):
    """Stands for the run dying right after a Cheetah call took effect."""


CRASH_POINTS = ["start_import", "wait_for_import", "create_campaign", "launch_campaign", "approve_campaign", "find_campaign"]


@pytest.mark.parametrize("method", CRASH_POINTS)
@pytest.mark.parametrize("nth", [1, 2])
def test_crash_right_after_a_call_then_reexecute(sim, db_url, engine, day, monkeypatch, method, nth):
    original = getattr(CheetahClient, method)
    calls = {"n": 0}

    def crashing(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == nth:
            raise Crash(f"crash after {method} #{nth}")
        return result

    monkeypatch.setattr(CheetahClient, method, crashing)
    with dg.DagsterInstance.ephemeral() as instance:
        results = until_done(make_resources(sim, db_url), day, instance)
    assert not results[0].success
    # The first run died of the crash, in the send step, and of nothing else.
    (failure,) = failure_texts(results[0])
    assert failure.startswith("campaign_sends: ") and f"crash after {method} #{nth}" in failure, failure
    assert len(results) == 2  # and the next run finished the day
    assert_exactly_once(sim, engine)


def test_two_runs_of_the_same_day_at_once(sim, db_url, engine, day):
    # Two processes, as two run workers: Dagster's in-process execution is not for threads.
    assert run_days_at_once(sim, db_url, sim.admin.now(), day, runs=2) == [True, True]
    assert_exactly_once(sim, engine)


def test_a_dead_runs_claim_is_taken_over_after_its_lease(sim, db_url, engine, day):
    now = sim.admin.now()
    ledger = sending_ledger.Ledger(engine, lambda: now)
    row = ledger.ensure(
        campaign_id="B", template_id="1002", send_date=day, list_key=f"B/{day.isoformat()}",
        send_at=dt.datetime.combine(day, dt.time(10, 30), tzinfo=dt.timezone.utc),
    )
    assert ledger.claim(row.send_key, "ghost-run") is not None
    assert ledger.claim(row.send_key, "other-run") is None  # a live claim holds
    later = now + sending_ledger.DEFAULT_LEASE + dt.timedelta(seconds=1)
    resources = make_resources(sim, db_url, now=later)
    assert isinstance(resources["clock"], ClockResource)
    with dg.DagsterInstance.ephemeral() as instance:
        until_done(resources, day, instance)
    assert_exactly_once(sim, engine)


def cycle_job_from_env():
    """The production job and resources, rebuilt in each run worker process from the environment
    (``production_env``: the demo switch, pointed at the test's simulator and database).

    Only the clock is pinned (to the simulator's, through ``TEST_FIXED_NOW``)."""
    from cheetah_assets.automation.jobs import daily_campaign_cycle_job
    from cheetah_assets.configuration import demo_resources
    from cheetah_assets.resources import build_resources
    from cheetah_assets.sending.assets import SEND_ASSETS, SEND_CHECKS

    resources = build_resources()
    # The only change from the environment's: retries without the long waits.
    resources["cheetah"] = demo_resources(backoff_factor=0.01, import_poll_interval_seconds=0.01)["cheetah"]
    resources["clock"] = ClockResource(fixed_now=os.environ["TEST_FIXED_NOW"])
    defs = dg.Definitions(assets=SEND_ASSETS, asset_checks=SEND_CHECKS, jobs=[daily_campaign_cycle_job], resources=resources)
    return defs.resolve_job_def("daily_campaign_cycle")


@contextlib.contextmanager
def _instance(kind: str, tmp_path):
    """A Dagster instance on SQLite files (as ``dagster dev``) or on PostgreSQL (as production)."""
    (tmp_path / "home").mkdir()
    if kind == "sqlite":
        with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
            yield instance
        return
    from .pg import postgres_dagster_instance

    with postgres_dagster_instance(temp_dir=str(tmp_path / "home")) as instance:
        yield instance


@pytest.mark.slow(seconds=35)
@pytest.mark.parametrize("instance_kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_reexecute_from_failure_in_run_worker_processes(sim, db_url, engine, day, monkeypatch, tmp_path, instance_kind):
    """The operator's path: a multiprocess run fails mid-send, "Re-execute from failure" finishes
    it. Each step runs in its own worker process, which reports its events to the instance's
    storage: SQLite files, or PostgreSQL as in production."""
    env = {**production_env(sim, db_url), "TEST_FIXED_NOW": sim.admin.now().isoformat()}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    # LAUNCH answers 503 more often than the client and the protocol retry: the run fails.
    sim.admin.add_fault(method="PUT", path=f"{API}/EmailCampaign", kind="status", status=503, times=60)
    with _instance(instance_kind, tmp_path) as instance:
        # Built inside the instance's context: loading definitions reads the current instance's
        # defs-state storage, and an instance left behind by an earlier test must not be the one.
        job = dg.build_reconstructable_job(
            __name__, "cycle_job_from_env", reconstructor_working_directory=str(PROJECT_ROOT)
        )
        with dg.execute_job(job, instance, tags={"dagster/partition": day.isoformat()}) as first:
            assert not first.success
            # It failed where the fault is, not earlier (an import error in the worker also "fails").
            failed = {e.step_key for e in first.all_events if e.is_step_failure}
            succeeded = {e.step_key for e in first.all_events if e.is_step_success}
            assert failed == {"campaign_sends"}, failed
            assert {"cheetah_template_catalog", "scheduled_campaigns", "recipient_lists"} <= succeeded
        sim.admin.clear_faults()
        options = dg.ReexecutionOptions.from_failure(first.run_id, instance)
        # As the UI does, the re-execution carries the parent run's partition tag.
        with dg.execute_job(job, instance, reexecution_options=options, tags={"dagster/partition": day.isoformat()}) as second:
            assert second.success, [e.message for e in second.all_events if e.is_failure]
            executed = {e.step_key for e in second.all_events if e.is_step_success}
        assert executed == {"campaign_sends"}  # only the failed step ran again
    assert_exactly_once(sim, engine)
