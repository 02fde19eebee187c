"""Plain functions of the send path, without Dagster: ledger claims, send times, file splitting, planning handed-over sends."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cheetah_assets.cheetah.records import DataMap, DataMapField
from cheetah_assets.customers import seed
from cheetah_assets.customers.resource import CustomerDatabaseResource
from cheetah_assets.customers.schema import create_demo_tables, create_integration_tables
from cheetah_assets.sending import ledger as sending_ledger
from cheetah_assets.sending import plan as sending_plan
from cheetah_assets.sending.catalog import CatalogEntry
from cheetah_assets.sending.plan import PlanProblem, resolve_send_at
from cheetah_assets.sending.importing import csv_bytes, import_files

NOW = dt.datetime(2026, 11, 23, 6, 0, tzinfo=dt.timezone.utc)
DAY = NOW.date()


@pytest.fixture
def ledger(tmp_path):
    engine = CustomerDatabaseResource(url=f"sqlite:///{tmp_path / 'l.db'}").get_engine(create=True)
    create_integration_tables(engine)
    clock = {"now": NOW}
    led = sending_ledger.Ledger(engine, lambda: clock["now"])
    led.clock = clock
    return led


def _row(ledger, cid="C1"):
    return ledger.ensure(campaign_id=cid, template_id="1001", send_date=DAY, list_key=f"{cid}/{DAY}", send_at=NOW + dt.timedelta(hours=3))


def test_ensure_is_idempotent_and_names_are_deterministic(ledger):
    a = _row(ledger)
    b = _row(ledger)
    assert a == b and a.state == sending_ledger.PENDING
    assert a.cheetah_name == "OPT-C1-1001-20261123" == sending_ledger.cheetah_name("C1", "1001", DAY)
    # Ids that sanitising changes keep a readable prefix and get a hash of the raw ids, so
    # "a b/c" no longer takes the name of the (different) campaign "a_b_c" (issue 8 item 5).
    assert sending_ledger.cheetah_name("a b/c", "1", DAY).startswith("OPT-a_b_c-1-20261123-")
    assert sending_ledger.cheetah_name("a b/c", "1", DAY) != sending_ledger.cheetah_name("a_b_c", "1", DAY) == "OPT-a_b_c-1-20261123"


def test_claim_is_exclusive_until_released_expired_or_dead(ledger):
    row = _row(ledger)
    assert ledger.claim(row.send_key, "run-1") is not None
    assert ledger.claim(row.send_key, "run-2") is None
    assert ledger.claim(row.send_key, "run-1") is not None  # re-entrant for its owner
    # A dead owner's claim is taken over at once.
    assert ledger.claim(row.send_key, "run-2", owner_alive=lambda o: o != "run-1") is not None
    assert ledger.get(row.send_key).claimed_by == "run-2"
    # An expired lease is taken over even when the owner cannot be judged.
    ledger.clock["now"] = NOW + sending_ledger.DEFAULT_LEASE + dt.timedelta(seconds=1)
    assert ledger.claim(row.send_key, "run-3") is not None
    ledger.release(row.send_key, "run-3")
    assert ledger.get(row.send_key).claimed_by is None


def test_advance_requires_the_claim(ledger):
    row = _row(ledger)
    ledger.claim(row.send_key, "run-1")
    assert ledger.advance(row.send_key, "run-1", sending_ledger.IMPORTING, rows_in_list=5).state == sending_ledger.IMPORTING
    with pytest.raises(sending_ledger.LostClaim):
        ledger.advance(row.send_key, "run-2", sending_ledger.IMPORTED)
    assert ledger.get(row.send_key).state == sending_ledger.IMPORTING


def test_only_one_of_many_racing_claimants_wins(ledger):
    row = _row(ledger)
    n_threads = 8
    outcomes: dict[int, bool] = {}  # thread -> whether its claim succeeded
    errors: dict[int, BaseException] = {}  # an exception in a thread would not fail the test by itself
    barrier = threading.Barrier(n_threads)

    def race(n):
        try:
            barrier.wait(timeout=30)
            outcomes[n] = ledger.claim(row.send_key, f"run-{n}") is not None
        except BaseException as exc:  # noqa: BLE001 - reported below, with the thread
            errors[n] = exc

    threads = [threading.Thread(target=race, args=(n,)) for n in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert errors == {}
    assert sorted(outcomes) == list(range(n_threads))  # every thread reported
    winners = [n for n, won in outcomes.items() if won]
    assert len(winners) == 1
    assert ledger.get(row.send_key).claimed_by == f"run-{winners[0]}"


@pytest.mark.parametrize(
    "day, at, tz, expected",
    [
        (dt.date(2026, 11, 23), "15:00", "UTC", dt.datetime(2026, 11, 23, 15, 0, tzinfo=dt.timezone.utc)),
        (dt.date(2026, 11, 23), "09:30", "America/New_York", dt.datetime(2026, 11, 23, 14, 30, tzinfo=dt.timezone.utc)),
        (dt.date(2026, 7, 1), "09:00", "Europe/Paris", dt.datetime(2026, 7, 1, 7, 0, tzinfo=dt.timezone.utc)),
        (dt.date(2026, 10, 25), "02:30", "Europe/Paris", dt.datetime(2026, 10, 25, 0, 30, tzinfo=dt.timezone.utc)),
    ],
)
def test_send_times_resolve_to_utc(day, at, tz, expected):
    assert resolve_send_at(day, at, tz) == expected


@pytest.mark.parametrize(
    "at, tz, message",
    [
        ("02:30", "Europe/Paris", "daylight-saving gap"),
        ("12:00", None, "has no time zone"),
        ("12:00", " ", "has no time zone"),
        ("12:00", "Nowhere/City", "not an IANA time zone"),
        ("7pm", "UTC", "is not HH:MM"),
    ],
)
def test_bad_send_times_name_the_problem(at, tz, message):
    with pytest.raises(PlanProblem, match=message):
        resolve_send_at(dt.date(2026, 3, 29), at, tz)


def test_files_respect_row_and_byte_limits_and_keep_every_row():
    rows = [(f"user{i}@example.com", {"FNAME": "x" * (i % 7)}) for i in range(1000)]
    header = ["EMAIL_ADDR", "FNAME"]
    batches = list(import_files(iter(rows), header, max_rows=300, max_bytes=10**9))
    assert [len(b) for b in batches] == [300, 300, 300, 100]
    batches = list(import_files(iter(rows), header, max_rows=10**6, max_bytes=4000))
    assert sum(len(b) for b in batches) == 1000
    assert all(len(csv_bytes(header, b)) <= 4000 for b in batches)
    assert [r[0] for b in batches for r in b] == [r[0] for r in rows]
    assert csv_bytes(header, [("a@b.c", ["O'Neil, \"Jr\""])]).decode() == 'EMAIL_ADDR,FNAME\r\na@b.c,"O\'Neil, ""Jr"""\r\n'


_ACCOUNTS = {"this": ("http://127.0.0.1:8765", "1234"), "another": ("https://api.old-region.example.com", "1234")}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    state=st.sampled_from(sorted(sending_ledger.TERMINAL | sending_ledger.TOUCHED_CHEETAH | {sending_ledger.PENDING})),
    account=st.sampled_from([None, "this", "another"]),
    minutes=st.integers(min_value=-300, max_value=900),
)
def test_a_send_the_ledger_records_as_handed_over_is_never_missed_or_overdue(tmp_path_factory, state, account, minutes):
    """Whatever account the ledger row names and however late the day is planned again, an APPROVED
    (or EMPTY) send is SENT once its time has passed; before it, an EMPTY one of another account is
    READY (nothing went out there: it is sent to this account), and one whose campaign may go out in
    another account (CREATED, LAUNCHED, APPROVED) is never READY: it is held, as ledger rule 4 says."""
    day = dt.date(2026, 12, 3)
    send_at = dt.datetime(2026, 12, 3, 9, tzinfo=dt.timezone.utc)
    now = send_at + dt.timedelta(minutes=minutes)
    engine = CustomerDatabaseResource(url=f"sqlite:///{tmp_path_factory.mktemp('plan') / 'c.db'}").get_engine(create=True)
    create_demo_tables(engine)
    create_integration_tables(engine)
    seed.add_campaign(engine, campaign_id="C1", send_date=day, send_time="09:00", time_zone="UTC",
                      template_ids="1002", target_group="all_customers")
    book = sending_ledger.Ledger(engine, lambda: send_at - dt.timedelta(hours=3))
    row = book.ensure(campaign_id="C1", template_id="1002", send_date=day, list_key="C1/2026-12-03", send_at=send_at)
    assert book.claim(row.send_key, "run-1", owner_alive=lambda _: True) is not None
    values = {} if account is None else dict(zip(("endpoint", "cust_id"), _ACCOUNTS[account]))
    book.advance(row.send_key, "run-1", state, **values)
    book.release(row.send_key, "run-1")
    data_map = DataMap(id=77, name="m", fields=(DataMapField("EMAIL_ADDR", "email", "text", True),))
    (planned,) = sending_plan.plan_day(
        engine, day, catalog={"1002": CatalogEntry("1002", "Welcome", ())}, data_map=data_map,
        customer_columns={"email"}, now=now, account=sending_ledger.Account(*_ACCOUNTS["this"]),
    )
    handed_over = state in (sending_ledger.APPROVED, sending_ledger.EMPTY)
    if handed_over:
        assert planned.status not in (sending_plan.MISSED, sending_plan.OVERDUE), planned
    if handed_over and now >= send_at:
        assert planned.status == sending_plan.SENT, planned
        assert (account == "another") == ("another account" in (planned.reason or "")), planned
    if state == sending_ledger.EMPTY and account == "another" and now < send_at:
        assert planned.status == sending_plan.READY, planned
    if state in sending_ledger.MAY_GO_OUT and account == "another":
        assert planned.status != sending_plan.READY, planned
        went_out = state == sending_ledger.APPROVED and now >= send_at
        assert sending_plan.held(planned) is not went_out, planned
        assert "Cust_ID 1234 at https://api.old-region.example.com" in (planned.reason or ""), planned


@pytest.mark.parametrize("one, other, same", [
    (("http://127.0.0.1:8765", "1234"), ("http://localhost:49152", "1234"), True),
    (("http://127.0.0.1:8765", "1234"), ("http://[::1]:8766/", "1234"), True),
    (("http://127.0.0.1:8765", "1234"), ("http://127.0.0.1:8765", "5678"), False),
    (("https://api.cheetah.example.com", "1234"), ("https://API.cheetah.example.com", "1234"), True),
    (("https://api.cheetah.example.com", "1234"), ("https://api.cheetah.example.com:8443", "1234"), False),
    (("https://api.cheetah.example.com", "1234"), ("https://api.old-region.example.com", "1234"), False),
    (("http://127.0.0.1:8765", "1234"), ("https://api.cheetah.example.com", "1234"), False),
])
def test_every_loopback_address_and_port_is_one_account_and_real_endpoints_are_compared_whole(one, other, same):
    """Regression (review of this stop): a simulator restarted on another free port made every
    send of the demo "another account's" (metrics never fetched again, today's started afresh)."""
    a, b = sending_ledger.Account(*one), sending_ledger.Account(*other)
    assert a.same_as(b) is same and b.same_as(a) is same
