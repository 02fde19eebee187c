"""A send recorded against another Cheetah account (the settings changed): started afresh only
when nothing there can go out; refused, until the operator releases it, when its campaign exists
there (``sending/elsewhere.py``).

* The protocol's decision, swept over every ledger state, the account the row names (none, this
  one, this one on another loopback port, another Cust_ID, another endpoint), the send time and
  the release, on SQLite and PostgreSQL, with a client that fails the test if it is called where
  nothing may be called (:func:`test_the_decision_for_every_state_and_account`).
* The plan never makes such a send READY, whatever ``send_late`` says.
* Against the simulator, a campaign created or launched in the old account is refused and left as
  it is there (the APPROVED case, the release and the run's other sends are in
  ``test_adoption_and_proof.py``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
from types import SimpleNamespace

import dagster as dg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cheetah_assets.cheetah.records import DataMap, DataMapField
from cheetah_assets.customers import seed
from cheetah_assets.customers.resource import CustomerDatabaseResource
from cheetah_assets.customers.schema import create_demo_tables, create_integration_tables
from cheetah_assets.sending import ledger as L
from cheetah_assets.sending import plan as sending_plan
from cheetah_assets.sending.catalog import CatalogEntry
from cheetah_assets.sending.errors import HandedOverElsewhere
from cheetah_assets.sending.protocol import Sender

from .conftest import cheetah_resource, make_resources
from .helpers import TWO_CAMPAIGNS, demo_database, demo_tables_engine, failure_texts, ledger_rows, run_cycle

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 12, 3, 7, 0, tzinfo=UTC)
DAY = NOW.date()
THIS = L.Account("http://127.0.0.1:8765", "1234")
#: What a ledger row may name: nothing, this account (also on another loopback port), another one.
ROW_ACCOUNTS = {
    "none": None,
    "this": THIS,
    "this, another port": L.Account("http://localhost:49152", "1234"),
    "another Cust_ID": L.Account("http://127.0.0.1:8765", "5678"),
    "another endpoint": L.Account("https://api.old-region.example.com", "1234"),
}
STATES = sorted(L.TERMINAL | L.TOUCHED_CHEETAH | {L.PENDING})
SECOND_ACCOUNT = dict(consumer_key="second-key", consumer_secret="second-secret", client_id="second-client",
                      cust_id="5678", folder_id="4343")


class Called(Exception):
    """The client was called: the send went on with Cheetah (here: for this account's own row)."""


class NoCalls:
    """A client for :data:`THIS` that raises :class:`Called` on any call: a refused send, and a
    re-based one without recipients (PENDING, then EMPTY), never reach it."""

    settings = SimpleNamespace(endpoint=THIS.endpoint, cust_id=THIS.cust_id, folder_id="4242")

    def __getattr__(self, name):
        raise Called(name)


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request, tmp_path_factory):
    with demo_tables_engine(request.param, tmp_path_factory, "account_switch") as eng:
        yield eng


_ids = itertools.count()


def _recorded(engine, state: str, account: L.Account | None, send_at: dt.datetime) -> L.LedgerRow:
    """A new send whose row is at ``state`` against ``account``, with the ids a row at that state has."""
    book = L.Ledger(engine, lambda: NOW)
    row = book.ensure(campaign_id=f"S{next(_ids)}", template_id="1001", send_date=DAY,
                      list_key=f"S-none/{DAY}", send_at=send_at)  # no frozen list: a re-based send ends EMPTY
    assert book.claim(row.send_key, "earlier-run") is not None
    ids = {"list_id": 9001} if state not in (L.PENDING, L.IMPORTING) else {}
    if state in L.MAY_GO_OUT:
        ids["camp_id"] = 5001
    where = {"endpoint": account.endpoint, "cust_id": account.cust_id} if account else {}
    book.advance(row.send_key, "earlier-run", state, **ids, **where)
    book.release(row.send_key, "earlier-run")
    return book.get(row.send_key)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(state=st.sampled_from(STATES), where=st.sampled_from(sorted(ROW_ACCOUNTS)), released=st.booleans(),
       minutes=st.sampled_from([-90, 30, 600]))
def test_the_decision_for_every_state_and_account(engine, state, where, released, minutes):
    """Refused exactly when the row names another account (by identity: every loopback port is
    one) and its campaign may go out there (CREATED, LAUNCHED, APPROVED), unless released: then
    the row is left exactly as it was, the refusal in its error. Started afresh (history kept,
    the release noted) for another account otherwise; done or resumed for this one."""
    account = ROW_ACCOUNTS[where]
    before = _recorded(engine, state, account, NOW + dt.timedelta(minutes=minutes))
    key = before.send_key
    sender = Sender(client=NoCalls(), engine=engine, owner="this-run", now=lambda: NOW,
                    released=frozenset({key}) if released else frozenset())
    elsewhere = account is not None and not account.same_as(THIS)
    if elsewhere and state in L.MAY_GO_OUT and not released:
        with pytest.raises(HandedOverElsewhere) as info:
            sender.send(key)
        after = L.Ledger(engine, lambda: NOW).get(key)
        assert after == dataclasses.replace(before, error=str(info.value)), after  # nothing else changed
        said = str(info.value)
        assert said.startswith(f"Send {key} stopped: it was handed over in another Cheetah Messaging account "
                               f"({account.describe()})"), said
        assert "Re-executing will not help" in said and f'release_sends: ["{key}"]' in said
        assert info.value.permanent
    elif elsewhere:
        outcome = sender.send(key)
        after = L.Ledger(engine, lambda: NOW).get(key)
        assert outcome.state == after.state == L.EMPTY and after.account is None and after.camp_id is None, after
        assert f"sent to another account before ({account.describe()}): it reached {state}" in after.history
        assert ("released by run this-run" in after.history) is (state in L.MAY_GO_OUT), after.history
    elif state in L.TERMINAL:
        assert sender.send(key).note == "already done"
        assert L.Ledger(engine, lambda: NOW).get(key) == before
    elif state == L.PENDING:
        assert sender.send(key).state == L.EMPTY  # nothing frozen: nothing to send
    else:
        with pytest.raises(Called):  # resumed in this account, with its own ids: never re-based
            sender.send(key)
        after = L.Ledger(engine, lambda: NOW).get(key)
        assert (after.state, after.camp_id, after.history, after.claimed_by) == (state, before.camp_id, None, None)


@pytest.mark.parametrize("state", sorted(L.MAY_GO_OUT))
def test_the_ledger_re_bases_a_send_that_may_go_out_elsewhere_only_once_released(tmp_path, state):
    engine = CustomerDatabaseResource(url=f"sqlite:///{tmp_path / 'l.db'}").get_engine(create=True)
    create_integration_tables(engine)
    row = _recorded(engine, state, ROW_ACCOUNTS["another Cust_ID"], NOW + dt.timedelta(hours=2))
    book = L.Ledger(engine, lambda: NOW)
    assert book.claim(row.send_key, "run-1") is not None
    with pytest.raises(ValueError, match="only once released"):
        book.rebase(row.send_key, "run-1", THIS)
    assert book.get(row.send_key).state == state
    assert book.rebase(row.send_key, "run-1", THIS, released="the operator").state == L.PENDING


# ------------------------------------------------------------------------------------------------
# the plan
# ------------------------------------------------------------------------------------------------
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(state=st.sampled_from(STATES), minutes=st.integers(min_value=-300, max_value=900), send_late=st.booleans())
def test_the_plan_never_makes_a_send_held_by_another_account_ready(tmp_path_factory, state, minutes, send_late):
    """A send whose campaign may go out in another account is held (INVALID, the reason naming
    that account and the release), or SENT once an APPROVED one's time has passed; never READY,
    not even with send_late. One of another account that nothing there can send is READY before
    its time, as before (it is started afresh for this one)."""
    send_at = dt.datetime(2026, 12, 3, 9, tzinfo=UTC)
    now = send_at + dt.timedelta(minutes=minutes)
    engine = CustomerDatabaseResource(url=f"sqlite:///{tmp_path_factory.mktemp('plan') / 'c.db'}").get_engine(create=True)
    create_demo_tables(engine)
    create_integration_tables(engine)
    seed.add_campaign(engine, campaign_id="C1", send_date=DAY, send_time="09:00", time_zone="UTC",
                      template_ids="1002", target_group="all_customers")
    book = L.Ledger(engine, lambda: send_at - dt.timedelta(hours=3))
    row = book.ensure(campaign_id="C1", template_id="1002", send_date=DAY, list_key="C1/2026-12-03", send_at=send_at)
    assert book.claim(row.send_key, "run-1") is not None
    old = ROW_ACCOUNTS["another endpoint"]
    book.advance(row.send_key, "run-1", state, endpoint=old.endpoint, cust_id=old.cust_id)
    book.release(row.send_key, "run-1")
    data_map = DataMap(id=77, name="m", fields=(DataMapField("EMAIL_ADDR", "email", "text", True),))
    (planned,) = sending_plan.plan_day(
        engine, DAY, catalog={"1002": CatalogEntry("1002", "Welcome", ())}, data_map=data_map,
        customer_columns={"email"}, now=now, send_late=send_late, account=THIS,
    )
    if state in L.MAY_GO_OUT:
        went_out = state == L.APPROVED and now >= send_at
        assert planned.status == (sending_plan.SENT if went_out else sending_plan.INVALID), planned
        assert sending_plan.held(planned) is not went_out
        assert old.describe() in planned.reason and (went_out or "release_sends" in planned.reason), planned
    else:
        assert not sending_plan.held(planned)
        if now < send_at:
            assert planned.status == sending_plan.READY, planned


# ------------------------------------------------------------------------------------------------
# against the simulator: the old account's campaign created, or launched
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("state, after, there", [(L.CREATED, 0, "DRAFT"), (L.LAUNCHED, 1, "LAUNCHED")])
def test_a_campaign_created_or_launched_in_the_old_account_is_refused_and_left_there(
    sim, db_url, day, state, after, there
):
    """The first account's campaign of A/1001 stops at ``state`` (its LAUNCH, or its APPROVE,
    refused once); after the switch to Cust_ID 5678 it is refused (it may still be launched or
    approved there), the old campaign is left as it is, and the other sends, APPROVED in the
    first account, are refused too: nothing at all is created in the new account."""
    engine = demo_database(db_url, sim, day, customers=40, campaigns=TWO_CAMPAIGNS)
    sim.admin.add_account(consumerKey="second-key", consumerSecret="second-secret", clientId="second-client",
                          custId=5678, folder={"id": 4343, "name": "Optimove", "parentId": 1})
    sim.admin.add_fault(method="PUT", path="/services2/api/EmailCampaign", kind="status", status=400, times=1,
                        after=after)
    with dg.DagsterInstance.ephemeral() as instance:
        assert not run_cycle(make_resources(sim, db_url), day, instance, concurrency=1).success
        first = {r["send_key"]: r for r in ledger_rows(engine)}
        key = L.send_key("A", "1001", day)
        assert first[key]["state"] == state, first[key]
        result = run_cycle(make_resources(sim, db_url, **SECOND_ACCOUNT), day, instance)
    assert not result.success
    (failure,) = failure_texts(result)
    assert f"Send {key} stopped: it was handed over in another Cheetah Messaging account (Cust_ID 1234" in failure
    assert "3 of 3 sends did not complete" in failure, failure
    rows = {r["send_key"]: r for r in ledger_rows(engine)}
    assert {k: (r["state"], r["cust_id"], r["camp_id"]) for k, r in rows.items()} == {
        k: (r["state"], r["cust_id"], r["camp_id"]) for k, r in first.items()}
    with cheetah_resource(sim, **SECOND_ACCOUNT).get_client() as new, cheetah_resource(sim).get_client() as old:
        assert all(new.find_campaign(r["cheetah_name"]) is None for r in rows.values())
        assert old.find_campaign(rows[key]["cheetah_name"]).status == there
