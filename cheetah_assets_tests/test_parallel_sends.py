"""Sends of different campaigns in parallel (issue 12): exactly once, one worker per send, one bad
campaign alone stopped, every worker's log line naming its campaign."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import threading

import dagster as dg
import pytest

from cheetah_assets.runlog import DETAIL_LOGGER
from cheetah_assets.sending import ledger as sending_ledger
from cheetah_assets.sending import plan
from cheetah_assets.sending.assets import SEND_ASSETS, SEND_CHECKS
from cheetah_assets.sending.parallel import CampaignLog, send_all
from cheetah_assets.sending.protocol import Sender
from cheetah_assets.sending.runs import run_of, worker_owner

from .conftest import cheetah_resource, make_resources
from .helpers import assert_exactly_once, audit_sends, demo_database, failure_texts, ledger_rows, run_cycle

UTC = dt.timezone.utc
CAMPAIGNS = [
    ("P1", "Parallel 1", "1001,1003", "09:00"),
    ("P2", "Parallel 2", "1002", "10:00"),
    ("P3", "Parallel 3", "1004", "11:00"),
    ("P4", "Parallel 4", "1001", "12:00"),
]


@pytest.fixture
def day(sim) -> dt.date:
    return sim.admin.now().date()


@pytest.fixture
def engine(db_url, sim, day):
    return demo_database(db_url, sim, day, customers=60, campaigns=CAMPAIGNS)


def test_a_run_at_concurrency_3_sends_every_campaign_exactly_once(sim, db_url, engine, day, caplog):
    caplog.set_level(logging.DEBUG, logger=DETAIL_LOGGER)
    with dg.DagsterInstance.ephemeral() as instance:
        result = run_cycle(make_resources(sim, db_url), day, instance, concurrency=3)
        assert result.success
        lines = [e.user_message for e in instance.all_logs(result.run_id) if e.user_message]
        again = run_cycle(make_resources(sim, db_url), day, instance, concurrency=3)  # a re-run sends nothing
        assert again.success
    assert_exactly_once(sim, engine, sends=5)
    # Each worker's lines name the campaign it works on: its start and outcome lines in the run's
    # log, and the API client's own call lines (DEBUG, in the detail logger: cheetah_assets.runlog).
    detail = [r.getMessage() for r in caplog.records if r.name == DETAIL_LOGGER]
    for cid, _name, templates, _at in CAMPAIGNS:
        mine = [line for line in lines if line.startswith(f"[campaign {cid}] ")]
        assert len([line for line in mine if ": APPROVED: " in line]) == len(templates.split(",")), (cid, mine)
        assert any(line.startswith(f"[campaign {cid}] Cheetah POST /services2/api/Import") for line in detail), cid
    assert not any(line.startswith("[campaign") and not line.startswith("[campaign P") for line in lines + detail)


def _frozen_day(sim, db_url, day) -> list[plan.PlanRow]:
    """The day planned and its lists frozen (the assets before campaign_sends)."""
    with dg.DagsterInstance.ephemeral() as instance:
        assert dg.materialize(
            [*SEND_ASSETS[:3], *SEND_CHECKS[:2]], partition_key=day.isoformat(),
            resources=make_resources(sim, db_url), instance=instance,
        ).success
    return [r for r in plan.load_plan(make_resources(sim, db_url)["customer_db"].get_engine(), day)
            if r.status == plan.READY]


def test_workers_run_at_once_and_never_take_the_same_send(sim, db_url, engine, day):
    todo = _frozen_day(sim, db_url, day)
    assert len({r.campaign_id for r in todo}) == 4
    # Every send listed twice: still each is taken by one worker only, once.
    doubled = todo + list(reversed(todo))
    resource = cheetah_resource(sim)
    at_import = threading.Barrier(3, timeout=30)  # passes only if 3 workers import at the same time
    imports: list[str] = []

    def on_step(key: str, step: str) -> None:
        if step == "import" and key not in imports:
            imports.append(key)
            if len(imports) <= 3:
                at_import.wait()

    @contextlib.contextmanager
    def worker_sender(n: int, log: CampaignLog):
        with resource.get_client(logger=log) as client:
            yield Sender(client=client, engine=engine, owner=worker_owner("run-1", n), now=lambda: sim.admin.now(),
                         logger=log, on_step=on_step, step_backoff_seconds=0.01)

    with resource.get_client() as client:
        main = Sender(client=client, engine=engine, owner="run-1", now=lambda: sim.admin.now())
        results = send_all(doubled, sender=main, worker_sender=worker_sender, concurrency=3,
                           logger=CampaignLog(main.logger))
    assert results.problems == []
    keys = [k for _n, k in results.taken]
    assert sorted(keys) == sorted(r.send_key for r in todo)  # each send once
    workers = {n for n, _k in results.taken}
    assert len(workers) == 3 and 0 not in workers
    by_campaign = {}
    for n, key in results.taken:
        by_campaign.setdefault(key.split("/")[0], set()).add(n)
    assert all(len(ns) == 1 for ns in by_campaign.values())  # a campaign's templates: one worker
    assert [o["state"] for o in results.outcomes] == [sending_ledger.APPROVED] * 5
    assert_exactly_once(sim, engine, sends=5)


def test_two_workers_of_one_run_cannot_both_claim_a_send(sim, engine, day):
    ledger = sending_ledger.Ledger(engine, lambda: sim.admin.now())
    row = ledger.ensure(campaign_id="P1", template_id="1001", send_date=day, list_key="P1/x", send_at=None)
    owners = [worker_owner("run-1", n) for n in range(1, 9)]
    start = threading.Barrier(len(owners))
    won: dict[str, bool] = {}

    def race(owner: str) -> None:
        start.wait()
        won[owner] = ledger.claim(row.send_key, owner) is not None

    threads = [threading.Thread(target=race, args=(o,)) for o in owners]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [o for o, w in won.items() if w]
    assert len(winners) == 1 and len(won) == len(owners)
    loser = next(o for o in owners if o not in winners)
    with pytest.raises(sending_ledger.LostClaim):
        ledger.advance(row.send_key, loser, sending_ledger.IMPORTING)  # a worker cannot act on another's send
    assert ledger.get(row.send_key).claimed_by == winners[0] and run_of(winners[0]) == "run-1"


def test_one_bad_campaign_under_concurrency_stops_alone(sim, db_url, engine, day):
    # Another system made a campaign with P2's name: P2 must stop, the others go on in parallel.
    name = sending_ledger.cheetah_name("P2", "1002", day)
    with cheetah_resource(sim).get_client() as client:
        status = client.wait_for_import(client.start_import(
            list_name="someone-else", csv_bytes=b"EMAIL_ADDR\r\nstranger@example.com\r\n", file_name="theirs.csv"))
        client.create_campaign(name=name, template_obj_id="1004", list_id=status.list_id,
                               start_time=dt.datetime.combine(day, dt.time(23), tzinfo=UTC))
    with dg.DagsterInstance.ephemeral() as instance:
        result = run_cycle(make_resources(sim, db_url), day, instance, concurrency=4)
    assert not result.success
    text = " ".join(failure_texts(result))
    assert "1 of 5 sends did not complete" in text and "we did not create" in text, text
    states = {r["send_key"]: r["state"] for r in ledger_rows(engine)}
    bad = sending_ledger.send_key("P2", "1002", day)
    assert states.pop(bad) == sending_ledger.IMPORTING
    assert set(states.values()) == {sending_ledger.APPROVED} and len(states) == 4
    sim.admin.advance(dt.timedelta(days=1))
    sent = sim.admin.sent()
    ours = [c for c in sent["campaigns"] if c["name"] != name]
    assert len(ours) == 4 and sent["duplicates"] == 0
    audit = audit_sends(engine, {**sent, "campaigns": ours})
    assert audit.duplicates == 0 and audit.lost_recipients == 0 and audit.wrongly_mailed == 0, audit
