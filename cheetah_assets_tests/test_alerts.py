"""Alerts over a real SMTP server and a real HTTP webhook, both local, started by the tests."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import threading

import dagster as dg
import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller

from cheetah_assets.automation.alert_sensors import (
    SNAPSHOT_GRACE,
    alert_on_run_failure,
    missed_send_alert_sensor,
    overdue_snapshot_alert_sensor,
)
from cheetah_assets.automation.alerts import Alert, AlertDeliveryError, AlertsResource
from cheetah_assets.clock import ClockResource
from cheetah_assets.customers.resource import CustomerDatabaseResource
from cheetah_assets.customers.schema import send_ledger
from cheetah_assets.metrics.assets import campaigns_partitions, snapshot_partition_key


class _Inbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        self.messages.append((envelope.rcpt_tos, envelope.content.decode("utf-8", "replace")))
        return "250 OK"


@pytest.fixture
def smtp():
    import socket

    with socket.socket() as probe:  # aiosmtpd checks readiness by connecting: it needs a real port
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    inbox = _Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, inbox.messages
    finally:
        controller.stop()


class _Hook(http.server.BaseHTTPRequestHandler):
    posts: list = []
    status = 200

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).posts.append(json.loads(body))
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook():
    _Hook.posts, _Hook.status = [], 200
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", _Hook
    finally:
        server.shutdown()
        server.server_close()


def _alerts(smtp_port=None, hook=None, **extra) -> AlertsResource:
    fields = {}
    if smtp_port:
        fields.update(smtp_host="127.0.0.1", smtp_port=str(smtp_port), smtp_starttls="0",
                      email_to="ops@example.com, oncall@example.com", email_from="dagster@example.com")
    if hook:
        fields["webhook_url"] = hook
    return AlertsResource(**fields, **extra)


def test_an_alert_goes_by_email_and_webhook(smtp, webhook):
    port, inbox = smtp
    url, hook = webhook
    channels = _alerts(port, url).notify(Alert("missed_send", "2 sends MISSED", "- A\n- B", {"sends": "A, B"}))
    assert channels == ["webhook", "email"]
    (rcpts, content), = inbox
    assert sorted(rcpts) == ["oncall@example.com", "ops@example.com"]
    assert "Subject: [cheetah_assets] 2 sends MISSED" in content and "- A" in content
    (post,) = hook.posts
    assert post["kind"] == "missed_send" and post["title"] == "2 sends MISSED" and "- B" in post["text"]


def test_alerts_are_off_unless_configured():
    assert not AlertsResource().enabled
    assert not AlertsResource(smtp_host="127.0.0.1").enabled  # no recipient
    assert AlertsResource.from_env({}).channels == []


def test_a_failed_delivery_says_which_channel(webhook):
    url, hook = webhook
    hook.status = 500
    with pytest.raises(AlertDeliveryError, match="webhook: HTTPError"):
        _alerts(hook=url).notify(Alert("run_failure", "t", "x"))


@pytest.mark.parametrize("status", [404, 500])
def test_a_failed_webhook_never_shows_its_secret_path(webhook, status):
    """A webhook URL's path and query are its secret; the error (kept in the sensor's tick
    history) shows its scheme and host only."""
    url, hook = webhook
    hook.status = status
    secret_url = url.replace("/hook", "/services/T0001/B0002/hooksecretXYZ?token=tok-q9")
    with pytest.raises(AlertDeliveryError) as err:
        _alerts(hook=secret_url).notify(Alert("run_failure", "t", "x"))
    _assert_no_secret(err.value)
    assert f"webhook: HTTPError: {status}" in str(err.value) and url.rsplit("/", 1)[0] in str(err.value)


def test_an_unreachable_webhook_never_shows_its_secret_path():
    import socket

    with socket.socket() as probe:  # a loopback port nobody listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    secret_url = f"http://127.0.0.1:{port}/services/T0001/B0002/hooksecretXYZ?token=tok-q9"
    with pytest.raises(AlertDeliveryError) as err:
        _alerts(hook=secret_url).notify(Alert("run_failure", "t", "x"))
    _assert_no_secret(err.value)
    assert "webhook: ConnectionError" in str(err.value) and f"http://127.0.0.1:{port}" in str(err.value)


def _assert_no_secret(exc: BaseException) -> None:
    seen = exc
    while seen is not None:  # nor in a chained cause
        assert "hooksecretXYZ" not in str(seen) and "tok-q9" not in str(seen) and "/services/" not in str(seen), seen
        seen = seen.__cause__ or seen.__context__


@pytest.mark.parametrize("url", ["http://alerts.example.com/hook", "ftp://127.0.0.1/x"])
def test_a_webhook_is_https_except_on_loopback(url):
    with pytest.raises(AlertDeliveryError, match="https://"):
        AlertsResource(webhook_url=url).notify(Alert("run_failure", "t", "x"))


def test_plain_smtp_is_refused_off_loopback():
    alerts = AlertsResource(smtp_host="smtp.example.com", smtp_starttls="0", email_to="a@example.com")
    with pytest.raises(AlertDeliveryError, match="loopback"):
        alerts.notify(Alert("run_failure", "t", "x"))


def test_the_smtp_password_is_read_through_envvar_only():
    env = {"CHEETAH_ALERT_SMTP_HOST": "smtp.example.com", "CHEETAH_ALERT_SMTP_PASSWORD": "pw-3f9",
           "CHEETAH_ALERT_EMAIL_TO": "a@example.com"}
    resource = AlertsResource.from_env(env)
    assert "pw-3f9" not in repr(resource.__dict__)


def test_a_failed_run_is_alerted(webhook, smtp):
    url, hook = webhook
    port, inbox = smtp

    @dg.asset
    def breaks():
        raise dg.Failure(description="Cheetah Messaging refused the credentials.")

    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize([breaks], instance=instance, raise_on_error=False)
        assert not result.success
        failure = next(e for e in result.all_events if e.event_type_value == "PIPELINE_FAILURE")
        ctx = dg.build_run_status_sensor_context(
            sensor_name="alert_on_run_failure", dagster_instance=instance, dagster_run=result.dagster_run,
            dagster_event=failure, resources={"alerts": _alerts(port, url)},
        ).for_run_failure()
        alert_on_run_failure(ctx)
    (post,) = hook.posts
    assert post["kind"] == "run_failure" and "failed" in post["title"]
    assert "refused the credentials" in post["text"]
    assert post["details"]["run_id"] == result.run_id
    assert len(inbox) == 1


def _ledger_row(engine, key, state, send_at, updated_at, error=None):
    with engine.begin() as conn:
        conn.execute(send_ledger.insert().values(
            send_key=key, campaign_id=key.split("/")[0], template_id="1001", send_date=send_at.date(),
            list_key=f"{key.split('/')[0]}/{send_at.date()}", cheetah_name=f"OPT-{key.split('/')[0]}-1001-x",
            state=state, send_at=send_at, error=error, created_at=updated_at, updated_at=updated_at,
        ))


@pytest.fixture
def ledger_db(tmp_path):
    resource = CustomerDatabaseResource(url=f"sqlite:///{tmp_path / 'c.db'}")
    resource.get_engine(create=True)
    resource.ensure_tables()
    return resource


def test_each_missed_send_is_alerted_once(ledger_db, webhook):
    url, hook = webhook
    engine = ledger_db.get_engine()
    t0 = dt.datetime(2026, 11, 23, 9, tzinfo=dt.timezone.utc)
    _ledger_row(engine, "A/1001/2026-11-23", "MISSED", t0, t0, "send time passed before it became known")
    _ledger_row(engine, "B/1001/2026-11-23", "APPROVED", t0, t0)
    resources = {"customer_db": ledger_db, "alerts": _alerts(hook=url), "clock": ClockResource(fixed_now=t0.isoformat())}
    with dg.DagsterInstance.ephemeral() as instance:
        ctx = dg.build_sensor_context(instance=instance, resources=resources)
        missed_send_alert_sensor(ctx)
        assert [p["kind"] for p in hook.posts] == ["missed_send"]
        assert "A/1001/2026-11-23" in hook.posts[0]["text"] and "B/" not in hook.posts[0]["text"]
        ctx = dg.build_sensor_context(instance=instance, resources=resources, cursor=ctx.cursor)
        missed_send_alert_sensor(ctx)
        assert len(hook.posts) == 1  # not again
        _ledger_row(engine, "C/1001/2026-11-23", "MISSED", t0, t0 + dt.timedelta(minutes=5))
        ctx = dg.build_sensor_context(instance=instance, resources=resources, cursor=ctx.cursor)
        missed_send_alert_sensor(ctx)
    assert len(hook.posts) == 2 and "C/1001" in hook.posts[1]["text"] and "A/1001" not in hook.posts[1]["text"]


def _plan_row(engine, campaign_id, day, status, reason):
    from cheetah_assets.customers.schema import campaign_plan

    with engine.begin() as conn:
        conn.execute(campaign_plan.insert().values(
            send_date=day, campaign_id=campaign_id, template_id="1001", template_index=0, template_count=1,
            campaign_name=campaign_id, target_group="all_customers", send_at=None, status=status, reason=reason,
            planned_at=dt.datetime(2026, 11, 23, 12, tzinfo=dt.timezone.utc),
        ))


def test_a_campaign_the_plan_reports_missed_or_overdue_is_alerted_once(ledger_db, webhook):
    """Regression (review of this stop): the alert read only the ledger's MISSED sends; a campaign
    the plan reported MISSED (first seen too late) or OVERDUE (known, never handed over) has no
    ledger row, so nobody was told, although nothing was sent."""
    url, hook = webhook
    engine = ledger_db.get_engine()
    day = dt.date(2026, 11, 23)
    _plan_row(engine, "LATE", day, "MISSED", "first seen at 12:00 UTC, after its send time 11:00 UTC")
    _plan_row(engine, "KNOWN", day, "OVERDUE", "its send time 11:00 UTC passed before it was handed over")
    _plan_row(engine, "FINE", day, "SENT", None)
    _plan_row(engine, "OLD", day - dt.timedelta(days=30), "OVERDUE", "long ago")
    now = dt.datetime(2026, 11, 23, 12, 5, tzinfo=dt.timezone.utc)
    resources = {"customer_db": ledger_db, "alerts": _alerts(hook=url), "clock": ClockResource(fixed_now=now.isoformat())}
    with dg.DagsterInstance.ephemeral() as instance:
        ctx = dg.build_sensor_context(instance=instance, resources=resources)
        missed_send_alert_sensor(ctx)
        (post,) = hook.posts
        assert "LATE/1001/2026-11-23 MISSED" in post["text"] and "KNOWN/1001/2026-11-23 OVERDUE" in post["text"]
        assert "FINE" not in post["text"] and "OLD" not in post["text"]
        ctx = dg.build_sensor_context(instance=instance, resources=resources, cursor=ctx.cursor)
        missed_send_alert_sensor(ctx)
        assert len(hook.posts) == 1  # not again while they stay so


def test_an_overdue_snapshot_is_alerted_once_and_a_taken_one_never(ledger_db, webhook):
    url, hook = webhook
    engine = ledger_db.get_engine()
    send_at = dt.datetime(2026, 11, 20, 9, tzinfo=dt.timezone.utc)
    _ledger_row(engine, "A/1001/2026-11-20", "APPROVED", send_at, send_at)
    name = "OPT-A-1001-x"
    now = send_at + 2 * dt.timedelta(days=1) + SNAPSHOT_GRACE + dt.timedelta(minutes=1)  # day_1, day_2 overdue
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(campaigns_partitions.name, [name])
        instance.report_runless_asset_event(
            dg.AssetMaterialization("campaign_metric_snapshots", partition=str(snapshot_partition_key(name, 1)))
        )
        resources = {"customer_db": ledger_db, "alerts": _alerts(hook=url), "clock": ClockResource(fixed_now=now.isoformat())}
        ctx = dg.build_sensor_context(instance=instance, resources=resources)
        overdue_snapshot_alert_sensor(ctx)
        (post,) = hook.posts
        assert f"{name}|day_2" in post["text"] and "day_1" not in post["text"] and "day_3" not in post["text"]
        ctx = dg.build_sensor_context(instance=instance, resources=resources, cursor=ctx.cursor)
        overdue_snapshot_alert_sensor(ctx)
        assert len(hook.posts) == 1


def test_quiet_ticks_of_the_cancellation_and_missed_sensors_only_read(ledger_db):
    """Regression (review of this stop): each quiet tick of the two sensors created the tables again
    (BEGIN IMMEDIATE, a PRAGMA per table: 12 statements), so a run's open write transaction made a
    tick wait 120 s and fail. Now two reads each; the tables are made once per process."""
    import sqlalchemy as sa

    from cheetah_assets.automation.send_sensors import cancellation_sensor
    from cheetah_assets.customers.schema import create_demo_tables

    engine = ledger_db.get_engine()
    create_demo_tables(engine)
    resources = {"customer_db": ledger_db, "clock": ClockResource(), "alerts": _alerts()}
    statements: list[str] = []
    sa.event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    with dg.DagsterInstance.ephemeral() as instance:
        for sensor in (cancellation_sensor, missed_send_alert_sensor):
            sensor.evaluate_tick(dg.build_sensor_context(instance=instance, resources=resources))
            statements.clear()
            sensor.evaluate_tick(dg.build_sensor_context(instance=instance, resources=resources))
            assert len(statements) <= 2 and all(s.lstrip().upper().startswith("SELECT") for s in statements), statements


def _tick(sensor, instance, resources, cursor=None):
    ctx = dg.build_sensor_context(instance=instance, resources=resources, cursor=cursor)
    sensor(ctx)
    return ctx.cursor


def test_a_missed_send_committed_after_a_tick_with_an_older_time_is_alerted_once(ledger_db, webhook):
    """Regression (review of the alert cursor): the cursor was the newest ``updated_at`` reported,
    and the next tick asked only for rows above it. ``updated_at`` is the writing run's clock, read
    before its transaction commits, so a run that read its clock first (or whose clock is behind)
    can commit after a tick that already reported a later row: that MISSED send was never alerted.
    Such rows, and rows of the very same time (a fixed clock), are alerted once now."""
    url, hook = webhook
    engine = ledger_db.get_engine()
    t0 = dt.datetime(2026, 11, 23, 9, tzinfo=dt.timezone.utc)
    resources = {"customer_db": ledger_db, "alerts": _alerts(hook=url), "clock": ClockResource(fixed_now=t0.isoformat())}
    with dg.DagsterInstance.ephemeral() as instance:
        _ledger_row(engine, "A/1001/2026-11-23", "MISSED", t0, t0 + dt.timedelta(minutes=5))
        cursor = _tick(missed_send_alert_sensor, instance, resources)
        assert len(hook.posts) == 1 and "A/1001" in hook.posts[0]["text"]
        # Committed after that tick: a run that read its clock a minute earlier, and one at the same instant.
        _ledger_row(engine, "B/1001/2026-11-23", "MISSED", t0, t0 + dt.timedelta(minutes=4), "B's send time passed")
        _ledger_row(engine, "C/1001/2026-11-23", "MISSED", t0, t0 + dt.timedelta(minutes=5), "C's send time passed")
        cursor = _tick(missed_send_alert_sensor, instance, resources, cursor)
        assert len(hook.posts) == 2, "a MISSED send committed late was never alerted"
        text = hook.posts[1]["text"]
        assert "B/1001" in text and "C/1001" in text and "A/1001" not in text
        cursor = _tick(missed_send_alert_sensor, instance, resources, cursor)
        assert len(hook.posts) == 2  # each once
        # The cursor forgets what falls out of the look-back window: it stays bounded.
        _ledger_row(engine, "D/1001/2026-11-23", "MISSED", t0, t0 + dt.timedelta(hours=2))
        cursor = _tick(missed_send_alert_sensor, instance, resources, cursor)
        assert len(hook.posts) == 3 and "D/1001" in hook.posts[2]["text"]
        assert "A/1001" not in cursor and "B/1001" not in cursor and "D/1001" in cursor
        cursor = _tick(missed_send_alert_sensor, instance, resources, cursor)
        assert len(hook.posts) == 3


@pytest.mark.postgres
def test_on_postgres_a_ledger_write_that_commits_late_carries_an_older_time_and_is_alerted(webhook):
    """The mechanism, on PostgreSQL (READ COMMITTED) with the real clock: ``Ledger.advance`` reads
    its clock, then waits for the row (here another transaction's lock on it); a second run records
    its MISSED send meanwhile, and a tick reports it. The first commits afterwards with the older
    ``updated_at``: it must still be alerted."""
    import threading
    import time

    from cheetah_assets.sending.ledger import MISSED, Ledger

    from .pg import fresh_postgres_database

    url, hook = webhook
    with fresh_postgres_database() as pg_url:
        db = CustomerDatabaseResource(url=pg_url)
        engine = db.get_engine()
        db.ensure_tables()
        ledger = Ledger(engine, lambda: dt.datetime.now(dt.timezone.utc))
        day = dt.date(2026, 11, 23)
        for campaign in ("A", "B"):
            row = ledger.ensure(campaign_id=campaign, template_id="1001", send_date=day, list_key=f"{campaign}/{day}",
                                send_at=dt.datetime(2026, 11, 23, 9, tzinfo=dt.timezone.utc))
            assert ledger.claim(row.send_key, f"run-{campaign}") is not None
        resources = {"customer_db": db, "alerts": _alerts(hook=url), "clock": ClockResource()}
        with dg.DagsterInstance.ephemeral() as instance:
            cursor = _tick(missed_send_alert_sensor, instance, resources)
            blocker = engine.connect()
            blocker.begin()
            row_a = send_ledger.c.send_key == "A/1001/2026-11-23"
            blocker.execute(sa.select(send_ledger.c.send_key).where(row_a).with_for_update())
            writer = threading.Thread(target=ledger.advance, args=("A/1001/2026-11-23", "run-A", MISSED))
            writer.start()
            with engine.connect() as probe:  # until A's UPDATE waits for the row: its time is taken
                for _ in range(3000):
                    waiting = probe.execute(sa.text(
                        "SELECT count(*) FROM pg_stat_activity"
                        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                    )).scalar()
                    probe.rollback()  # pg_stat_activity is read once per transaction: a fresh one each time
                    if waiting:
                        break
                    time.sleep(0.01)
                assert waiting == 1
            ledger.advance("B/1001/2026-11-23", "run-B", MISSED)
            cursor = _tick(missed_send_alert_sensor, instance, resources, cursor)
            assert len(hook.posts) == 1 and "B/1001" in hook.posts[0]["text"] and "A/1001" not in hook.posts[0]["text"]
            blocker.rollback()
            blocker.close()
            writer.join(timeout=30)
            with engine.connect() as conn:
                times = dict(conn.execute(sa.select(send_ledger.c.send_key, send_ledger.c.updated_at)).all())
            assert times["A/1001/2026-11-23"] < times["B/1001/2026-11-23"]  # committed later, timed earlier
            cursor = _tick(missed_send_alert_sensor, instance, resources, cursor)
            assert len(hook.posts) == 2, "the MISSED send committed after the tick was never alerted"
            assert "A/1001" in hook.posts[1]["text"] and "B/1001" not in hook.posts[1]["text"]
            _tick(missed_send_alert_sensor, instance, resources, cursor)
            assert len(hook.posts) == 2
        engine.dispose()


def test_the_missed_alert_cursor_stays_bounded_and_reads_an_older_cursor(ledger_db, webhook, monkeypatch):
    """Past MISSED_REMEMBERED sends reported within the window, the window shrinks to the newest
    (none is reported twice); a cursor of the version before the window alerts nothing again."""
    from cheetah_assets.automation import alert_sensors

    url, hook = webhook
    engine = ledger_db.get_engine()
    t0 = dt.datetime(2026, 11, 23, 9, tzinfo=dt.timezone.utc)
    resources = {"customer_db": ledger_db, "alerts": _alerts(hook=url), "clock": ClockResource(fixed_now=t0.isoformat())}
    for i, campaign in enumerate("ABCDE"):
        _ledger_row(engine, f"{campaign}/1001/2026-11-23", "MISSED", t0, t0 + dt.timedelta(minutes=i))
    monkeypatch.setattr(alert_sensors, "MISSED_REMEMBERED", 2)
    with dg.DagsterInstance.ephemeral() as instance:
        cursor = _tick(missed_send_alert_sensor, instance, resources)
        assert len(hook.posts) == 1 and all(f"{c}/1001" in hook.posts[0]["text"] for c in "ABCDE")
        assert sorted(json.loads(cursor)["seen"]) == ["D/1001/2026-11-23#0", "E/1001/2026-11-23#0"]
        cursor = _tick(missed_send_alert_sensor, instance, resources, cursor)
        assert len(hook.posts) == 1
        old = json.dumps({"t": (t0 + dt.timedelta(minutes=4)).isoformat(), "plan": []})
        _tick(missed_send_alert_sensor, instance, resources, old)
        assert len(hook.posts) == 1
