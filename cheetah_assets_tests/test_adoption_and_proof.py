"""Fail closed in the send protocol (issue 8, items 1, 3, 4, 9 and the ledger's error text).

* We never adopt, launch or approve a campaign we did not create (item 3).
* A ledger state is recorded only after Cheetah reads it back (item 4).
* A slow step keeps its claim; losing a claim ends that one send cleanly (item 9).
* A send recorded against another endpoint or account is never counted as done (item 1).
* Every failure's text stays in the ledger (item 10).

Each test runs against the simulator over real HTTP, as test_exactly_once.py does.
"""

from __future__ import annotations

import datetime as dt
import threading
import json
import logging
from collections import Counter

import dagster as dg
import pytest
import sqlalchemy as sa

from cheetah_assets.cheetah.client import CheetahClient
from cheetah_assets.customers.resource import CustomerDatabaseResource
from cheetah_assets.customers.schema import OutdatedTableError, send_ledger
from cheetah_assets.sending import ledger as sending_ledger
from cheetah_assets.sending import plan as sending_plan
from cheetah_assets.sending.assets import SEND_ASSETS
from cheetah_assets.sending.cancel import cancel_campaign
from cheetah_assets.sending.protocol import Sender, SendError

from .conftest import DEMO_CREDENTIALS, cheetah_resource, make_resources
from .helpers import (
    TWO_CAMPAIGNS, assert_exactly_once, audit_sends, demo_database, failure_texts, ledger_rows, run_cycle, until_done,
)

API = "/services2/api"
UTC = dt.timezone.utc


@pytest.fixture
def engine(db_url, sim, day):
    return demo_database(db_url, sim, day, customers=60, campaigns=TWO_CAMPAIGNS)


@pytest.fixture(params=[False, True], ids=["numeric-ids", "string-ids"])
def ids_variant(request, sim) -> bool:
    """Run the test against the simulator's default, then against its string-id variant."""
    if request.param:
        sim.admin.reset(seed="demo", now=sim.admin.now(), rate_limit=0, string_ids=True)
    return request.param


def _rows(engine) -> dict[str, dict]:
    return {r["send_key"]: r for r in ledger_rows(engine)}


def _key(cid: str, template: str, day: dt.date) -> str:
    return sending_ledger.send_key(cid, template, day)


def _foreign_campaign(sim, name: str, *, start: dt.datetime, template: str = "1004",
                      identifiers=("stranger@example.com",)):
    """Another system in the same account makes a campaign: its own list, template and time."""
    with cheetah_resource(sim).get_client() as client:
        data = ("EMAIL_ADDR\r\n" + "".join(f"{i}\r\n" for i in identifiers)).encode()
        import_id = client.start_import(list_name=f"someone-else-{name}", csv_bytes=data, file_name="theirs.csv")
        status = client.wait_for_import(import_id)
        return client.create_campaign(name=name, template_obj_id=template, list_id=status.list_id, start_time=start)


def _campaign(sim, camp_id):
    with cheetah_resource(sim).get_client() as client:
        return client.get_campaign(camp_id)


def _status_by_name(sim, name: str, **overrides) -> str | None:
    with cheetah_resource(sim, **overrides).get_client() as client:
        found = client.find_campaign(name)
    return found.status if found is not None else None


def _sent_to(sim) -> set[str]:
    return {r["identifier"] for c in sim.admin.sent()["campaigns"] for r in c["recipients"]}


# ------------------------------------------------------------------------------------------------
# item 3: never adopt a foreign campaign
# ------------------------------------------------------------------------------------------------
def test_a_foreign_campaign_with_our_name_is_left_untouched(sim, db_url, engine, day, ids_variant):
    """Regression: it used to be adopted, launched and approved (a stranger got its template at
    23:00, our recipients were never imported, the ledger said APPROVED)."""
    name = sending_ledger.cheetah_name("A", "1001", day)
    foreign = _foreign_campaign(sim, name, start=dt.datetime.combine(day, dt.time(23, 0), tzinfo=UTC))
    with dg.DagsterInstance.ephemeral() as instance:
        for _ in range(2):  # a re-execution cannot fix it, and does not touch the campaign either
            result = run_cycle(make_resources(sim, db_url), day, instance)
            assert not result.success
            text = " ".join(failure_texts(result))
            assert "a campaign we did not create has our name" in text, text
            assert "rename or delete it in Cheetah Messaging" in text, text
    rows = _rows(engine)
    ours = rows[_key("A", "1001", day)]
    assert ours["state"] in (sending_ledger.IMPORTING,), ours
    assert ours["camp_id"] is None and "we did not create" in (ours["error"] or "")
    # The other sends of the run went on.
    assert rows[_key("A", "1003", day)]["state"] == rows[_key("B", "1002", day)]["state"] == sending_ledger.APPROVED
    assert _campaign(sim, foreign).status == "DRAFT"  # never launched, approved or deleted
    sim.admin.advance(dt.timedelta(days=1))
    assert "stranger@example.com" not in _sent_to(sim)
    assert name not in {c["name"] for c in sim.admin.sent()["campaigns"]}
    audit = audit_sends(engine, sim.admin.sent())
    assert audit.ok and audit.campaigns_checked == 2, audit


def test_cancelling_our_send_never_deletes_a_foreign_campaign_with_our_name(sim, db_url, engine, day):
    """Regression: cancelling a send with no recorded campaign id deleted whatever had its name."""
    name = sending_ledger.cheetah_name("A", "1001", day)
    foreign = _foreign_campaign(sim, name, start=dt.datetime.combine(day, dt.time(23, 0), tzinfo=UTC))
    with dg.DagsterInstance.ephemeral() as instance:
        assert not run_cycle(make_resources(sim, db_url), day, instance).success
    now = sim.admin.now()
    with cheetah_resource(sim).get_client() as client:
        outcomes = {o.send_key: o for o in cancel_campaign(client, engine, "A", owner="cancel-run", now=lambda: now)}
    assert outcomes[_key("A", "1001", day)].action == "nothing in Cheetah"
    assert outcomes[_key("A", "1003", day)].action == "deleted"  # ours, found by its recorded id
    assert _campaign(sim, foreign).status == "DRAFT"
    assert _rows(engine)[_key("A", "1001", day)]["state"] == sending_ledger.CANCELLED


def test_a_foreign_campaign_that_takes_our_name_during_the_import_is_not_adopted(sim, db_url, engine, day, monkeypatch):
    """Regression: at create, "the name is taken" made us adopt whatever had the name."""
    name = sending_ledger.cheetah_name("B", "1002", day)
    original = CheetahClient.wait_for_import
    made: list = []
    calls = {"n": 0}

    def racing(self, import_id, **kwargs):
        status = original(self, import_id, **kwargs)
        calls["n"] += 1
        if calls["n"] == 3:  # while B/1002, the third send, imports its list
            made.append(_foreign_campaign(sim, name, start=dt.datetime.combine(day, dt.time(23, 0), tzinfo=UTC)))
        return status

    monkeypatch.setattr(CheetahClient, "wait_for_import", racing)
    with dg.DagsterInstance.ephemeral() as instance:  # sends one at a time: "the third send" is B/1002
        result = run_cycle(make_resources(sim, db_url), day, instance, concurrency=1)
    assert not result.success
    rows = _rows(engine)
    ours = rows[_key("B", "1002", day)]
    assert ours["state"] == sending_ledger.IMPORTED and ours["camp_id"] is None, ours
    assert "we did not create" in ours["error"], ours
    assert rows[_key("A", "1001", day)]["state"] == rows[_key("A", "1003", day)]["state"] == sending_ledger.APPROVED
    assert _campaign(sim, made[0]).status == "DRAFT"
    # Cancelling our send on our side looks the name up, and leaves the foreign campaign alone.
    now = sim.admin.now()
    with cheetah_resource(sim).get_client() as client:
        (outcome,) = cancel_campaign(client, engine, "B", owner="cancel-run", now=lambda: now)
    assert outcome.action == "nothing in Cheetah" and _campaign(sim, made[0]).status == "DRAFT"
    assert "we did not create has our name" in _rows(engine)[_key("B", "1002", day)]["error"]


def test_a_create_reply_naming_another_campaign_is_not_adopted(sim, db_url, engine, day, ids_variant):
    """Regression: a create reply's campId was recorded as ours whatever campaign it named."""
    other = _foreign_campaign(sim, "SOMEONE-ELSES-CAMPAIGN", start=dt.datetime.combine(day, dt.time(23, 0), tzinfo=UTC))
    # Our create is applied, but the reply names the other campaign.
    sim.admin.add_fault(method="POST", path=f"{API}/EmailCampaign", kind="malformed", status=200,
                        body=json.dumps({"campId": other}), times=1)
    with dg.DagsterInstance.ephemeral() as instance:
        until_done(make_resources(sim, db_url), day, instance, attempts=4)
    assert all(str(r["camp_id"]) != str(other) for r in ledger_rows(engine))
    assert _campaign(sim, other).status == "DRAFT"
    assert_exactly_once(sim, engine)


def test_never_launched_while_the_accepted_count_is_unknown(sim, db_url, engine, day):
    """Regression: with rows_accepted None the list-size check was skipped and the campaign launched."""
    with dg.DagsterInstance.ephemeral() as instance:
        dg.materialize(SEND_ASSETS[:3], partition_key=day.isoformat(), resources=make_resources(sim, db_url),
                       instance=instance)
    plan = [r for r in sending_plan.load_plan(engine, day) if r.status == sending_plan.READY]
    row = plan[0]
    now = sim.admin.now()
    with cheetah_resource(sim).get_client() as client:
        sender = Sender(client=client, engine=engine, owner="run-1", now=lambda: now, step_backoff_seconds=0.01)
        sender.ledger.ensure(campaign_id=row.campaign_id, template_id=row.template_id, send_date=day,
                             list_key=row.list_key, send_at=row.send_at)

        class Stop(Exception):
            pass

        def stop_at_launch(_key, step):
            if step == "launch":
                raise Stop

        sender.on_step = stop_at_launch
        with pytest.raises(Stop):
            sender.send(row.send_key)
        with engine.begin() as conn:  # as an old run (or a hand edit) would have left it
            conn.execute(send_ledger.update().where(send_ledger.c.send_key == row.send_key).values(rows_accepted=None))
        sender.on_step = None
        with pytest.raises(SendError, match="accepted"):
            sender.send(row.send_key)
    got = sender.ledger.get(row.send_key)
    assert got is not None and got.state == sending_ledger.CREATED and "accepted" in (got.error or "")
    assert _campaign(sim, got.camp_id).status == "DRAFT"


# ------------------------------------------------------------------------------------------------
# item 4: a state is recorded only after Cheetah confirms it
# ------------------------------------------------------------------------------------------------
def test_launch_acknowledged_but_not_applied_is_never_recorded(sim, db_url, engine, day, ids_variant):
    """Regression: a 200 to LAUNCH that was not applied left the ledger APPROVED; nothing went out."""
    # Every PUT (LAUNCH, APPROVE) is answered 200 and not applied.
    sim.admin.add_fault(method="PUT", path=f"{API}/EmailCampaign", kind="unapplied", times=None)
    with dg.DagsterInstance.ephemeral() as instance:
        result = run_cycle(make_resources(sim, db_url), day, instance)
        assert not result.success
        rows = ledger_rows(engine)
        assert {r["state"] for r in rows} == {sending_ledger.CREATED}, [(r["send_key"], r["state"]) for r in rows]
        assert all("LAUNCH" in (r["error"] or "") and "DRAFT" in r["error"] for r in rows), [r["error"] for r in rows]
        assert {_campaign(sim, json.loads(r["camp_id"])).status for r in rows} == {"DRAFT"}
        sim.admin.clear_faults()
        until_done(make_resources(sim, db_url), day, instance, attempts=4)  # a re-execution resumes them
    assert_exactly_once(sim, engine)


def test_approve_acknowledged_but_not_applied_is_never_recorded(sim, db_url, engine, day):
    """Regression: a 200 to APPROVE that was not applied was recorded as APPROVED."""
    # The first PUT (A/1001's LAUNCH) is applied; every later one is answered 200, not applied.
    # One campaign at a time: the premise is the order of the PUTs (the fault suite has this
    # fault under parallel sends).
    sim.admin.add_fault(method="PUT", path=f"{API}/EmailCampaign", kind="unapplied", times=None, after=1)
    with dg.DagsterInstance.ephemeral() as instance:
        result = run_cycle(make_resources(sim, db_url), day, instance, concurrency=1)
        assert not result.success
        rows = _rows(engine)
        first = rows[_key("A", "1001", day)]
        assert first["state"] == sending_ledger.LAUNCHED, first
        assert "APPROVE" in first["error"] and "LAUNCHED" in first["error"], first["error"]
        assert _campaign(sim, json.loads(first["camp_id"])).status == "LAUNCHED"
        assert not any(r["state"] == sending_ledger.APPROVED for r in rows.values())
        sim.admin.clear_faults()
        until_done(make_resources(sim, db_url), day, instance, attempts=4)
    assert_exactly_once(sim, engine)


# ------------------------------------------------------------------------------------------------
# item 9: leases
# ------------------------------------------------------------------------------------------------
def test_a_slow_import_keeps_its_claim(sim, db_url, engine, day, monkeypatch):
    """Regression: an import slower than the lease let a second run take the send over, and the
    first then crashed with LostClaim (a RuntimeError that escaped the step)."""
    with dg.DagsterInstance.ephemeral() as instance:
        dg.materialize(SEND_ASSETS[:3], partition_key=day.isoformat(), resources=make_resources(sim, db_url),
                       instance=instance)
    row = next(r for r in sending_plan.load_plan(engine, day) if r.status == sending_plan.READY)
    clock = [sim.admin.now()]
    ledger = sending_ledger.Ledger(engine, lambda: clock[0])
    ledger.ensure(campaign_id=row.campaign_id, template_id=row.template_id, send_date=day, list_key=row.list_key,
                  send_at=row.send_at)
    second_run: list = []
    original = CheetahClient.get_import

    def slow(self, import_id):
        clock[0] += dt.timedelta(minutes=7)  # each poll of the import takes seven minutes
        second_run.append(ledger.claim(row.send_key, "run-2"))
        return original(self, import_id)

    monkeypatch.setattr(CheetahClient, "get_import", slow)
    with cheetah_resource(sim).get_client() as client:
        sender = Sender(client=client, engine=engine, owner="run-1", now=lambda: clock[0], step_backoff_seconds=0.01)
        outcome = sender.send(row.send_key)
    assert len(second_run) >= 2 and clock[0] - sim.admin.now() > sending_ledger.DEFAULT_LEASE
    assert second_run == [None] * len(second_run)  # the claim was renewed while the import ran
    assert outcome.state == sending_ledger.APPROVED
    assert _status_by_name(sim, outcome.cheetah_name) == "APPROVED"


def test_a_claim_lost_mid_send_ends_that_send_cleanly(sim, db_url, engine, day, monkeypatch):
    """Regression: LostClaim escaped the step's error handling: the step crashed and the other
    sends of the run were never attempted."""
    original = CheetahClient.wait_for_import
    stolen: list[str] = []
    once = threading.Lock()  # campaigns are sent in parallel: one send is taken over, once

    def taken_over(self, import_id, **kwargs):
        with once:
            if not stolen:
                with engine.begin() as conn:  # another run takes a send over meanwhile
                    key = conn.execute(sa.select(send_ledger.c.send_key).where(
                        send_ledger.c.state == sending_ledger.IMPORTING).order_by(send_ledger.c.send_key)).scalar()
                    conn.execute(send_ledger.update().where(send_ledger.c.send_key == key).values(
                        claimed_by="other-run", claim_expires_at=dt.datetime(2999, 1, 1, tzinfo=UTC)))
                stolen.append(key)
        return original(self, import_id, **kwargs)

    monkeypatch.setattr(CheetahClient, "wait_for_import", taken_over)
    with dg.DagsterInstance.ephemeral() as instance:
        result = run_cycle(make_resources(sim, db_url), day, instance)
    assert not result.success
    (failure,) = failure_texts(result)
    assert failure.startswith("campaign_sends: ") and "taken over by another run" in failure, failure
    assert "LostClaim" not in failure
    rows = _rows(engine)
    keys = {_key("A", "1001", day), _key("A", "1003", day), _key("B", "1002", day)}
    assert len(stolen) == 1 and stolen[0] in keys and f"send {stolen[0]} was taken over" in failure
    assert rows[stolen[0]]["state"] == sending_ledger.IMPORTING and rows[stolen[0]]["claimed_by"] == "other-run"
    assert all(rows[k]["state"] == sending_ledger.APPROVED for k in keys - set(stolen))  # the others went on
    assert _status_by_name(sim, rows[stolen[0]]["cheetah_name"]) is None  # no campaign, no duplicate


# ------------------------------------------------------------------------------------------------
# item 1: each send records the endpoint and account it went to
# ------------------------------------------------------------------------------------------------
SECOND_ACCOUNT = dict(consumer_key="second-key", consumer_secret="second-secret", client_id="second-client",
                      cust_id="5678", folder_id="4343")


def _hand_over_in_first_account(sim, db_url, engine, day, instance) -> dict[str, dict]:
    """A second account (Cust_ID 5678) added to the simulator, then the day in the first (Cust_ID
    1234), one send at a time: A's two templates APPROVED there, B's create refused once, so B is
    IMPORTED there (its list only, no campaign)."""
    sim.admin.add_account(consumerKey="second-key", consumerSecret="second-secret", clientId="second-client",
                          custId=5678, folder={"id": 4343, "name": "Optimove", "parentId": 1})
    sim.admin.add_fault(method="POST", path=f"{API}/EmailCampaign", kind="status", status=400, times=1, after=2)
    assert not run_cycle(make_resources(sim, db_url), day, instance, concurrency=1).success
    first = _rows(engine)
    assert {k: r["state"] for k, r in first.items()} == {
        _key("A", "1001", day): "APPROVED", _key("A", "1003", day): "APPROVED", _key("B", "1002", day): "IMPORTED"}
    assert {(r["cust_id"], r["endpoint"]) for r in first.values()} == {("1234", sim.url)}
    return first


def _went_out(sim) -> dict[str, int]:
    """How many campaigns of each name went out, in any account, once the day is over."""
    sim.admin.advance(dt.timedelta(days=1))
    return dict(Counter(c["name"] for c in sim.admin.sent(recipients=False)["campaigns"]))


def test_a_send_handed_over_in_another_account_is_refused_not_sent_twice(sim, db_url, engine, day):
    """Regression: after the settings changed to another account (Cust_ID 1234 -> 5678), sends
    APPROVED in the first were started afresh and sent again in the second (this test failed
    there: the second run succeeded and each of A's campaigns went out twice). Now each is refused
    with the old account and what to do, the old campaign is left alone, and the run's other send
    (B: only its list had reached the first account) is sent in the new one."""
    a1, a3, b = _key("A", "1001", day), _key("A", "1003", day), _key("B", "1002", day)
    with dg.DagsterInstance.ephemeral() as instance:
        first = _hand_over_in_first_account(sim, db_url, engine, day, instance)
        result = run_cycle(make_resources(sim, db_url, **SECOND_ACCOUNT), day, instance)
    assert not result.success
    (failure,) = failure_texts(result)
    rows = _rows(engine)
    for key in (a1, a3):
        r = rows[key]
        assert (r["state"], r["cust_id"], r["camp_id"]) == ("APPROVED", "1234", first[key]["camp_id"]), r
        assert _status_by_name(sim, r["cheetah_name"], **SECOND_ACCOUNT) is None  # nothing in the new account
        assert _status_by_name(sim, r["cheetah_name"]) == "APPROVED"  # the old account's, untouched
        said = (f"Send {key} stopped: it was handed over in another Cheetah Messaging account "
                f"(Cust_ID 1234 at {sim.url}), where its campaign {r['cheetah_name']} (Cheetah id {r['camp_id']}) "
                "was approved, so it may go out from there at ")
        assert said in failure and said in r["error"], r["error"]
        assert "Re-executing will not help" in r["error"] and "restore the old account's settings" in r["error"]
        assert f'ops: {{campaign_sends: {{config: {{release_sends: ["{key}"]}}}}}}' in r["error"]
    assert "2 of 3 sends did not complete" in failure and "Re-execute to resume" not in failure, failure
    assert "2 of them need a fix first" in failure
    assert not any(secret in failure for secret in ("second-secret", DEMO_CREDENTIALS["consumer_secret"]))
    assert rows[b]["state"] == "APPROVED" and rows[b]["cust_id"] == "5678", rows[b]  # the other send went on
    assert "1234" in rows[b]["history"] and "IMPORTED" in rows[b]["history"]
    assert _status_by_name(sim, rows[b]["cheetah_name"], **SECOND_ACCOUNT) == "APPROVED"
    held = {p.send_key: p for p in sending_plan.load_plan(engine, day)}
    assert {k: held[k].status for k in (a1, a3)} == {a1: sending_plan.INVALID, a3: sending_plan.INVALID}
    assert held[a1].reason.startswith("handed over in another Cheetah Messaging account (Cust_ID 1234")
    assert _went_out(sim) == {rows[k]["cheetah_name"]: 1 for k in (a1, a3, b)}  # each once, in one account


def test_a_released_send_is_started_afresh_in_the_new_account_and_only_that_one(sim, db_url, engine, day):
    """The release: the operator deletes A/1001's campaign in the old account and names it in
    ``release_sends``; it is started afresh and sent in the new account, the release is logged and
    kept in its history. A/1003, not released, stays refused; an unknown key is reported."""
    a1, a3 = _key("A", "1001", day), _key("A", "1003", day)
    with dg.DagsterInstance.ephemeral() as instance:
        first = _hand_over_in_first_account(sim, db_url, engine, day, instance)
        assert not run_cycle(make_resources(sim, db_url, **SECOND_ACCOUNT), day, instance).success  # refused
        with cheetah_resource(sim).get_client() as old:  # the operator, in the old account's UI
            old.delete_campaign(first[a1]["camp_id"])
        result = run_cycle(make_resources(sim, db_url, **SECOND_ACCOUNT), day, instance,
                           release_sends=[a1, "NOPE/1/2020-01-01"])
        logged = [e.user_message for e in instance.all_logs(result.run_id) if e.user_message]
    assert not result.success  # A/1003 is still refused
    (failure,) = failure_texts(result)
    assert f"Send {a3} stopped" in failure and f"Send {a1}" not in failure and "1 of 2 sends" in failure, failure
    rows = _rows(engine)
    r = rows[a1]
    assert (r["state"], r["cust_id"], r["error"]) == ("APPROVED", "5678", None), r
    assert r["camp_id"] != first[a1]["camp_id"]
    assert "it reached APPROVED" in r["history"] and "released by run" in r["history"], r["history"]
    assert "stopped: it was handed over" not in r["history"]  # the refusal is not copied into it
    assert _status_by_name(sim, r["cheetah_name"], **SECOND_ACCOUNT) == "APPROVED"
    assert _status_by_name(sim, r["cheetah_name"]) == "CANCELLED"
    assert rows[a3]["state"] == "APPROVED" and rows[a3]["cust_id"] == "1234"
    assert any(f"{a1}: released by the run config (release_sends)" in m and "Cust_ID 1234" in m for m in logged), logged
    assert any("release_sends names NOPE/1/2020-01-01" in m for m in logged), logged
    b = rows[_key("B", "1002", day)]["cheetah_name"]
    assert _went_out(sim) == {r["cheetah_name"]: 1, rows[a3]["cheetah_name"]: 1, b: 1}


# ------------------------------------------------------------------------------------------------
# item 10: every failure's text is kept in the ledger; recoveries are logged
# ------------------------------------------------------------------------------------------------
def test_a_failure_that_is_not_retried_keeps_its_text_in_the_ledger(sim, db_url, engine, day):
    """Regression: only retried (transient) failures left their text in the ledger's error."""
    sim.admin.add_fault(method="POST", path=f"{API}/EmailCampaign", kind="status", status=400, times=1)
    with dg.DagsterInstance.ephemeral() as instance:  # sends one at a time: the first create is A/1001's
        result = run_cycle(make_resources(sim, db_url), day, instance, concurrency=1)
        assert not result.success
        failed = _rows(engine)[_key("A", "1001", day)]
        assert failed["state"] == sending_ledger.IMPORTED and "refused" in (failed["error"] or ""), failed
        assert "Re-executing alone will not help: fix what Cheetah names" in failed["error"]
        until_done(make_resources(sim, db_url), day, instance, attempts=4)
    assert_exactly_once(sim, engine)


def test_a_lost_reply_recovered_by_a_look_up_logs_one_info_line(sim, db_url, engine, day, caplog):
    sim.admin.add_fault(method="POST", path=f"{API}/EmailCampaign", kind="apply_then_drop", times=1)
    with dg.DagsterInstance.ephemeral() as instance:
        dg.materialize(SEND_ASSETS[:3], partition_key=day.isoformat(), resources=make_resources(sim, db_url),
                       instance=instance)
    row = next(r for r in sending_plan.load_plan(engine, day) if r.status == sending_plan.READY)
    now = sim.admin.now()
    logger = logging.getLogger("test.recovery")
    with cheetah_resource(sim, max_retries=0).get_client() as client, caplog.at_level(logging.INFO, "test.recovery"):
        sender = Sender(client=client, engine=engine, owner="run-1", now=lambda: now, logger=logger,
                        step_backoff_seconds=0.01)
        sender.ledger.ensure(campaign_id=row.campaign_id, template_id=row.template_id, send_date=day,
                             list_key=row.list_key, send_at=row.send_at)
        assert sender.send(row.send_key).state == sending_ledger.APPROVED
    lines = [r.getMessage() for r in caplog.records if r.name == "test.recovery" and "recovered" in r.getMessage()]
    assert len(lines) == 1, lines


# ------------------------------------------------------------------------------------------------
# item 8 (storage): ids are opaque text; an old ledger table fails clearly
# ------------------------------------------------------------------------------------------------
def test_an_old_ledger_table_fails_with_a_clear_message(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE cheetah_send_ledger (send_key VARCHAR(250) PRIMARY KEY, campaign_id VARCHAR(64), "
            "template_id VARCHAR(64), send_date DATE, list_key VARCHAR(200), cheetah_name VARCHAR(200), "
            "state VARCHAR(16), send_at DATETIME, rows_in_list INTEGER, list_id INTEGER, rows_accepted INTEGER, "
            "rows_rejected INTEGER, camp_id INTEGER, claimed_by VARCHAR(100), claim_expires_at DATETIME, "
            "error TEXT, created_at DATETIME, updated_at DATETIME)"
        )
    with pytest.raises(OutdatedTableError, match="cheetah_send_ledger") as info:
        CustomerDatabaseResource(url=url).ensure_tables()
    assert "endpoint" in str(info.value) and "cust_id" in str(info.value)
