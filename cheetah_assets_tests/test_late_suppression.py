"""A recipient suppressed after their send was handed over (its list is in Cheetah Messaging, the
campaign created, launched or approved) and before its send time.

Cheetah has no call that removes one row from a list, so before the fix the campaign went out to
them. Now the preparation sensor finds them every minute and requests the day's run, which deletes
the campaign and sends it again without them (a new revision), or, too close to the send time,
leaves it and says so: a warning, the send's history, the run's metadata, and an alert. Real HTTP
to the simulator, real SQLite and PostgreSQL, real sensor evaluations and runs."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import threading

import dagster as dg
import pytest
from dagster._core.storage.tags import RUN_KEY_TAG  # the tag the daemon gives a sensor's run
from hypothesis import HealthCheck, given, settings, strategies as st

from cheetah_assets.automation.prepare_sensor import campaign_preparation_sensor
from cheetah_assets.clock import ClockResource
from cheetah_assets.customers import seed
from cheetah_assets.customers.identifiers import normalise_identifier
from cheetah_assets.customers.resource import CustomerDatabaseResource
from cheetah_assets.sending import ledger

from .conftest import cheetah_resource, make_resources
from .helpers import CAMPAIGN_X, demo_database, frozen, ledger_rows, run_cycle, wrongly_mailed
from .pg import fresh_postgres_database

UTC = dt.timezone.utc
CAMPAIGN_PATH = "/services2/api/EmailCampaign"


def _at(day, hh, mm=0, ss=0):
    return dt.datetime.combine(day, dt.time(hh, mm, ss), tzinfo=UTC)


class World:
    """The customer database, the simulator, a Dagster instance and the preparation sensor's cursor."""

    def __init__(self, sim, db_url, engine, instance):
        self.sim, self.db_url, self.engine, self.instance, self.cursor = sim, db_url, engine, instance, None

    def tick(self, now):
        """One evaluation of the preparation sensor at ``now`` (the cursor carried over, as the daemon does)."""
        from cheetah_assets.definitions import defs

        self.sim.admin.set_now(now)
        ctx = dg.build_sensor_context(
            instance=self.instance, cursor=self.cursor, repository_def=defs.get_repository_def(),
            resources=make_resources(self.sim, self.db_url, now),  # the sensor's, cheetah included (its account)
        )
        data = campaign_preparation_sensor.evaluate_tick(ctx)
        self.cursor = data.cursor
        return data.run_requests or []

    def run(self, now, day, request=None, **kwargs):
        """The day's run at ``now`` (the one ``request`` asked for, tagged as the daemon tags it)."""
        self.sim.admin.set_now(now)
        tags = {RUN_KEY_TAG: request.run_key} if request is not None else None
        return run_cycle(make_resources(self.sim, self.db_url, now=now), day, self.instance, tags=tags, **kwargs)

    def handed_over(self, day):
        """Campaign X's send handed over (APPROVED) by the run the 06:00 tick requests; the next tick quiet."""
        (request,) = self.tick(_at(day, 6))
        assert self.run(_at(day, 6), day, request).success
        assert [r["state"] for r in ledger_rows(self.engine)] == ["APPROVED"]
        assert self.tick(_at(day, 6, 1)) == []  # nothing suppressed since


@pytest.fixture(params=["sqlite", "postgresql"])
def world(request, sim, db_url, day):
    """Campaign X (template 1002, 11:00 UTC) to 30 customers, on SQLite, then on PostgreSQL."""
    with dg.DagsterInstance.ephemeral() as instance:
        if request.param == "sqlite":
            yield World(sim, db_url, demo_database(db_url, sim, day, customers=30, campaigns=CAMPAIGN_X), instance)
            return
        with fresh_postgres_database() as url:
            yield World(sim, url, demo_database(url, sim, day, customers=30, campaigns=CAMPAIGN_X), instance)


@pytest.fixture
def sqlite_world(sim, db_url, day):
    with dg.DagsterInstance.ephemeral() as instance:
        yield World(sim, db_url, demo_database(db_url, sim, day, customers=30, campaigns=CAMPAIGN_X), instance)


def _members(engine, day, template="1002", campaign="X"):
    """The frozen recipients of a send, as sent (the customer's own value)."""
    return sorted(frozen(engine, f"{campaign}/{day}", template))


def _sim_status(sim, name):
    with cheetah_resource(sim).get_client() as client:
        campaign = client.find_campaign(name)
    return campaign.status if campaign else None


def _messages(instance, result):
    return [e.user_message for e in instance.all_logs(result.run_id) if e.dagster_event is None]


def _metadata(result):
    (mat,) = [e.event_specific_data.materialization for e in result.get_asset_materialization_events()
              if e.asset_key == dg.AssetKey("campaign_sends")]
    return {k: v.value for k, v in mat.metadata.items()}


def _creates(sim):
    return [r for r in sim.admin.requests() if r["method"] == "POST" and r["path"] == CAMPAIGN_PATH]


def _mailed(sent, name):
    (campaign,) = [c for c in sent["campaigns"] if c["name"] == name]
    return campaign["sendCount"], sorted(normalise_identifier(r["identifier"]) for r in campaign["recipients"])


# ------------------------------------------------------------------------------------------------
# (a) the regression: in time, the campaign is deleted and sent again without them
# ------------------------------------------------------------------------------------------------
def test_a_recipient_suppressed_hours_before_the_send_is_not_mailed(world, day):
    """Fails before the fix: no run is requested, the day's run finds the send APPROVED (SENT) and
    does nothing, and at 11:00 the campaign goes to the person who unsubscribed at 07:00."""
    world.handed_over(day)
    members = _members(world.engine, day)
    victim = members[3]
    old_name = ledger.cheetah_name("X", "1002", day)
    seed.add_suppression(world.engine, f" {victim.upper()}\t", reason="unsubscribed")  # another spelling
    requests = world.tick(_at(day, 7))
    result = world.run(_at(day, 7), day, requests[0] if requests else None)
    assert result.success
    quiet = world.tick(_at(day, 7, 1))
    world.sim.admin.set_now(_at(day, 12))
    sent = world.sim.admin.sent()
    # Nobody suppressed was mailed; everyone else got exactly one campaign, at 11:00.
    assert wrongly_mailed(world.engine, sent) == (0, [])
    new_name = ledger.cheetah_name("X", "1002", day, 1)
    assert [c["name"] for c in sent["campaigns"]] == [new_name] and sent["duplicates"] == 0
    assert _mailed(sent, new_name) == (1, sorted(normalise_identifier(m) for m in members if m != victim))
    # The old campaign was deleted in Cheetah, and a new revision made whose list lacks them.
    assert _sim_status(world.sim, old_name) == "CANCELLED"
    (row,) = ledger_rows(world.engine)
    assert (row["state"], row["revision"], row["cheetah_name"]) == ("APPROVED", 1, new_name), row
    assert (row["rows_in_list"], row["rows_accepted"]) == (len(members), len(members) - 1)
    (listed,) = world.sim.admin.lists(int(row["list_id"]))
    assert normalise_identifier(victim) not in {normalise_identifier(r["identifier"]) for r in listed["rows"]}
    assert f"1 recipient suppressed after the send was handed over (found at 07:00 UTC): {old_name} deleted" in row["history"]
    assert f"re-created as {new_name} without them" in row["history"]
    # The sensor asked for that run, once; the run said what it did, without the address.
    assert [r.partition_key for r in requests] == [day.isoformat()] and quiet == []
    said = [m for m in _messages(world.instance, result) if "suppressed after the send was handed over" in m]
    assert said and not any(victim.lower() in m.lower() for m in _messages(world.instance, result)), said
    assert "re-created as" in _metadata(result)["changed_after_handover"]


def test_the_run_finds_them_by_itself_without_the_sensor(sqlite_world, day):
    """A run of the day (by hand, or requested for another reason) checks too, before it sends."""
    w = sqlite_world
    assert w.run(_at(day, 6), day).success
    victim = _members(w.engine, day)[0]
    seed.add_suppression(w.engine, victim, reason="bounced")
    assert w.run(_at(day, 8), day).success
    (row,) = ledger_rows(w.engine)
    assert (row["state"], row["revision"]) == ("APPROVED", 1)
    w.sim.admin.set_now(_at(day, 12))
    sent = w.sim.admin.sent()
    assert wrongly_mailed(w.engine, sent) == (0, []) and len(sent["campaigns"]) == 1


# ------------------------------------------------------------------------------------------------
# (b) too late: nothing deleted, and it is said
# ------------------------------------------------------------------------------------------------
class _Hook(http.server.BaseHTTPRequestHandler):
    posts: list = []

    def do_POST(self):  # noqa: N802
        type(self).posts.append(json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0))))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook():
    _Hook.posts = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", _Hook.posts
    finally:
        server.shutdown()
        server.server_close()


def _alert_tick(w, now, hook, cursor=None):
    from cheetah_assets.automation.alert_sensors import suppressed_mailed_alert_sensor
    from cheetah_assets.automation.alerts import AlertsResource

    ctx = dg.build_sensor_context(
        instance=w.instance, cursor=cursor,
        resources={"customer_db": CustomerDatabaseResource(url=w.db_url), "clock": ClockResource(fixed_now=now.isoformat()),
                   "alerts": AlertsResource(webhook_url=hook)},
    )
    data = suppressed_mailed_alert_sensor.evaluate_tick(ctx)
    return data.cursor


def test_a_suppression_minutes_before_the_send_is_not_applied_but_said_and_alerted(world, day, webhook):
    hook, posts = webhook
    world.handed_over(day)
    members = _members(world.engine, day)
    victim = members[5]
    old_name = ledger.cheetah_name("X", "1002", day)
    seed.add_suppression(world.engine, victim, reason="unsubscribed")
    (request,) = world.tick(_at(day, 10, 57))  # 3 minutes before 11:00: less than MIN_LEAD
    result = world.run(_at(day, 10, 57), day, request)
    assert result.success  # the day is not failed for it: the campaign goes out
    assert _sim_status(world.sim, old_name) == "APPROVED"  # nothing deleted
    assert not [r for r in world.sim.admin.requests() if r["method"] == "DELETE"]
    (row,) = ledger_rows(world.engine)
    assert (row["state"], row["revision"], row["cheetah_name"]) == ("APPROVED", 0, old_name)
    note = (f"1 recipient suppressed after the send was handed over will still be mailed by {old_name}: found at "
            f"10:57 UTC, too late to re-create it before its send time {day} 11:00 UTC")
    assert note in row["history"], row["history"]
    messages = _messages(world.instance, result)
    assert any(note in m for m in messages), messages  # a warning in the run's log
    assert not any(victim.lower() in m.lower() for m in messages)  # a number, never who
    meta = _metadata(result)
    assert meta["suppressed_after_handover_still_mailed"] == 1
    (record,) = meta["sends"].records
    assert note in record.data["note"], record.data
    # The alert, once, with the count; nothing more on the next evaluation.
    cursor = _alert_tick(world, _at(day, 10, 58), hook)
    (post,) = posts
    assert post["kind"] == "suppressed_mailed" and post["title"] == "1 suppressed recipient will be mailed"
    assert f"X/1002/{day}: 1 recipient suppressed after hand-over" in post["text"] and victim not in json.dumps(post)
    _alert_tick(world, _at(day, 10, 59), hook, cursor)
    assert len(posts) == 1
    # Later ticks and runs do not take it up again.
    assert world.tick(_at(day, 10, 58)) == []
    assert world.run(_at(day, 10, 58), day).success
    assert [r["revision"] for r in ledger_rows(world.engine)] == [0]
    world.sim.admin.set_now(_at(day, 12))
    assert _mailed(world.sim.admin.sent(), old_name)[0] == 1


# ------------------------------------------------------------------------------------------------
# (c) nothing needless: someone not on the list, or on another template's share
# ------------------------------------------------------------------------------------------------
def test_a_suppression_of_someone_not_on_the_list_changes_nothing(sqlite_world, day):
    w = sqlite_world
    w.handed_over(day)
    seed.add_suppression(w.engine, "nobody@example.invalid", reason="unsubscribed")
    assert w.tick(_at(day, 7)) == []
    assert w.run(_at(day, 7), day).success
    (row,) = ledger_rows(w.engine)
    assert row["revision"] == 0 and len(_creates(w.sim)) == 1
    assert not [r for r in w.sim.admin.requests() if r["method"] == "DELETE"]


def test_only_the_send_whose_share_holds_them_is_re_created(sim, db_url, day):
    """A campaign with two templates splits its list: the person is in one share, and only that
    send is deleted and sent again; the other template's campaign is not touched."""
    engine = demo_database(db_url, sim, day, customers=30, campaigns=[("Y", "Campaign Y", "1001,1003", "11:00")])
    with dg.DagsterInstance.ephemeral() as instance:
        w = World(sim, db_url, engine, instance)
        (request,) = w.tick(_at(day, 6))
        assert w.run(_at(day, 6), day, request).success
        assert w.tick(_at(day, 6, 1)) == []
        victim = _members(engine, day, "1003", "Y")[0]
        seed.add_suppression(engine, victim.upper())
        (request,) = w.tick(_at(day, 9))
        assert w.run(_at(day, 9), day, request).success
    rows = {r["template_id"]: r for r in ledger_rows(engine)}
    assert {t: (r["state"], r["revision"]) for t, r in rows.items()} == {"1001": ("APPROVED", 0), "1003": ("APPROVED", 1)}
    assert _sim_status(sim, rows["1001"]["cheetah_name"]) == "APPROVED"
    assert _sim_status(sim, ledger.cheetah_name("Y", "1003", day)) == "CANCELLED"
    sim.admin.set_now(_at(day, 12))
    sent = sim.admin.sent()
    assert sorted(c["name"] for c in sent["campaigns"]) == sorted(r["cheetah_name"] for r in rows.values())
    assert wrongly_mailed(engine, sent) == (0, [])
    everyone = _members(engine, day, "1001", "Y") + _members(engine, day, "1003", "Y")
    mailed = sorted(normalise_identifier(r["identifier"]) for c in sent["campaigns"] for r in c["recipients"])
    assert mailed == sorted(normalise_identifier(m) for m in everyone if m != victim)


def test_a_cancelled_campaign_with_a_late_suppression_is_deleted_not_re_created(sqlite_world, day):
    from cheetah_assets.customers.queries import set_campaign_status

    w = sqlite_world
    w.handed_over(day)
    seed.add_suppression(w.engine, _members(w.engine, day)[0])
    set_campaign_status(w.engine, "X", "CANCELLED")
    assert w.run(_at(day, 7), day).success
    (row,) = ledger_rows(w.engine)
    assert (row["state"], row["revision"]) == ("CANCELLED", 0) and len(_creates(w.sim)) == 1
    w.sim.admin.set_now(_at(day, 12))
    assert w.sim.admin.sent()["campaigns"] == []


def test_an_unconfirmed_deletion_creates_nothing_in_its_place_and_the_next_run_finishes(sqlite_world, day):
    """Exactly once holds: while Cheetah does not read the deletion back, no second campaign is made."""
    from .helpers import failure_messages

    w = sqlite_world
    w.handed_over(day)
    old_name = ledger.cheetah_name("X", "1002", day)
    seed.add_suppression(w.engine, _members(w.engine, day)[4])
    w.sim.admin.add_fault(kind="status", status=503, method="DELETE", path=CAMPAIGN_PATH + "*", times=None)
    (request,) = w.tick(_at(day, 7))
    failed = w.run(_at(day, 7), day, request)
    assert not failed.success
    assert any("could not be confirmed deleted" in m for m in failure_messages(failed)), failure_messages(failed)
    (row,) = ledger_rows(w.engine)
    assert (row["state"], row["revision"], row["cheetah_name"]) == ("APPROVED", 0, old_name)
    assert len(_creates(w.sim)) == 1 and _sim_status(w.sim, ledger.cheetah_name("X", "1002", day, 1)) is None
    w.sim.admin.clear_faults()
    assert w.run(_at(day, 7, 5), day).success  # the failed run's retry (the sensor requests it)
    (row,) = ledger_rows(w.engine)
    assert (row["state"], row["revision"]) == ("APPROVED", 1) and _sim_status(w.sim, old_name) == "CANCELLED"
    w.sim.admin.set_now(_at(day, 12))
    sent = w.sim.admin.sent()
    assert len(sent["campaigns"]) == 1 and wrongly_mailed(w.engine, sent) == (0, [])


def test_someone_the_import_left_out_is_not_a_late_suppression_even_for_an_older_import(sqlite_world, day):
    """Suppressed between the freeze and the import: the import left them out, so the campaign does
    not mail them and nothing is re-created. A send imported by an earlier version recorded only how
    many it left out: as many found now are taken to be those; one more is a late suppression."""
    from cheetah_assets.customers.schema import send_suppression, suppression_check

    w = sqlite_world
    w.sim.admin.add_fault(kind="status", status=503, method="POST", path="/services2/api/Import", times=None)
    assert not w.run(_at(day, 6), day).success  # frozen, not imported
    w.sim.admin.clear_faults()
    members = _members(w.engine, day)
    seed.add_suppression(w.engine, members[0].upper())  # after the freeze, before the import
    assert w.run(_at(day, 6, 30), day).success
    (row,) = ledger_rows(w.engine)
    assert (row["state"], row["rows_in_list"], row["rows_accepted"]) == ("APPROVED", len(members), len(members) - 1)
    assert w.tick(_at(day, 6, 31)) == []  # its first tick: the day is new to it, but handed over as scheduled
    assert w.run(_at(day, 6, 31), day).success  # re-run anyway (a backfill): still nothing to re-create
    assert w.tick(_at(day, 6, 32)) == []
    assert [r["revision"] for r in ledger_rows(w.engine)] == [0]
    with w.engine.begin() as conn:  # as an earlier version left it: no record of whom, no check yet
        conn.execute(send_suppression.delete())
        conn.execute(suppression_check.delete())
    assert w.tick(_at(day, 7)) == []
    assert [r["revision"] for r in ledger_rows(w.engine)] == [0] and len(_creates(w.sim)) == 1
    seed.add_suppression(w.engine, members[1])
    (request,) = w.tick(_at(day, 8))
    assert w.run(_at(day, 8), day, request).success
    (row,) = ledger_rows(w.engine)
    assert row["revision"] == 1 and "1 recipient suppressed after the send was handed over" in row["history"]
    w.sim.admin.set_now(_at(day, 12))
    sent = w.sim.admin.sent()
    assert _mailed(sent, row["cheetah_name"]) == (1, sorted(normalise_identifier(m) for m in members[2:]))


# ------------------------------------------------------------------------------------------------
# (d) the same finding on two ticks and two runs: re-created once
# ------------------------------------------------------------------------------------------------
def test_the_same_suppression_seen_on_two_ticks_and_two_runs_re_creates_once(world, day):
    world.handed_over(day)
    victim = _members(world.engine, day)[1]
    seed.add_suppression(world.engine, victim)
    (first,) = world.tick(_at(day, 7))
    assert world.tick(_at(day, 7, 0, 30)) == []  # found again before the run: the same finding, not requested again
    assert world.run(_at(day, 7, 1), day, first).success
    assert world.run(_at(day, 7, 2), day).success  # a re-execution, or a run requested for another reason
    seed.add_suppression(world.engine, victim.upper())  # the same person again, in another spelling
    assert world.tick(_at(day, 7, 3)) == []
    assert world.run(_at(day, 7, 4), day).success
    (row,) = ledger_rows(world.engine)
    assert (row["state"], row["revision"]) == ("APPROVED", 1)
    assert row["history"].count("suppressed after the send was handed over") == 1
    assert len(_creates(world.sim)) == 2  # revision 0, then revision 1: nothing more
    world.sim.admin.set_now(_at(day, 12))
    sent = world.sim.admin.sent()
    assert len(sent["campaigns"]) == 1 and wrongly_mailed(world.engine, sent) == (0, [])


def test_a_suppression_withdrawn_before_the_run_re_creates_nothing(sqlite_world, day):
    from cheetah_assets.customers.schema import suppression

    w = sqlite_world
    w.handed_over(day)
    victim = _members(w.engine, day)[2]
    seed.add_suppression(w.engine, victim)
    (request,) = w.tick(_at(day, 7))
    with w.engine.begin() as conn:  # they subscribed again before the run
        conn.execute(suppression.delete().where(suppression.c.identifier == victim))
    assert w.run(_at(day, 7, 1), day, request).success
    assert [r["revision"] for r in ledger_rows(w.engine)] == [0] and len(_creates(w.sim)) == 1
    seed.add_suppression(w.engine, victim)  # and unsubscribed once more: found again
    (request,) = w.tick(_at(day, 8))
    assert w.run(_at(day, 8), day, request).success
    assert [r["revision"] for r in ledger_rows(w.engine)] == [1]


# ------------------------------------------------------------------------------------------------
# (e) every handed-over state, any lead
# ------------------------------------------------------------------------------------------------
#: A fault that leaves the first run's send at each state (the client retries, then the step stops).
STOP_AT = {
    "IMPORTED": dict(kind="status", status=503, method="POST", path=CAMPAIGN_PATH, times=None),
    "CREATED": dict(kind="status", status=503, method="PUT", path=CAMPAIGN_PATH + "*", times=None),
    "LAUNCHED": dict(kind="status", status=503, method="PUT", path=CAMPAIGN_PATH + "*", times=None, after=1),
    "APPROVED": None,
}


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    state=st.sampled_from(sorted(STOP_AT)),
    lead=st.one_of(st.sampled_from([1, 4, 5, 6]), st.integers(min_value=1, max_value=290)),
)
def test_any_handed_over_state_and_lead_mails_nobody_twice_and_the_suppressed_only_when_too_late(
    sim, tmp_path_factory, state, lead
):
    day = sim.admin.now().date()
    sim.admin.reset(seed="demo", now=_at(day, 6), rate_limit=0)
    url = f"sqlite:///{tmp_path_factory.mktemp('late') / 'customers.db'}"
    engine = demo_database(url, sim, day, customers=12, campaigns=CAMPAIGN_X)
    with dg.DagsterInstance.ephemeral() as instance:
        w = World(sim, url, engine, instance)
        if STOP_AT[state]:
            sim.admin.add_fault(**STOP_AT[state])
        w.run(_at(day, 6), day)
        sim.admin.clear_faults()
        assert [r["state"] for r in ledger_rows(engine)] == [state]
        members = _members(engine, day)
        victim = members[len(members) // 2]
        seed.add_suppression(engine, victim.upper())
        now = _at(day, 11) - dt.timedelta(minutes=lead)
        result = w.run(now, day)
        assert result.success, [r["error"] for r in ledger_rows(engine)]
    (row,) = ledger_rows(engine)
    in_time = lead >= 5
    assert (row["state"], row["revision"]) == ("APPROVED", 1 if in_time else 0), (row["history"], row["error"])
    old = ledger.cheetah_name("X", "1002", day)
    if in_time and state != "IMPORTED":
        assert _sim_status(sim, old) == "CANCELLED"
    sim.admin.set_now(_at(day, 12))
    sent = sim.admin.sent()
    assert [c["name"] for c in sent["campaigns"]] == [row["cheetah_name"]] and sent["duplicates"] == 0
    count, mailed = _mailed(sent, row["cheetah_name"])
    everyone = sorted(normalise_identifier(m) for m in members)
    assert count == 1
    if in_time:
        assert mailed == [m for m in everyone if m != normalise_identifier(victim)]
    else:  # too late: the campaign goes out as it is, and the run said so
        assert mailed == everyone and "will still be mailed" in row["history"]
        assert _metadata(result)["suppressed_after_handover_still_mailed"] == 1


def test_a_failing_check_never_stops_the_preparations_and_fails_a_tick_that_requests_nothing(sqlite_world, day, monkeypatch):
    from cheetah_assets.sending import late_suppression

    def broken(engine, now, day=None):
        raise RuntimeError("database unreachable\n[parameters: ('someone@example.com',)]")

    w = sqlite_world
    monkeypatch.setattr(late_suppression, "check", broken)
    (request,) = w.tick(_at(day, 6))  # the day is due: requested all the same
    assert request.partition_key == day.isoformat()
    with pytest.raises(Exception, match="suppressed after hand-over failed: RuntimeError: database unreachable") as raised:
        w.tick(_at(day, 6, 1))
    assert "someone@example.com" not in str(raised.value)
