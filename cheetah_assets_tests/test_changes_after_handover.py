"""Issue 9 item 3: a handed-over campaign whose time, templates or target group change before its
send time is deleted in Cheetah and re-created (revision N+1), or refused loudly; never sent with
stale data in silence. Read back from the simulator: the old campaign never goes out, the new one
goes out once."""

from __future__ import annotations

import datetime as dt
import string
from zoneinfo import ZoneInfo

import dagster as dg
import pytest
import sqlalchemy as sa
from hypothesis import given, settings, strategies as st

from cheetah_assets.customers import schema, seed
from cheetah_assets.customers.resource import CustomerDatabaseResource
from cheetah_assets.customers.schema import campaign_schedule, customers, send_ledger, target_group_members
from cheetah_assets.sending import ledger, plan
from cheetah_assets.sending.cancel import cancel_campaign
from cheetah_assets.sending.changes import reconcile_changes, refreezer
from cheetah_assets.sending.fingerprint import changed, differences, fingerprint, handover_change, parse
from cheetah_assets.sending.protocol import Sender

from cheetah_assets.sending.assets import SEND_ASSETS, SEND_CHECKS

from .conftest import cheetah_resource, make_resources
from .helpers import CAMPAIGN_X, audit_sends, demo_database, failure_messages, ledger_rows, run_cycle
from .pg import fresh_postgres_database

CAMPAIGN_PATH = "/services2/api/EmailCampaign"


# ------------------------------------------------------------------------------------------------
# pure: fingerprints and names
# ------------------------------------------------------------------------------------------------
ids = st.text(alphabet=string.ascii_letters + string.digits + "_-/ é", min_size=1, max_size=12)
instants = st.datetimes(
    min_value=dt.datetime(2020, 1, 1), max_value=dt.datetime(2035, 1, 1), timezones=st.just(dt.timezone.utc)
).map(lambda d: d.replace(microsecond=0))
handovers = st.tuples(st.none() | instants, st.lists(ids, max_size=4).map(tuple), ids)


@given(handovers, st.sampled_from(["Pacific/Kiritimati", "Pacific/Pago_Pago", "Asia/Kolkata", "UTC"]))
def test_fingerprint_is_the_instant_not_its_zone_and_round_trips(h, zone):
    at, templates, group = h
    fp = fingerprint(at, templates, group)
    local = at.astimezone(ZoneInfo(zone)) if at is not None else None
    assert fingerprint(local, list(templates), group) == fp
    assert parse(fp) == (at, templates, group)
    assert not changed(fp, fp) and differences(fp, fp) == []


@given(handovers, handovers)
def test_fingerprints_differ_exactly_when_the_handover_does(a, b):
    fa, fb = fingerprint(*a), fingerprint(*b)
    assert (fa == fb) == (a == b)
    assert changed(fa, fb) == (a != b)
    said = differences(fa, fb)
    assert bool(said) == (a != b)
    assert any(s.startswith("send time") for s in said) == (a[0] != b[0])
    assert any(s.startswith("templates") for s in said) == (a[1] != b[1])
    assert any(s.startswith("target group") for s in said) == (a[2] != b[2])
    assert not changed(None, fb)  # a send handed over before fingerprints were recorded


def test_a_time_change_reads_as_one_phrase():
    d = dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.timezone.utc)
    old, new = fingerprint(d, ["1002"], "all"), fingerprint(d.replace(hour=9, minute=30), ["1002"], "all")
    assert differences(old, new) == ["send time 08:00 -> 09:30 UTC"]


def _row(state, fp, send_at=None):
    return ledger.LedgerRow(
        send_key="X/1002/2026-11-23", campaign_id="X", template_id="1002", send_date=dt.date(2026, 11, 23),
        list_key="X/2026-11-23", cheetah_name="OPT-X-1002-20261123", state=state, send_at=send_at, rows_in_list=None,
        list_id=None, rows_accepted=None, rows_rejected=None, camp_id=None, claimed_by=None, claim_expires_at=None,
        error=None, fingerprint=fp,
    )


@given(handovers, handovers, st.sampled_from(sorted(ledger.TOUCHED_CHEETAH | {"PENDING", "MISSED", "EMPTY", "CANCELLED"})))
def test_the_plan_sees_a_change_only_of_a_handed_over_send(a, b, state):
    """What the plan calls to never report a changed handed-over send as SENT."""
    said = handover_change(_row(state, fingerprint(*a)), *b)
    handed_over = state in ledger.TOUCHED_CHEETAH and b[0] is not None
    assert (said is not None) == (handed_over and a != b)
    if said is not None:
        assert said == "; ".join(differences(fingerprint(*a), fingerprint(*b)))
    assert handover_change(_row(state, None), *b) is None


names = st.tuples(ids, ids, st.dates(dt.date(2020, 1, 1), dt.date(2035, 1, 1)), st.integers(0, 10_000))


@settings(max_examples=300)
@given(names, names)
def test_names_stay_distinct_and_safe_across_revisions(a, b):
    na, nb = ledger.cheetah_name(*a), ledger.cheetah_name(*b)
    assert (na == nb) == (a == b)
    for n in (na, nb):
        assert len(n) <= ledger.MAX_NAME_LENGTH and set(n) <= set(string.ascii_letters + string.digits + "_-")
    if a[3] == 0:
        assert na == ledger.cheetah_name(*a[:3])  # revision 0 keeps the name it always had


# ------------------------------------------------------------------------------------------------
# end to end on the simulator
# ------------------------------------------------------------------------------------------------
@pytest.fixture
def engine(db_url, sim, day):
    return demo_database(db_url, sim, day, customers=60, campaigns=CAMPAIGN_X)


def _reschedule(engine, **values):
    with engine.begin() as conn:
        conn.execute(campaign_schedule.update().where(campaign_schedule.c.campaign_id == "X").values(**values))


def _sent(sim):
    """Every campaign that went out, after moving the simulator a day on."""
    sim.admin.advance(dt.timedelta(days=1))
    return sim.admin.sent()


def _sim_status(sim, name):
    with cheetah_resource(sim).get_client() as client:
        campaign = client.find_campaign(name)
    return campaign.status if campaign else None


def _at(day, hh, mm=0):
    return dt.datetime.combine(day, dt.time(hh, mm), tzinfo=dt.timezone.utc)


@pytest.fixture(params=["sqlite", "postgresql"])
def any_db(request, db_url, sim, day):
    """(url, engine) of a demo database with campaign X at 11:00 UTC: SQLite, then PostgreSQL."""
    if request.param == "sqlite":
        yield db_url, demo_database(db_url, sim, day, customers=60, campaigns=CAMPAIGN_X)
        return
    with fresh_postgres_database() as url:
        yield url, demo_database(url, sim, day, customers=60, campaigns=CAMPAIGN_X)


def test_a_time_change_after_handover_goes_out_once_at_the_new_time(sim, any_db, day):
    """Regression: before the fix the second run found the send APPROVED (plan: SENT) and did
    nothing, so Cheetah sent the stale campaign at 11:00."""
    db_url, engine = any_db
    res = make_resources(sim, db_url)
    old_name = ledger.cheetah_name("X", "1002", day)
    with dg.DagsterInstance.ephemeral() as instance:
        assert run_cycle(res, day, instance).success
        (row,) = ledger_rows(engine)
        assert row["state"] == "APPROVED" and row["cheetah_name"] == old_name and row["fingerprint"]
        _reschedule(engine, send_time="12:30")
        result = run_cycle(res, day, instance)
        assert result.success, failure_messages(result)
    # The run's plan (made before campaign_sends re-created it) did not call the stale send SENT.
    (planned,) = plan.load_plan(engine, day)
    assert planned.status == plan.READY and planned.send_at == _at(day, 12, 30)
    assert "changed after hand-over (send time 11:00 -> 12:30 UTC)" in planned.reason
    (row,) = ledger_rows(engine)
    new_name = ledger.cheetah_name("X", "1002", day, 1)
    assert (row["state"], row["revision"], row["cheetah_name"]) == ("APPROVED", 1, new_name)
    assert f"changed after hand-over: send time 11:00 -> 12:30 UTC; {old_name} deleted" in row["history"]
    assert f"re-created as {new_name}" in row["history"]
    assert _sim_status(sim, old_name) == "CANCELLED"
    sent = _sent(sim)
    assert sent["duplicates"] == 0
    assert [(c["name"], c["startTime"][:16]) for c in sent["campaigns"]] == [(new_name, f"{day}T12:30")]
    audit = audit_sends(engine, sent)
    assert audit.ok, audit


def test_a_target_group_change_is_sent_to_the_new_group(sim, db_url, engine, day):
    with engine.connect() as conn:
        groups = dict(
            conn.execute(
                sa.select(target_group_members.c.target_group, sa.func.count()).group_by(target_group_members.c.target_group)
            ).all()
        )
    smaller = min((g for g in groups if g != "all_customers"), key=groups.get)
    res = make_resources(sim, db_url)
    with dg.DagsterInstance.ephemeral() as instance:
        assert run_cycle(res, day, instance).success
        before = ledger_rows(engine)[0]["rows_in_list"]
        _reschedule(engine, target_group=smaller)
        assert run_cycle(res, day, instance).success
    (row,) = ledger_rows(engine)
    assert row["revision"] == 1 and row["rows_in_list"] < before
    assert f"target group all_customers -> {smaller}" in row["history"]
    sent = _sent(sim)
    assert [c["name"] for c in sent["campaigns"]] == [row["cheetah_name"]]
    audit = audit_sends(engine, sent)  # exactly the re-frozen list
    assert audit.ok, audit


def test_a_target_group_change_beside_an_empty_template_never_sends_the_old_group(sim, db_url, day):
    """Campaign Y has two templates; the old group's one member goes to one of them, so the other's
    send is EMPTY. The group then changes. Regression: the EMPTY send kept the list locked, its
    re-freeze failed, and the re-created send went out anyway, to the old group's member."""
    engine = demo_database(db_url, sim, day, customers=6)
    with engine.begin() as conn:
        pks = [r[0] for r in conn.execute(sa.select(customers.c.customer_pk).order_by(customers.c.customer_pk))]
        conn.execute(target_group_members.insert(), [{"target_group": "old_group", "customer_pk": pks[0]}]
                     + [{"target_group": "new_group", "customer_pk": pk} for pk in pks[1:4]])
    seed.add_campaign(engine, campaign_id="Y", name="Y", send_date=day, send_time="11:00", time_zone="UTC",
                      template_ids="1001,1003", target_group="old_group")
    with dg.DagsterInstance.ephemeral() as instance:
        assert run_cycle(make_resources(sim, db_url), day, instance).success
        assert sorted(r["state"] for r in ledger_rows(engine)) == ["APPROVED", "EMPTY"]
        with engine.begin() as conn:
            conn.execute(campaign_schedule.update().where(campaign_schedule.c.campaign_id == "Y").values(target_group="new_group"))
        sim.admin.advance(dt.timedelta(minutes=30))
        result = run_cycle(make_resources(sim, db_url), day, instance)
        assert result.success, failure_messages(result)
    with engine.connect() as conn:
        old_member, *new_members = [
            norm for (norm,) in conn.execute(
                sa.select(sa.func.lower(customers.c.email)).where(customers.c.customer_pk.in_(pks[:4])).order_by(customers.c.customer_pk)
            )
        ]
    sent = _sent(sim)
    mailed = sorted(r["identifier"] for c in sent["campaigns"] for r in c["recipients"])
    assert old_member not in mailed, mailed
    assert mailed == sorted(new_members), mailed
    audit = audit_sends(engine, sent)
    assert audit.ok, audit


def test_a_campaign_whose_list_cannot_be_re_frozen_sends_nothing_until_it_can(sim, db_url, engine, day, monkeypatch):
    """Regression: when the re-freeze after a change failed, the re-based send was still in the
    run's to-do list (the plan said READY) and went out with the old list."""
    import cheetah_assets.sending.assets as send_assets

    def broken_refreezer(sender, chunk_size=10_000):
        def refreeze(c):
            raise RuntimeError("the customer database went away")
        return refreeze

    small = "winter_shoppers"
    with dg.DagsterInstance.ephemeral() as instance:
        assert run_cycle(make_resources(sim, db_url), day, instance).success
        _reschedule(engine, target_group=small)
        monkeypatch.setattr(send_assets, "refreezer", broken_refreezer)
        failed = run_cycle(make_resources(sim, db_url), day, instance)
        assert not failed.success
        assert any("could not be re-frozen" in m for m in failure_messages(failed)), failure_messages(failed)
        (row,) = ledger_rows(engine)
        assert (row["state"], row["revision"]) == ("PENDING", 1)  # the old campaign deleted, nothing new sent
        monkeypatch.undo()
        assert run_cycle(make_resources(sim, db_url), day, instance).success
    sent = _sent(sim)
    (campaign,) = sent["campaigns"]
    assert campaign["name"] == ledger.cheetah_name("X", "1002", day, 1)
    audit = audit_sends(engine, sent)  # exactly the list of the new group
    assert audit.ok, audit


def test_a_template_swap_deletes_the_removed_one_and_sends_the_new_ones(sim, db_url, engine, day):
    res = make_resources(sim, db_url)
    with dg.DagsterInstance.ephemeral() as instance:
        assert run_cycle(res, day, instance).success
        _reschedule(engine, template_ids="1001,1003")
        result = run_cycle(res, day, instance)
        assert result.success, failure_messages(result)
    rows = {r["template_id"]: r for r in ledger_rows(engine)}
    assert {t: r["state"] for t, r in rows.items()} == {"1001": "APPROVED", "1002": "CANCELLED", "1003": "APPROVED"}
    assert "template 1002 was removed from campaign X" in rows["1002"]["error"]
    assert _sim_status(sim, rows["1002"]["cheetah_name"]) == "CANCELLED"
    sent = _sent(sim)
    assert sorted(c["name"] for c in sent["campaigns"]) == sorted([rows["1001"]["cheetah_name"], rows["1003"]["cheetah_name"]])
    assert sum(c["recipientCount"] for c in sent["campaigns"]) == rows["1002"]["rows_in_list"]
    audit = audit_sends(engine, sent)
    assert audit.ok, audit


def test_a_campaign_moved_to_another_day_is_deleted_on_the_old_day(sim, db_url, engine, day):
    """(Tomorrow's run is not a partition yet by the wall clock; that day sends it like any other.)"""
    res = make_resources(sim, db_url)
    with dg.DagsterInstance.ephemeral() as instance:
        assert run_cycle(res, day, instance).success
        _reschedule(engine, send_date=day + dt.timedelta(days=1))
        assert run_cycle(res, day, instance).success
    (row,) = ledger_rows(engine)
    assert row["state"] == "CANCELLED" and f"no longer scheduled on {day}" in row["error"]
    assert _sim_status(sim, row["cheetah_name"]) == "CANCELLED"
    sim.admin.set_now(_at(day, 23, 59))
    assert sim.admin.sent()["campaigns"] == []


@pytest.mark.parametrize(
    "clock, new_time, expected",
    [
        ((10, 57), "12:00", "too late to re-create it before 11:00 UTC"),  # the old time is near
        ((10, 0), "10:03", "too late to re-create it before 10:03 UTC"),  # the new time is near
    ],
)
def test_a_change_too_late_is_refused_and_the_stale_send_deleted(sim, db_url, engine, day, clock, new_time, expected):
    res = make_resources(sim, db_url)
    with dg.DagsterInstance.ephemeral() as instance:
        assert run_cycle(res, day, instance).success
        sim.admin.set_now(_at(day, *clock))
        _reschedule(engine, send_time=new_time)
        result = run_cycle(make_resources(sim, db_url), day, instance, raise_on_error=False)
    assert not result.success
    (message,) = failure_messages(result)
    assert "changed after it was handed over (send time 11:00 -> " in message and expected in message
    assert "was deleted in Cheetah Messaging, so nothing goes out for it" in message
    (row,) = ledger_rows(engine)
    assert row["state"] == "CANCELLED" and expected in row["error"] and row["revision"] == 0
    if new_time == "12:00":
        # Regression (last stop's leftover): the message said "schedule it again", but a new time at
        # least 5 minutes ahead is prepared again by the next run, and it says so now.
        assert "it is prepared again for its new time" in message and "schedule it again" not in message
        with dg.DagsterInstance.ephemeral() as instance:
            assert run_cycle(make_resources(sim, db_url), day, instance).success
        (sent,) = _sent(sim)["campaigns"]  # the next day: what went out
        assert sent["sendCount"] == 1 and sent["name"].endswith("-r1")
    else:  # 10:03 at 10:00: not prepared again by itself
        assert "schedule it again (a new time or day) if it is still wanted" in message
        assert _sent(sim)["campaigns"] == []


def test_a_change_after_the_send_says_it_was_already_sent_once(sim, db_url, engine, day):
    res = make_resources(sim, db_url)
    with dg.DagsterInstance.ephemeral() as instance:
        assert run_cycle(res, day, instance).success
        sim.admin.set_now(_at(day, 11, 30))
        _reschedule(engine, send_time="13:00")
        res = make_resources(sim, db_url)  # the run's clock at 11:30 too
        first = run_cycle(res, day, instance, raise_on_error=False)
        again = run_cycle(res, day, instance)
    assert not first.success
    assert "the prepared send OPT-X-1002-" in failure_messages(first)[0] and "was already sent" in failure_messages(first)[0]
    assert again.success  # recorded once, in the ledger's history
    (row,) = ledger_rows(engine)
    assert row["state"] == "APPROVED" and "was already sent" in row["history"]
    assert len(_sent(sim)["campaigns"]) == 1


def test_cancellation_after_a_re_creation_deletes_the_new_campaign(sim, db_url, engine, day):
    res = make_resources(sim, db_url)
    with dg.DagsterInstance.ephemeral() as instance:
        assert run_cycle(res, day, instance).success
        _reschedule(engine, send_time="12:00")
        assert run_cycle(res, day, instance).success
    with cheetah_resource(sim).get_client() as client:
        (outcome,) = cancel_campaign(client, engine, "X", owner="cancel", now=sim.admin.now)
    assert outcome.action == "deleted" and outcome.cheetah_name.endswith("-r1")
    assert _sent(sim)["campaigns"] == []


# ------------------------------------------------------------------------------------------------
# faults: the delete's reply lost, the delete refused, a crash between delete and re-base
# ------------------------------------------------------------------------------------------------
def test_a_lost_delete_reply_is_read_back_and_re_created_once(sim, db_url, engine, day):
    res = make_resources(sim, db_url)
    with dg.DagsterInstance.ephemeral() as instance:
        assert run_cycle(res, day, instance).success
        _reschedule(engine, send_time="12:00")
        sim.admin.add_fault(kind="apply_then_drop", method="DELETE", path=CAMPAIGN_PATH)
        assert run_cycle(res, day, instance).success
    assert [f["fired"] for f in sim.admin.faults()] == [1]
    (row,) = ledger_rows(engine)
    assert (row["state"], row["revision"]) == ("APPROVED", 1)
    sent = _sent(sim)
    assert [c["name"] for c in sent["campaigns"]] == [row["cheetah_name"]] and sent["duplicates"] == 0


def test_an_unconfirmed_delete_creates_nothing_in_its_place(sim, db_url, engine, day):
    res = make_resources(sim, db_url)
    old_name = ledger.cheetah_name("X", "1002", day)
    with dg.DagsterInstance.ephemeral() as instance:
        assert run_cycle(res, day, instance).success
        _reschedule(engine, send_time="12:00")
        sim.admin.add_fault(kind="status", status=503, method="DELETE", path=CAMPAIGN_PATH, times=None)
        failed = run_cycle(res, day, instance, raise_on_error=False)
        assert not failed.success
        assert "could not be confirmed deleted" in failure_messages(failed)[0]
        (row,) = ledger_rows(engine)
        assert (row["state"], row["revision"], row["cheetah_name"]) == ("APPROVED", 0, old_name)
        assert _sim_status(sim, ledger.cheetah_name("X", "1002", day, 1)) is None  # no second campaign
        sim.admin.clear_faults()
        assert run_cycle(res, day, instance).success
    sent = _sent(sim)
    assert [c["name"] for c in sent["campaigns"]] == [ledger.cheetah_name("X", "1002", day, 1)]


def test_a_crash_between_delete_and_re_base_resumes(sim, db_url, engine, day, monkeypatch):
    res = make_resources(sim, db_url)
    with dg.DagsterInstance.ephemeral() as instance:
        assert run_cycle(res, day, instance).success
    _reschedule(engine, send_time="12:00")

    def crash(*_a, **_k):
        raise KeyboardInterrupt("the run's process died")

    with monkeypatch.context() as m:
        m.setattr(ledger.Ledger, "recreate", crash)
        with cheetah_resource(sim).get_client() as client:
            sender = Sender(client=client, engine=engine, owner="crashed-run", now=sim.admin.now, step_backoff_seconds=0.01)
            with pytest.raises(KeyboardInterrupt):
                reconcile_changes(sender, day, refreeze=refreezer(sender))
    (row,) = ledger_rows(engine)
    assert row["state"] == "APPROVED" and _sim_status(sim, row["cheetah_name"]) == "CANCELLED"
    with dg.DagsterInstance.ephemeral() as instance:
        result = run_cycle(res, day, instance)
        assert result.success, failure_messages(result)
    (row,) = ledger_rows(engine)
    assert (row["state"], row["revision"]) == ("APPROVED", 1)
    sent = _sent(sim)
    assert [c["name"] for c in sent["campaigns"]] == [row["cheetah_name"]]


# ------------------------------------------------------------------------------------------------
# the ledger's new columns: SQLite and PostgreSQL, and an older table upgraded in place
# ------------------------------------------------------------------------------------------------
def _old_ledger(engine):
    """The ledger table as the previous version made it (no revision, no fingerprint)."""
    old = sa.MetaData()
    sa.Table(
        send_ledger.name, old,
        *[sa.Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable)
          for c in send_ledger.columns if c.name not in ("revision", "fingerprint")],
    )
    old.create_all(engine)
    now = dt.datetime(2026, 11, 23, 6, tzinfo=dt.timezone.utc)
    with engine.begin() as conn:
        conn.execute(
            old.tables[send_ledger.name].insert().values(
                send_key="X/1002/2026-11-23", campaign_id="X", template_id="1002", send_date=now.date(),
                list_key="X/2026-11-23", cheetah_name="OPT-X-1002-20261123", state="APPROVED", created_at=now,
                updated_at=now,
            )
        )


def _upgrade_and_recreate(engine):
    _old_ledger(engine)
    schema.create_integration_tables(engine)
    now = dt.datetime(2026, 11, 23, 7, tzinfo=dt.timezone.utc)
    book = ledger.Ledger(engine, lambda: now)
    row = book.get("X/1002/2026-11-23")
    assert (row.revision, row.fingerprint) == (0, None)
    assert book.claim(row.send_key, "me") is not None
    new = book.recreate(row.send_key, "me", send_at=now + dt.timedelta(hours=3), note="changed after hand-over: x")
    assert (new.state, new.revision, new.cheetah_name, new.camp_id) == ("PENDING", 1, "OPT-X-1002-20261123-r1", None)
    assert new.send_at == now + dt.timedelta(hours=3) and new.history.endswith("changed after hand-over: x")
    with pytest.raises(ledger.LostClaim):
        book.recreate(row.send_key, "someone else", send_at=None, note="no")


def test_an_older_sqlite_ledger_gets_the_new_columns(tmp_path):
    _upgrade_and_recreate(CustomerDatabaseResource(url=f"sqlite:///{tmp_path / 'old.db'}").get_engine(create=True))


def test_an_older_postgres_ledger_gets_the_new_columns():
    with fresh_postgres_database() as url:
        _upgrade_and_recreate(CustomerDatabaseResource(url=url).get_engine(create=True))



def test_a_target_group_changed_between_freeze_and_handover_is_caught(sim, db_url, engine, day):
    """The fingerprint records the target group and templates the list was frozen from (the
    day's plan), not the schedule as it reads at hand-over: a change in between is re-created on
    the next run, never sent to the old list in silence."""
    res = make_resources(sim, db_url)
    with engine.connect() as conn:
        group = conn.execute(
            sa.select(target_group_members.c.target_group).where(target_group_members.c.target_group != "all_customers")
        ).scalar()
    with dg.DagsterInstance.ephemeral() as instance:
        assets = [*SEND_ASSETS, *SEND_CHECKS]
        assert dg.materialize(assets, partition_key=day.isoformat(), resources=res, instance=instance,
                              selection=["cheetah_template_catalog", "scheduled_campaigns", "recipient_lists"]).success
        _reschedule(engine, target_group=group)  # after the freeze, before the send
        assert dg.materialize(assets, partition_key=day.isoformat(), resources=res, instance=instance,
                              selection=["campaign_sends"]).success
        (row,) = ledger_rows(engine)
        assert parse(row["fingerprint"]).target_group == "all_customers"  # what the list holds
        assert run_cycle(res, day, instance).success
    (row,) = ledger_rows(engine)
    assert row["revision"] == 1 and f"target group all_customers -> {group}" in row["history"]
    sent = _sent(sim)
    assert [c["name"] for c in sent["campaigns"]] == [row["cheetah_name"]]
    audit = audit_sends(engine, sent)
    assert audit.ok, audit
