"""Cancellation before and after preparation, and each set-up failure's one clear message."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest

from cheetah_assets.automation.cancel_job import cancel_campaign_job
from cheetah_assets.automation.send_sensors import MAX_REQUESTS, cancellation_sensor
from cheetah_assets.customers import queries
from cheetah_assets.sending.errors import SendError
from cheetah_assets.sending.ledger import cheetah_name
from cheetah_assets.sending.protocol import Sender

from .conftest import cheetah_resource, make_resources
from .helpers import CAMPAIGN_X, TWO_CAMPAIGNS, demo_database, failure_messages, ledger_rows, run_cycle


@pytest.fixture
def engine(db_url, sim, day):
    return demo_database(db_url, sim, day, customers=60, campaigns=CAMPAIGN_X)


def _cancel(resources, instance, campaign_id="X"):
    return cancel_campaign_job.execute_in_process(
        run_config={"ops": {"cancel_campaign_op": {"config": {"campaign_id": campaign_id}}}},
        resources=resources, instance=instance, raise_on_error=False,
    )


def _sim_status(sim, name):
    """The campaign's status as Cheetah Messaging reports it (None if there is none)."""
    with cheetah_resource(sim).get_client() as client:
        campaign = client.find_campaign(name)
    return campaign.status if campaign else None


def test_cancel_before_preparation(sim, db_url, engine, day):
    res = make_resources(sim, db_url)
    with dg.DagsterInstance.ephemeral() as instance:
        result = _cancel(res, instance)
        assert result.success
        assert run_cycle(res, day, instance).success
    assert ledger_rows(engine) == []
    assert _sim_status(sim, cheetah_name("X", "1002", day)) is None


def test_cancel_after_preparation_deletes_it_in_cheetah(sim, db_url, engine, day):
    res = make_resources(sim, db_url)
    with dg.DagsterInstance.ephemeral() as instance:
        assert run_cycle(res, day, instance).success
        (row,) = ledger_rows(engine)
        assert row["state"] == "APPROVED"
        result = _cancel(res, instance)
        assert result.success
        assert result.output_for_node("cancel_campaign_op") == 1
    (row,) = ledger_rows(engine)
    assert row["state"] == "CANCELLED"
    assert _sim_status(sim, row["cheetah_name"]) == "CANCELLED"
    sim.admin.advance(dt.timedelta(days=1))
    assert sim.admin.sent()["campaigns"] == []


def test_a_send_cheetah_reports_sent_before_our_clock_says_so_is_a_clear_error(sim, db_url, engine, day):
    """Our clock (06:00) says the send is still ahead, Cheetah (12:00) that it went out: the two
    disagree, and the cancel job says so. With the clocks agreeing it is only reported (below)."""
    res = make_resources(sim, db_url)
    with dg.DagsterInstance.ephemeral() as instance:
        assert run_cycle(res, day, instance).success
        sim.admin.advance(dt.timedelta(hours=6))
        result = _cancel(res, instance)
    assert not result.success
    (message,) = failure_messages(result)
    assert "was already sent; it cannot be cancelled" in message
    assert "Traceback" not in message
    (row,) = ledger_rows(engine)
    assert row["state"] == "APPROVED"


def test_cancellation_on_our_side_is_picked_up_by_the_sensor(sim, db_url, engine, day):
    res = make_resources(sim, db_url)
    with dg.DagsterInstance.ephemeral() as instance:
        assert run_cycle(res, day, instance).success
        queries.set_campaign_status(engine, "X", "CANCELLED")
        ctx = dg.build_sensor_context(instance=instance, resources={"customer_db": res["customer_db"], "clock": res["clock"]})
        (request,) = cancellation_sensor(ctx)
        assert request.run_config["ops"]["cancel_campaign_op"]["config"]["campaign_id"] == "X"
        assert _cancel(res, instance).success
        ctx = dg.build_sensor_context(instance=instance, resources={"customer_db": res["customer_db"], "clock": res["clock"]})
        assert isinstance(cancellation_sensor(ctx), dg.SkipReason)
    (row,) = ledger_rows(engine)
    assert _sim_status(sim, row["cheetah_name"]) == "CANCELLED"


def test_rerunning_the_day_after_a_cancellation_deletes_the_prepared_send(sim, db_url, engine, day):
    res = make_resources(sim, db_url)
    with dg.DagsterInstance.ephemeral() as instance:
        assert run_cycle(res, day, instance).success
        queries.set_campaign_status(engine, "X", "CANCELLED")
        assert run_cycle(res, day, instance).success
    (row,) = ledger_rows(engine)
    assert row["state"] == "CANCELLED"
    assert _sim_status(sim, row["cheetah_name"]) == "CANCELLED"


def test_a_campaign_cancelled_after_it_went_out_is_reported_once_and_never_retried(sim, db_url, engine, day):
    """Review D5: a campaign cancelled on our side after Cheetah sent it (ledger APPROVED, send time
    passed) made the cancellation sensor launch 5 failing cancel runs and then ask the operator to
    fix what cannot be fixed; the day's run failed too. Now the sensor requests nothing and says
    once that it went out before it was cancelled; the cancel job and the day's run succeed; the
    ledger stays APPROVED. A send still ahead is still deleted (the tests above)."""
    with dg.DagsterInstance.ephemeral() as instance:
        assert run_cycle(make_resources(sim, db_url), day, instance).success
        sim.admin.advance(dt.timedelta(hours=6))  # 12:00: X went out at 11:00
        assert [c["name"] for c in sim.admin.sent(recipients=False)["campaigns"]] == [cheetah_name("X", "1002", day)]
        queries.set_campaign_status(engine, "X", "CANCELLED")
        res = make_resources(sim, db_url)  # the clock at 12:00 too
        requests, cursor, skipped = _cancellation_tick(instance, res, None)
        assert requests == []
        assert "went out at 11:00 UTC before it was cancelled; nothing to undo" in skipped
        for _ in range(MAX_REQUESTS + 2):  # said once; never requested
            requests, cursor, skipped = _cancellation_tick(instance, res, cursor)
            assert requests == [] and "went out" not in skipped and "by hand" not in skipped
        result = _cancel(res, instance)  # by hand: nothing to undo, not a failure
        assert result.success and result.output_for_node("cancel_campaign_op") == 0
        assert run_cycle(res, day, instance).success  # the day's run, requested again by the change
        mat = instance.fetch_materializations(dg.AssetKey("campaign_sends"), limit=1).records[0].asset_materialization
        assert mat.metadata["sent_before_cancelled"].value == 1 and mat.metadata["failed"].value == 0
    (row,) = ledger_rows(engine)
    assert row["state"] == "APPROVED"  # it was sent
    assert _sim_status(sim, row["cheetah_name"]) == "SENT"


CAMPAIGN_PATH = "/services2/api/EmailCampaign"


def _unapplied_delete_is_one_clear_message(message: str) -> None:
    assert "could not confirm" in message and "may still go out" in message
    assert "pause or delete it in Cheetah Messaging" in message
    assert "Traceback" not in message


def test_a_delete_answered_ok_but_not_applied_is_not_recorded_cancelled(sim, db_url, engine, day):
    """The cancel job reads the deletion back: a DELETE acknowledged but not applied fails the job
    with what to do, the ledger keeps the send, and the next job (once Cheetah applies it) deletes
    it (review: send-path finding 1)."""
    res = make_resources(sim, db_url)
    with dg.DagsterInstance.ephemeral() as instance:
        assert run_cycle(res, day, instance).success
        sim.admin.add_fault(kind="unapplied", method="DELETE", path=CAMPAIGN_PATH, times=None)
        result = _cancel(res, instance)
        assert not result.success
        (message,) = failure_messages(result)
        _unapplied_delete_is_one_clear_message(message)
        (row,) = ledger_rows(engine)
        assert row["state"] == "APPROVED"
        assert "may still go out" in row["error"]
        assert _sim_status(sim, row["cheetah_name"]) == "APPROVED"
        sim.admin.clear_faults()
        assert _cancel(res, instance).success
    (row,) = ledger_rows(engine)
    assert row["state"] == "CANCELLED"
    assert _sim_status(sim, row["cheetah_name"]) == "CANCELLED"
    sim.admin.advance(dt.timedelta(days=1))
    assert sim.admin.sent()["campaigns"] == []


def test_one_send_that_cannot_be_cancelled_does_not_stop_the_others(sim, db_url, day):
    """A campaign with two templates: the first send's DELETE is not applied, the second's is. The
    job fails for the first, and still deletes the second (which would otherwise go out)."""
    engine = demo_database(db_url, sim, day, customers=30, campaigns=TWO_CAMPAIGNS)
    res = make_resources(sim, db_url)
    with dg.DagsterInstance.ephemeral() as instance:
        assert run_cycle(res, day, instance).success
        first, second = (r for r in ledger_rows(engine) if r["campaign_id"] == "A")
        sim.admin.add_fault(kind="unapplied", method="DELETE", path=CAMPAIGN_PATH, times=3)  # the first's 3 attempts
        result = _cancel(res, instance, "A")
    assert not result.success
    (message,) = failure_messages(result)
    _unapplied_delete_is_one_clear_message(message)
    assert first["send_key"] in message and second["send_key"] not in message
    states = {r["send_key"]: r["state"] for r in ledger_rows(engine)}
    assert (states[first["send_key"]], states[second["send_key"]]) == ("APPROVED", "CANCELLED")
    assert _sim_status(sim, first["cheetah_name"]) == "APPROVED"
    assert _sim_status(sim, second["cheetah_name"]) == "CANCELLED"


def test_a_leftover_whose_delete_is_not_applied_fails_the_day(sim, db_url, engine, day):
    """The day's run deletes a cancelled campaign's prepared send (``cancel_leftover``): a DELETE
    answered 200 but not applied fails the run and leaves the ledger row as it was."""
    res = make_resources(sim, db_url)
    with dg.DagsterInstance.ephemeral() as instance:
        assert run_cycle(res, day, instance).success
        queries.set_campaign_status(engine, "X", "CANCELLED")
        sim.admin.add_fault(kind="unapplied", method="DELETE", path=CAMPAIGN_PATH, times=None)
        result = run_cycle(res, day, instance)
        assert not result.success
        _unapplied_delete_is_one_clear_message(" ".join(failure_messages(result)))
        (row,) = ledger_rows(engine)
        assert row["state"] == "APPROVED"
        assert _sim_status(sim, row["cheetah_name"]) == "APPROVED"
        sim.admin.clear_faults()
        assert run_cycle(res, day, instance).success
    (row,) = ledger_rows(engine)
    assert row["state"] == "CANCELLED"
    assert _sim_status(sim, row["cheetah_name"]) == "CANCELLED"


def test_a_send_cancelled_mid_preparation_is_not_recorded_cancelled_unconfirmed(sim, db_url, engine, day):
    """The protocol deletes a send cancelled while it was being prepared (``protocol._step``): a
    DELETE answered 200 but not applied stops the send with the same clear message."""
    res = make_resources(sim, db_url)
    with dg.DagsterInstance.ephemeral() as instance:
        sim.admin.add_fault(kind="status", status=503, method="PUT", path=CAMPAIGN_PATH, times=None)
        assert not run_cycle(res, day, instance).success  # LAUNCH refused: the send stays CREATED
    sim.admin.clear_faults()
    (row,) = ledger_rows(engine)
    assert row["state"] == "CREATED"
    queries.set_campaign_status(engine, "X", "CANCELLED")
    sim.admin.add_fault(kind="unapplied", method="DELETE", path=CAMPAIGN_PATH, times=None)
    with cheetah_resource(sim).get_client() as client:
        sender = Sender(client=client, engine=engine, owner="run-2", now=sim.admin.now, step_backoff_seconds=0.01)
        with pytest.raises(SendError) as caught:
            sender.send(row["send_key"])
    _unapplied_delete_is_one_clear_message(str(caught.value))
    (after,) = ledger_rows(engine)
    assert after["state"] == "CREATED"
    assert _sim_status(sim, row["cheetah_name"]) not in (None, "CANCELLED")


def _cancellation_tick(instance, res, cursor):
    """One evaluation of the cancellation sensor, its cursor carried over as the daemon does."""
    ctx = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"customer_db": res["customer_db"], "clock": res["clock"]})
    data = cancellation_sensor.evaluate_tick(ctx)
    return data.run_requests or [], data.cursor, data.skip_message


def _as_the_daemon_would(request, **run) -> dict:
    """The tags the daemon gives the run it launches for ``request``."""
    return {**request.tags, "dagster/run_key": request.run_key, "dagster/sensor_name": cancellation_sensor.name, **run}


def test_the_sensor_requests_a_failed_cancellation_again_under_a_new_run_key(sim, db_url, engine, day):
    """A cancel job that failed (its DELETE not applied) is requested again on a later tick, with a
    new run key (the daemon never launches a key twice), but not while its run is still running;
    after a few failed runs of the same state the sensor stops and says so (review: send-path
    finding 4)."""
    res = make_resources(sim, db_url)
    with dg.DagsterInstance.ephemeral() as instance:
        assert run_cycle(res, day, instance).success
        queries.set_campaign_status(engine, "X", "CANCELLED")
        sim.admin.add_fault(kind="unapplied", method="DELETE", path=CAMPAIGN_PATH, times=None)
        (first,), cursor, _ = _cancellation_tick(instance, res, None)
        launched = cancel_campaign_job.execute_in_process(
            run_config=first.run_config, tags=_as_the_daemon_would(first), resources=res, instance=instance,
            raise_on_error=False,
        )
        assert not launched.success
        (second,), cursor, _ = _cancellation_tick(instance, res, cursor)
        assert second.run_config == first.run_config and second.run_key != first.run_key
        running = instance.create_run_for_job(
            cancel_campaign_job, run_config=second.run_config, tags=_as_the_daemon_would(second),
            status=dg.DagsterRunStatus.STARTED,
        )
        requests, cursor, _ = _cancellation_tick(instance, res, cursor)
        assert requests == []  # its run is still running
        instance.report_run_failed(running)
        keys = {first.run_key, second.run_key}
        while True:  # each failed run is requested again, up to a bound
            requests, cursor, skipped = _cancellation_tick(instance, res, cursor)
            if not requests:
                break
            (again,) = requests
            assert again.run_key not in keys
            keys.add(again.run_key)
            instance.report_run_failed(instance.create_run_for_job(
                cancel_campaign_job, run_config=again.run_config, tags=_as_the_daemon_would(again),
            ))
        assert len(keys) == MAX_REQUESTS
        assert f"the cancellation of X failed {MAX_REQUESTS} times" in skipped and "cancel_campaign_job" in skipped
        (row,) = ledger_rows(engine)
        assert row["state"] == "APPROVED"
        # Once Cheetah applies the DELETE, the job (run by hand) completes, and the sensor rests.
        sim.admin.clear_faults()
        assert _cancel(res, instance).success
        requests, cursor, skipped = _cancellation_tick(instance, res, cursor)
        assert requests == [] and "no cancelled campaign" in skipped
    (row,) = ledger_rows(engine)
    assert row["state"] == "CANCELLED" and _sim_status(sim, row["cheetah_name"]) == "CANCELLED"


# --- set-up checks --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "overrides, expected",
    [
        ({"consumer_secret": "wrong"}, "refused the credentials"),
        ({"client_id": "wrong"}, "Client Identifier"),
        ({"folder_id": "9999"}, "Folder ID"),
        ({"cust_id": ""}, "Cust_ID"),
        ({"folder_id": "abc"}, "Folder ID"),
        ({"endpoint": "http://example.com"}, "https"),
    ],
)
def test_setup_failure_is_one_clear_message(sim, db_url, engine, day, overrides, expected):
    with dg.DagsterInstance.ephemeral() as instance:
        result = run_cycle(make_resources(sim, db_url, **overrides), day, instance)
    assert not result.success
    messages = failure_messages(result)
    assert len(messages) == 1 and expected in messages[0], messages
    assert "Traceback" not in messages[0] and "\n" not in messages[0].strip()
    assert ledger_rows(engine) == []


def test_closed_ip_whitelist_reads_as_such(sim, db_url, engine, day):
    sim.admin.set_whitelist(False)
    try:
        with dg.DagsterInstance.ephemeral() as instance:
            result = run_cycle(make_resources(sim, db_url), day, instance)
    finally:
        sim.admin.set_whitelist(True)
    (message,) = failure_messages(result)
    assert "IP whitelist" in message


def _check(result, name):
    return {e.asset_check_key.name: e for e in result.get_asset_check_evaluations()}[name]


def test_unknown_prop_map_id_blocks_the_day(sim, db_url, engine, day):
    with dg.DagsterInstance.ephemeral() as instance:
        result = run_cycle(make_resources(sim, db_url, prop_map_id="404"), day, instance)
    check = _check(result, "account_setup")
    assert check.passed is False and "PROP_MAP_ID" in check.description
    # one clear sentence: the template-field check fails with the same sentence, not a traceback
    (failure,) = failure_messages(result)  # the blocking check's own failure, and only it
    assert "account_setup" in failure and "UnknownDataMap" not in failure
    fields = _check(result, "template_fields_mapped")
    assert fields.passed is False and "PROP_MAP_ID" in fields.description and "\n" not in fields.description
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert materialized == {"cheetah_template_catalog"}  # the blocking check stopped the rest
    assert ledger_rows(engine) == []


def test_missing_identifier_column_blocks_the_day(sim, tmp_path, day):
    url = f"sqlite:///{tmp_path / 'noid.db'}"
    engine = demo_database(
        url, sim, day, customers=10, campaigns=[("Y", "Y", "1002", "11:00")],
        alter="ALTER TABLE customers RENAME COLUMN email TO mail",
    )
    with dg.DagsterInstance.ephemeral() as instance:
        result = run_cycle(make_resources(sim, url), day, instance)
    check = _check(result, "account_setup")
    assert check.passed is False
    assert "no column 'email'" in check.description and "EMAIL_ADDR" in check.description
    assert ledger_rows(engine) == []


def test_a_floating_point_identifier_column_blocks_the_day_with_what_to_change(sim, tmp_path, day):
    """Regression (review item 8): the set-up check accepted an identifier column of type REAL,
    which SQLite sends as '123.0' (missing the suppression entry '123'). Now it blocks the day
    with one sentence naming the column and the Data Map field, and telling what to change."""
    url = f"sqlite:///{tmp_path / 'realid.db'}"
    engine = demo_database(
        url, sim, day, customers=10, campaigns=[("Y", "Y", "1002", "11:00")],
        alter="ALTER TABLE customers RENAME COLUMN email TO mail",
    )
    with engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE customers ADD COLUMN email REAL")
        conn.exec_driver_sql("UPDATE customers SET email = customer_pk")
    with dg.DagsterInstance.ephemeral() as instance:
        result = run_cycle(make_resources(sim, url), day, instance)
    check = _check(result, "account_setup")
    assert check.passed is False
    assert "customers.email" in check.description and "EMAIL_ADDR" in check.description
    assert "floating-point" in check.description and "integer or text column" in check.description
    assert ledger_rows(engine) == []


def test_template_field_missing_in_the_database_stops_only_its_campaign(sim, tmp_path, day):
    url = f"sqlite:///{tmp_path / 'nocity.db'}"
    engine = demo_database(
        url, sim, day, customers=30, campaigns=[("LOCAL", "LOCAL", "1006", "11:00"), ("NEWS", "NEWS", "1002", "11:00")],
        alter="ALTER TABLE customers DROP COLUMN city",
    )
    with dg.DagsterInstance.ephemeral() as instance:
        result = run_cycle(make_resources(sim, url), day, instance)
    assert result.success
    check = _check(result, "template_fields_mapped")
    assert check.passed is False and "CITY" in str(check.metadata["problems"].value)
    states = {r["campaign_id"]: r["state"] for r in ledger_rows(engine)}
    assert states == {"NEWS": "APPROVED"}


def _setup_cli(sim, url, **overrides):
    """``python -m cheetah_assets.sending.setup`` in a deployment's environment (https simulator)."""
    import os
    import subprocess
    import sys

    from cheetah_assets.cheetah.resource import ENV_VARS

    from .conftest import production_env

    env = {k: v for k, v in os.environ.items() if not k.startswith("CHEETAH_")}
    env.update(production_env(sim, url))
    env.update({ENV_VARS[field]: value for field, value in overrides.items()})
    return subprocess.run(
        [sys.executable, "-m", "cheetah_assets.sending.setup"], env=env, capture_output=True, text=True, timeout=120
    )


def test_setup_command_prints_one_line_per_check(tls_sim, db_url, engine):
    sim = tls_sim
    ok = _setup_cli(sim, db_url)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    # six checks pass; the send-path check warns: no CHEETAH_TEST_ADDRESS in this environment
    assert [line.split()[0] for line in ok.stdout.splitlines()] == ["ok"] * 4 + ["warn", "ok", "ok"], ok.stdout
    assert "ok    templates: 6 templates in the folder" in ok.stdout
    assert "warn  send_path: CHEETAH_TEST_ADDRESS is not set" in ok.stdout
    bad = _setup_cli(sim, db_url, consumer_secret="not-the-secret")
    assert bad.returncode == 1
    assert "FAIL  credentials: Cheetah Messaging refused the credentials" in bad.stdout
    assert "Traceback" not in bad.stdout + bad.stderr and "not-the-secret" not in bad.stdout + bad.stderr


def test_setup_command_names_each_template_field_whose_column_is_missing(tls_sim, tmp_path):
    """Set-up step 3 from the shell: template 1006 personalises with CITY, mapped to the dropped
    column ``city``. One line names the template, the field and the column; the command fails."""
    url = f"sqlite:///{tmp_path / 'nocity.db'}"
    demo_database(url, tls_sim, tls_sim.admin.now().date(), customers=10, alter="ALTER TABLE customers DROP COLUMN city")
    out = _setup_cli(tls_sim, url)
    assert out.returncode == 1, out.stdout + out.stderr
    (line,) = [line for line in out.stdout.splitlines() if "CITY" in line]
    assert line.startswith("FAIL  template_1006:") and "'city'" in line, line
    assert "Traceback" not in out.stdout + out.stderr


@pytest.mark.parametrize(
    "url, expected",
    [
        ("postgresql+psycopg2://postgres:pw-SECRET-1@127.0.0.1:5432/cheetah_no_such_database", "does not exist"),
        ("postgresql+psycopg2://postgres:pw-SECRET-1@127.0.0.1:1/customers", "127.0.0.1"),
        ("sqlite:////nonexistent-dir/customers.db", "/nonexistent-dir/customers.db does not exist"),
    ],
    ids=["no-such-database", "unreachable-server", "bad-path"],
)
def test_setup_command_names_a_customer_database_it_cannot_open(tls_sim, url, expected):
    """One FAIL line naming CUSTOMER_DB_URL and the problem (never the password); the Cheetah
    checks are still printed; exit 1."""
    out = _setup_cli(tls_sim, url)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "Traceback" not in out.stdout + out.stderr and "pw-SECRET-1" not in out.stdout + out.stderr
    assert "ok    credentials:" in out.stdout and "ok    data_map:" in out.stdout
    (line,) = [line for line in out.stdout.splitlines() if line.startswith("FAIL")]
    assert line.startswith("FAIL  identifier_column:") and "CUSTOMER_DB_URL" in line and expected in line, line


def test_a_folder_not_named_optimove_is_a_warning(sim):
    """Set-up step 5 names the folder "Optimove": a Folder ID naming another folder (a typo?) is
    said, as a warning (its templates can still be used), and does not block the day."""
    from cheetah_assets.sending.setup import check_account, failures

    sim.admin.add_account(
        consumerKey="other-key", consumerSecret="other-secret", clientId="other-client",
        custId=999, folder={"id": 5555, "name": "Archive - DO NOT USE", "parentId": 1},
    )
    findings, data_map = check_account(cheetah_resource(sim, folder_id="5555"))
    (folder,) = [f for f in findings if f.check == "folder"]
    assert folder.ok is False and folder.blocking is False, folder
    assert "'Archive - DO NOT USE'" in folder.message and "'Optimove'" in folder.message
    assert data_map is not None and not failures(findings, blocking=True)
