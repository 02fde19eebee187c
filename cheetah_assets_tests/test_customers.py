"""The customer database: demo seed, schedule, frozen recipient lists, streaming, the resource.

Every database test runs against a real SQLite file and a fresh PostgreSQL database.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import threading
import time
import tracemalloc
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from cheetah_assets.customers import demo_data, freeze, queries, schema, seed
from cheetah_assets.customers.identifiers import normalise_identifier
from cheetah_assets.customers.engines import dispose_engine, engine_for
from cheetah_assets.customers.queries import (
    CustomerSchemaError,
    count_recipients,
    freeze_recipient_list,
    get_frozen_list,
    is_list_locked,
    iter_recipient_chunks,
    iter_recipient_rows,
    list_key,
    load_schedule,
    missing_columns,
    recipient_preview,
    set_campaign_status,
    template_for,
)
from cheetah_assets.customers.resource import CustomerDatabaseResource
from cheetah_assets.customers.schema import recipient, recipient_list
from cheetah_assets.customers.seed import SeedError, add_campaign, add_customers, add_suppression, seed_demo

from .ledger_rows import insert_ledger_row
from .pg import fresh_postgres_database

NOW = dt.datetime(2025, 11, 23, 14, 7, 30, tzinfo=dt.timezone.utc)
TODAY = NOW.date()
DAY = dt.date(2025, 11, 24)
DEMO_FIELDS = {"FNAME": "first_name", "LNAME": "last_name", "FAV_DEPT": "fav_dept", "CITY": "city"}


# ------------------------------------------------------------------------------------------------
# fixtures
# ------------------------------------------------------------------------------------------------
@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'customers.db'}"
        engine_for(url, create=True)
        yield url
        dispose_engine(url)
    else:
        with fresh_postgres_database() as url:
            yield url


@pytest.fixture
def engine(db_url):
    return engine_for(db_url)


@pytest.fixture
def empty_db(engine):
    """Demo and integration tables, no rows."""
    schema.create_demo_tables(engine)
    schema.create_integration_tables(engine)
    return engine


def _freeze(engine, campaign_id="C1", templates=("1001",), group="all_customers", **kw):
    return freeze_recipient_list(
        engine,
        campaign_id=campaign_id,
        send_date=DAY,
        target_group=group,
        identifier_column=kw.pop("identifier_column", "email"),
        fields=kw.pop("fields", DEMO_FIELDS),
        template_ids=list(templates),
        **kw,
    )


def _recipients(engine, key) -> dict[str, tuple[str, dict]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(recipient.c.identifier, recipient.c.template_id, recipient.c.attrs).where(
                recipient.c.list_key == key
            )
        ).all()
    out = {i: (t, json.loads(a)) for i, t, a in rows}
    assert len(out) == len(rows)
    return out


def _add_ledger(engine, key, campaign_id, template_id, state):
    insert_ledger_row(engine, campaign_id=campaign_id, template_id=template_id, send_date=DAY, state=state, list_key=key)


def _scalar(engine, stmt):
    with engine.connect() as conn:
        return conn.execute(stmt).scalar()


def _assert_consistent(result):
    assert result.in_target_group == (
        result.row_count
        + result.excluded_missing_identifier
        + result.excluded_suppressed
        + result.collapsed_duplicates
    )
    assert sum(result.per_template.values()) == result.row_count


# ------------------------------------------------------------------------------------------------
# seed
# ------------------------------------------------------------------------------------------------
def test_seed_summary_matches_database(engine):
    summary = seed_demo(engine, customers=3_000, days=3, today=TODAY, now=NOW, seed=7)
    c = schema.customers
    tgm = schema.target_group_members
    assert summary.customers == 3_000 == _scalar(engine, sa.select(sa.func.count()).select_from(c))
    with engine.connect() as conn:
        stmt = sa.select(tgm.c.target_group, sa.func.count()).group_by(tgm.c.target_group)
        groups = dict(conn.execute(stmt).all())
    assert groups == summary.target_groups
    assert groups["all_customers"] == 3_000
    assert 0.06 < groups["vip"] / 3_000 < 0.14
    assert 0.25 < groups["winter_shoppers"] / 3_000 < 0.35
    assert 0.02 < groups["new_signups"] / 3_000 < 0.08

    assert summary.null_emails == _scalar(engine, sa.select(sa.func.count()).where(c.c.email.is_(None)))
    assert summary.blank_emails == _scalar(
        engine, sa.select(sa.func.count()).where(sa.func.trim(c.c.email) == "")
    )
    assert summary.malformed_emails == _scalar(
        engine,
        sa.select(sa.func.count()).where(sa.func.trim(c.c.email) != "", c.c.email.not_like("%@%")),
    )
    for n in (summary.null_emails, summary.blank_emails, summary.malformed_emails, summary.case_duplicates):
        assert 0 < n < 3_000 * 0.03
    # case duplicates: addresses that collapse under lower(trim())
    present = sa.and_(c.c.email.is_not(None), sa.func.trim(c.c.email) != "")
    n_present = _scalar(engine, sa.select(sa.func.count()).where(present))
    n_distinct = _scalar(
        engine, sa.select(sa.func.count(sa.distinct(sa.func.lower(sa.func.trim(c.c.email))))).where(present)
    )
    assert n_present - n_distinct == summary.case_duplicates
    assert summary.suppressed == _scalar(engine, sa.select(sa.func.count()).select_from(schema.suppression))
    assert 0.01 < summary.suppressed / 3_000 < 0.03

    with engine.connect() as conn:
        campaigns = conn.execute(sa.select(schema.campaign_schedule)).mappings().all()
    assert len(campaigns) == summary.campaigns == sum(summary.campaigns_per_day.values())
    per_nominal_day: dict[str, list] = {}
    for row in campaigns:
        per_nominal_day.setdefault(row["campaign_id"].split("-")[0], []).append(row)
        assert row["time_zone"] in ("UTC", "Europe/London", "America/New_York")
        assert set(row["template_ids"].split(",")) <= {"1001", "1002", "1003", "1004", "1005", "1006"}
        assert row["status"] == "SCHEDULED"
    assert sorted(per_nominal_day) == [f"C{TODAY + dt.timedelta(days=i):%Y%m%d}" for i in range(3)]
    for day_rows in per_nominal_day.values():
        assert 2 <= len(day_rows) <= 4
        assert [r["template_ids"] for r in day_rows].count("1001,1003") == 1

    # A second seed is refused; reset=True starts over with the same data.
    with pytest.raises(SeedError, match="reset"):
        seed_demo(engine, customers=10, days=1, today=TODAY, now=NOW)
    again = seed_demo(engine, customers=3_000, days=3, today=TODAY, now=NOW, seed=7, reset=True)
    assert again.target_groups == summary.target_groups
    assert again.campaign_ids == summary.campaign_ids


def _content_digest(engine) -> str:
    h = hashlib.sha256()
    with engine.connect() as conn:
        for table in schema.OPTIMOVE_TABLES:
            cols = [col for col in table.c if col.name not in ("updated_at", "added_at")]
            for row in conn.execute(sa.select(*cols).order_by(*table.primary_key.columns)):
                h.update(repr(tuple(row)).encode())
    return h.hexdigest()


def test_seed_is_deterministic(tmp_path):
    digests = []
    for name, seed_value in (("a", 42), ("b", 42), ("c", 43)):
        eng = engine_for(f"sqlite:///{tmp_path / name}.db", create=True)
        seed_demo(eng, customers=500, days=2, today=TODAY, now=NOW, seed=seed_value)
        digests.append(_content_digest(eng))
        dispose_engine(eng.url)
    assert digests[0] == digests[1] != digests[2]


@pytest.mark.parametrize(
    "now",
    [
        dt.datetime(2025, 11, 23, 14, 7, 30, tzinfo=dt.timezone.utc),
        dt.datetime(2025, 11, 23, 23, 10, tzinfo=dt.timezone.utc),  # +60 min is tomorrow in UTC/London
        dt.datetime(2025, 11, 24, 4, 50, tzinfo=dt.timezone.utc),  # still the 23rd in New York
    ],
)
def test_todays_campaigns_are_at_least_an_hour_ahead_on_their_local_date(now):
    import random

    for seed_value in range(20):
        rows = demo_data.plan_campaigns(days=2, today=now.date(), now=now, rng=random.Random(seed_value))
        today_rows = [r for r in rows if r["campaign_id"].startswith(f"C{now.date():%Y%m%d}")]
        assert 2 <= len(today_rows) <= 4
        for row in today_rows:
            tz = ZoneInfo(row["time_zone"])
            hh, mm = map(int, row["send_time"].split(":"))
            local = dt.datetime.combine(row["send_date"], dt.time(hh, mm), tzinfo=tz)
            instant = local.astimezone(dt.timezone.utc)
            assert now + dt.timedelta(minutes=60) <= instant <= now + dt.timedelta(minutes=60 + 15 * 3 + 5)
            # send_date is the local date of the send in the campaign's own time zone
            back = instant.astimezone(tz)
            assert (back.date(), back.strftime("%H:%M")) == (row["send_date"], row["send_time"])
        for row in rows:
            if row not in today_rows:
                assert row["send_time"] in ("09:00", "13:30", "18:00")
                assert row["send_date"] == now.date() + dt.timedelta(days=1)
    if now.hour == 23:  # crossing midnight moves UTC campaigns to the next day
        rows = demo_data.plan_campaigns(days=1, today=now.date(), now=now, rng=random.Random(1))
        utc_rows = [r for r in rows if r["time_zone"] == "UTC"]
        assert utc_rows and all(r["send_date"] == now.date() + dt.timedelta(days=1) for r in utc_rows)


def test_seed_cli_never_prints_password(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    assert seed.main(["--url", url, "--customers", "300", "--days", "2"]) == 0
    out = capsys.readouterr().out
    assert "customers:    300" in out and "campaigns:" in out
    assert seed.main(["--url", url, "--customers", "300"]) == 2
    assert "--reset" in capsys.readouterr().err
    assert seed.main(["--url", url, "--customers", "200", "--reset"]) == 0
    assert "customers:    200" in capsys.readouterr().out
    dispose_engine(url)

    secret_url = "postgresql+psycopg2://someone:s3cr3t-pw@127.0.0.1:1/nowhere"
    assert seed.main(["--url", secret_url, "--customers", "10"]) == 1
    captured = capsys.readouterr()
    assert "s3cr3t-pw" not in captured.out + captured.err
    assert "someone:***@127.0.0.1:1" in captured.err
    dispose_engine(secret_url)


# ------------------------------------------------------------------------------------------------
# schedule
# ------------------------------------------------------------------------------------------------
def test_schedule_and_status(empty_db):
    add_campaign(empty_db, campaign_id="B", name="Bee", send_date=DAY, send_time="13:30",
                 time_zone="Europe/London", template_ids=" 1001, 1003,,1001 ,", target_group="vip")
    add_campaign(empty_db, campaign_id="A", send_date=DAY, template_ids=["1002"], time_zone=None)
    add_campaign(empty_db, campaign_id="Z", send_date=DAY + dt.timedelta(days=1), template_ids="1004")
    plan = load_schedule(empty_db, DAY)
    assert [c.campaign_id for c in plan] == ["A", "B"]
    a, b = plan
    assert b.template_ids == ("1001", "1003")
    assert (b.name, b.send_date, b.send_time, b.time_zone, b.target_group, b.status) == (
        "Bee", DAY, "13:30", "Europe/London", "vip", "SCHEDULED")
    assert a.template_ids == ("1002",) and a.time_zone is None
    assert set_campaign_status(empty_db, "B", "CANCELLED") is True
    assert [c.status for c in load_schedule(empty_db, DAY)] == ["SCHEDULED", "CANCELLED"]
    assert set_campaign_status(empty_db, "nope", "CANCELLED") is False
    with pytest.raises(ValueError):
        set_campaign_status(empty_db, "A", "SENT")


# ------------------------------------------------------------------------------------------------
# freezing
# ------------------------------------------------------------------------------------------------
def _person(email, first="F", **extra):
    return {"email": email, "first_name": first, "last_name": "L", "fav_dept": "Shoes", "city": "Paris",
            **extra}


def test_freeze_excludes_collapses_and_counts(empty_db):
    eng = empty_db
    add_customers(eng, [
        _person("ann@example.com", "Ann"),            # kept
        _person("  Bob@Example.com ", "Bob1"),        # kept (lowest pk of bob), stored normalised
        _person("BOB@example.COM", "Bob2"),           # duplicate of bob
        _person("bob@example.com", "Bob3"),           # duplicate of bob
        _person(None, "Null"),                        # missing
        _person("", "Empty"),                         # missing
        _person("   ", "Blank"),                      # missing
        _person("Sup@Example.com", "Sup1"),           # suppressed (case-insensitive)
        _person("sup@example.com", "Sup2"),           # suppressed too, not a "duplicate"
        _person("gone@example.com", "Gone"),          # suppressed via a padded suppression row
        _person("no-at-sign.example.com", "Mal"),     # malformed is kept: Cheetah rejects it later
        _person("dee@example.com", None, fav_dept=None),  # NULL personalisation stays null
    ])
    add_customers(eng, [_person("outsider@example.com")], groups=["vip"])  # not in the group
    add_suppression(eng, "SUP@EXAMPLE.COM", "unsubscribed")
    add_suppression(eng, "  gone@EXAMPLE.com ", "bounced")
    add_suppression(eng, "outsider@example.com", "bounced")

    result = _freeze(eng)
    assert result.list_key == list_key("C1", DAY) == "C1/2025-11-24"
    assert result.reused is False
    assert (result.in_target_group, result.row_count, result.excluded_missing_identifier,
            result.excluded_suppressed, result.collapsed_duplicates) == (12, 4, 3, 3, 2)
    _assert_consistent(result)
    assert result.per_template == {"1001": 4}

    stored = _recipients(eng, result.list_key)
    assert sorted(stored) == sorted(
        ["ann@example.com", "bob@example.com", "no-at-sign.example.com", "dee@example.com"])
    assert stored["bob@example.com"][1] == {
        "FNAME": "Bob1", "LNAME": "L", "FAV_DEPT": "Shoes", "CITY": "Paris"}
    assert stored["dee@example.com"][1]["FNAME"] is None
    assert stored["dee@example.com"][1]["FAV_DEPT"] is None

    with eng.connect() as conn:
        row = conn.execute(sa.select(recipient_list)).mappings().one()
    assert (row["row_count"], row["in_target_group"], row["excluded_missing_identifier"],
            row["excluded_suppressed"], row["collapsed_duplicates"]) == (4, 12, 3, 3, 2)
    assert row["identifier_column"] == "email"
    assert json.loads(row["fields"]) == DEMO_FIELDS
    assert row["campaign_id"] == "C1" and row["send_date"] == DAY

    # Another group, another list: vip holds only the (suppressed) outsider.
    vip = _freeze(eng, campaign_id="C2", group="vip")
    assert (vip.in_target_group, vip.row_count, vip.excluded_suppressed) == (1, 0, 1)
    assert vip.per_template == {"1001": 0}

    preview = recipient_preview(eng, result.list_key, limit=3)
    assert list(preview.columns) == ["identifier", "template_id", "FNAME", "LNAME", "FAV_DEPT", "CITY"]
    assert len(preview) == 3
    # what is sent: the winning customer's own value, stripped (bob's lowest pk wrote "  Bob@Example.com ")
    assert list(preview["identifier"]) == ["ann@example.com", "Bob@Example.com", "dee@example.com"]
    with eng.connect() as conn:
        addresses = dict(conn.execute(sa.select(recipient.c.identifier, recipient.c.address).where(
            recipient.c.list_key == result.list_key)).all())
    assert addresses == {"ann@example.com": None, "bob@example.com": "Bob@Example.com",
                         "no-at-sign.example.com": None, "dee@example.com": None}


def test_template_split_is_deterministic_and_pending_list_is_rebuilt(engine):
    seed_demo(engine, customers=2_000, days=1, today=TODAY, now=NOW)
    first = _freeze(engine, templates=("1001", "1003"))
    _assert_consistent(first)
    assert first.per_template["1001"] > 700 and first.per_template["1003"] > 700
    stored = _recipients(engine, first.list_key)
    assert all(t == template_for(i, ["1001", "1003"]) for i, (t, _) in stored.items())

    # A PENDING (or MISSED) ledger row does not freeze the list: a re-freeze re-reads customers.
    _add_ledger(engine, first.list_key, "C1", "1001", "PENDING")
    _add_ledger(engine, first.list_key, "C1", "1003", "MISSED")
    assert not is_list_locked(engine, first.list_key)
    again = _freeze(engine, templates=("1001", "1003"))
    assert again.reused is False
    assert again.per_template == first.per_template
    assert {i: t for i, (t, _) in _recipients(engine, first.list_key).items()} == {
        i: t for i, (t, _) in stored.items()}

    newcomer = "zed.newcomer@example.com"
    victim = next(i for i in stored)
    with engine.connect() as conn:  # every customer whose identifier normalises to the victim's
        emails = conn.execute(sa.select(schema.customers.c.email)).scalars().all()
    victims = sum(1 for e in emails if e is not None and normalise_identifier(e) == victim)
    add_customers(engine, [_person(newcomer, "Zed")])
    add_suppression(engine, victim.upper(), "unsubscribed")
    target = next(i for i in stored if i != victim)
    c = schema.customers
    with engine.begin() as conn:
        conn.execute(sa.update(c).where(sa.func.trim(c.c.email) == target).values(first_name="Renamed"))
    rebuilt = _freeze(engine, templates=("1001", "1003"))
    _assert_consistent(rebuilt)
    assert rebuilt.row_count == first.row_count  # one in, one suppressed
    # each of the victim's customers is now counted as suppressed, no longer as a duplicate
    assert rebuilt.excluded_suppressed == first.excluded_suppressed + victims
    assert rebuilt.collapsed_duplicates == first.collapsed_duplicates - (victims - 1)
    now_stored = _recipients(engine, first.list_key)
    assert newcomer in now_stored and victim not in now_stored
    assert now_stored[newcomer][0] == template_for(newcomer, ["1001", "1003"])
    assert now_stored[target][1]["FNAME"] == "Renamed"
    assert rebuilt.frozen_at > first.frozen_at


def test_list_is_locked_once_the_ledger_advances(engine):
    seed_demo(engine, customers=1_000, days=1, today=TODAY, now=NOW)
    first = _freeze(engine, templates=("1001", "1003"))
    stored = _recipients(engine, first.list_key)
    _add_ledger(engine, first.list_key, "C1", "1001", "PENDING")
    _add_ledger(engine, first.list_key, "C1", "1003", "IMPORTED")
    assert is_list_locked(engine, first.list_key)

    add_customers(engine, [_person("late.comer@example.com")])
    c = schema.customers
    with engine.begin() as conn:
        conn.execute(sa.update(c).values(first_name="Changed"))
        tgm = schema.target_group_members
        conn.execute(sa.delete(tgm).where(tgm.c.customer_pk < 100))

    again = _freeze(engine, templates=("1001", "1003"))
    assert again.reused is True
    assert (again.row_count, again.in_target_group, again.excluded_missing_identifier,
            again.excluded_suppressed, again.collapsed_duplicates, again.per_template) == (
        first.row_count, first.in_target_group, first.excluded_missing_identifier,
        first.excluded_suppressed, first.collapsed_duplicates, first.per_template)
    assert again.frozen_at == first.frozen_at
    assert _recipients(engine, first.list_key) == stored
    assert get_frozen_list(engine, first.list_key, ["1001", "1003"]).row_count == first.row_count
    # Even a different request (other templates) gets the frozen list untouched.
    other = _freeze(engine, templates=("1002",), fields={"FNAME": "first_name"})
    assert other.reused is True and other.row_count == first.row_count
    assert other.per_template == {"1002": 0, **first.per_template}
    assert _recipients(engine, first.list_key) == stored


def test_failed_rebuild_leaves_the_previous_complete_list(engine):
    seed_demo(engine, customers=3_000, days=1, today=TODAY, now=NOW)
    first = _freeze(engine, templates=("1001", "1003"))
    stored = _recipients(engine, first.list_key)
    add_customers(engine, [_person(f"new{i}@example.com") for i in range(50)])

    def crash(rows_written):
        if rows_written >= 1_000:
            raise RuntimeError("worker killed mid-freeze")

    with pytest.raises(RuntimeError, match="killed"):
        _freeze(engine, templates=("1001", "1003"), chunk_size=500, progress=crash)
    assert _recipients(engine, first.list_key) == stored
    kept = get_frozen_list(engine, first.list_key, ["1001", "1003"])
    assert kept.row_count == first.row_count == len(stored)
    # and the next attempt succeeds (no lock or transaction left behind)
    assert _freeze(engine, templates=("1001", "1003")).row_count == first.row_count + 50


def test_iter_chunks_cover_each_recipient_exactly_once(engine):
    seed_demo(engine, customers=2_500, days=1, today=TODAY, now=NOW)
    templates = ("1001", "1002", "1003")
    result = _freeze(engine, templates=templates)
    seen: list[str] = []
    for template_id in templates:
        chunks = list(iter_recipient_chunks(engine, result.list_key, template_id, 97))
        assert chunks and all(0 < len(ch) <= 97 for ch in chunks)
        assert all(len(ch) == 97 for ch in chunks[:-1])
        idents = [i for ch in chunks for i, _ in ch]
        assert len(idents) == result.per_template[template_id]
        assert len(idents) == count_recipients(engine, result.list_key, template_id)
        with engine.connect() as conn:
            expected = conn.execute(
                sa.select(recipient.c.identifier)
                .where(recipient.c.list_key == result.list_key, recipient.c.template_id == template_id)
                .order_by(recipient.c.identifier)
            ).scalars().all()
        assert idents == expected  # the database's order, nothing skipped or repeated
        assert all(set(attrs) == set(DEMO_FIELDS) for ch in chunks for _, attrs in ch)
        assert all(template_for(i, templates) == template_id for i in idents)
        # the send path's rows: the same chunks, the values in the order asked for, None for a
        # field the attrs lack
        for names in (list(DEMO_FIELDS)[::-1], list(DEMO_FIELDS)[:1], [], [*DEMO_FIELDS, "NOPE"]):
            rows = list(iter_recipient_rows(engine, result.list_key, template_id, names, 97))
            assert rows == [[(i, *[a.get(n) for n in names]) for i, a in ch] for ch in chunks]
        seen.extend(idents)
    assert len(seen) == len(set(seen)) == result.row_count
    assert set(seen) == set(_recipients(engine, result.list_key))
    assert list(iter_recipient_chunks(engine, result.list_key, "9999", 50)) == []
    assert count_recipients(engine, "nope/2025-01-01", "1001") == 0


def test_the_import_reads_the_list_less_those_suppressed_since_it_was_frozen(engine):
    """Review finding 6: ``suppressed_now`` is the suppression list as the freeze matches it, whatever
    the spelling (capitals, blanks around it, full-width letters), and ``iter_recipient_rows``
    leaves those frozen recipients out of the same pages of the list, also a page they fill, and
    counts them (fails before the fix: the import sent them)."""
    from cheetah_assets.customers.recipients import SuppressedNow, suppressed_now

    seed_demo(engine, customers=600, days=1, today=TODAY, now=NOW)
    result = _freeze(engine, templates=("1001", "1003"))
    key = result.list_key
    with engine.connect() as conn:
        idents = conn.execute(
            sa.select(recipient.c.identifier)
            .where(recipient.c.list_key == key, recipient.c.template_id == "1001")
            .order_by(recipient.c.identifier)
        ).scalars().all()

    clock = [0.0]
    shared = SuppressedNow(engine, max_age=60, clock=lambda: clock[0])  # as a sender's imports share it

    def read(template, suppressed=lambda: suppressed_now(engine)):
        skipped = [0]
        pages = list(iter_recipient_rows(engine, key, template, ["FNAME"], 10, leave_out=suppressed(), skipped=skipped))
        return [[row[0] for row in page] for page in pages], skipped[0]

    assert len(idents) > 40 and read("1001", shared)[1] == 0  # the freeze left out the suppressed of its time
    gone = [*idents[10:20], idents[3], idents[-1]]  # the second page of 10, and two more
    full_width = {chr(c): chr(c + 0xFEE0) for c in range(0x21, 0x7F)}
    for n, ident in enumerate(gone):
        spelling = [ident.upper(), f"\u00a0{ident}\t", "".join(full_width.get(c, c) for c in ident)][n % 3]
        add_suppression(engine, spelling)
    add_suppression(engine, "nobody@example.invalid")
    assert read("1001", shared)[1] == 0  # a sender reuses what it read for a minute ...
    clock[0] = 61.0
    assert read("1001", shared)[1] == len(gone)  # ... and reads it again after that
    pages, skipped = read("1001")  # an import on its own reads it afresh
    assert skipped == len(gone) and set(gone) <= suppressed_now(engine)
    # the list's pages of 10, less those left out; the page they filled is skipped
    expected = [[i for i in idents[at:at + 10] if i not in gone] for at in range(0, len(idents), 10)]
    assert pages == [page for page in expected if page]
    assert len(pages) < len(expected)
    assert read("1003")[1] == 0  # another template's recipients: none of these


def test_concurrent_freezes_leave_one_consistent_list(engine):
    seed_demo(engine, customers=6_000, days=1, today=TODAY, now=NOW)
    start = threading.Barrier(2)
    spans: dict[str, list[float]] = {"a": [], "b": []}
    results: dict[str, object] = {}
    errors: list[BaseException] = []

    def run(name, templates):
        def progress(_n):
            spans[name].append(time.monotonic())
            time.sleep(0.02)  # widen the window in which a second writer could interleave

        try:
            start.wait()
            results[name] = _freeze(engine, templates=templates, chunk_size=500, progress=progress)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [
        threading.Thread(target=run, args=("a", ("1001",))),
        threading.Thread(target=run, args=("b", ("1002", "1003"))),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    a, b = results["a"], results["b"]
    assert a.row_count == b.row_count > 5_000
    # the two rebuilds ran one after the other, not interleaved
    (first, second) = sorted(spans.values(), key=lambda s: s[0])
    assert first[-1] < second[0]
    stored = _recipients(engine, a.list_key)
    assert len(stored) == a.row_count
    used = {t for t, _ in stored.values()}
    assert used == {"1001"} or used == {"1002", "1003"}  # one list, never a mix of the two
    last = a if used == {"1001"} else b
    with engine.connect() as conn:
        rows = conn.execute(sa.select(recipient_list)).mappings().all()
    assert len(rows) == 1 and rows[0]["row_count"] == len(stored)
    assert _scalar(engine, sa.select(sa.func.count()).select_from(recipient)) == len(stored)
    for template_id, n in last.per_template.items():
        assert count_recipients(engine, a.list_key, template_id) == n


def test_freeze_memory_stays_flat(tmp_path):
    url = f"sqlite:///{tmp_path / 'big.db'}"
    eng = engine_for(url, create=True)
    try:
        seed_demo(eng, customers=200_000, days=1, today=TODAY, now=NOW)
        tracemalloc.start()
        try:
            result = _freeze(eng, templates=("1001", "1003"), chunk_size=5_000)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert result.row_count > 190_000
        _assert_consistent(result)
        # A full load of 200k customers as Python rows/dicts needs well over 100 MB.
        assert peak < 60 * 1024 * 1024, f"peak Python allocation {peak / 2**20:.1f} MiB"
    finally:
        dispose_engine(url)


# ------------------------------------------------------------------------------------------------
# the real customer table: reflection, missing and awkward columns
# ------------------------------------------------------------------------------------------------
def test_missing_columns(empty_db):
    assert missing_columns(empty_db, ["email", "first_name"]) == []
    assert missing_columns(empty_db, ["email", "EMAIL", "nope", "EMAIL", "city"]) == ["EMAIL", "nope"]
    with pytest.raises(CustomerSchemaError) as err:
        missing_columns(empty_db, ["email"], table_name="no_such_table")
    assert err.value.table == "no_such_table"
    add_customers(empty_db, [_person("a@example.com")])
    with pytest.raises(CustomerSchemaError) as err:
        _freeze(empty_db, fields={"FNAME": "First_Name", "CITY": "city", "X": "loyalty"})
    assert err.value.missing == ["First_Name", "loyalty"]
    with pytest.raises(CustomerSchemaError):
        _freeze(empty_db, identifier_column="Email")
    assert _scalar(empty_db, sa.select(sa.func.count()).select_from(recipient_list)) == 0


def test_columns_that_need_quoting(engine):
    schema.create_integration_tables(engine)
    md = sa.MetaData()
    custom = sa.Table(
        "Customer Data",
        md,
        sa.Column("customer_pk", sa.Integer, primary_key=True),
        sa.Column("E-mail Addr", sa.String(320)),
        sa.Column("First Name", sa.String(100)),
        sa.Column("select", sa.String(100)),  # a reserved word
        sa.Column("Loyalty Points", sa.Integer),
        sa.Column("Joined", sa.Date),
    )
    md.create_all(engine)
    schema.metadata.create_all(engine, tables=[schema.target_group_members, schema.suppression])
    with engine.begin() as conn:
        conn.execute(custom.insert(), [
            {"customer_pk": 1, "E-mail Addr": " Quote@Example.com", "First Name": "Q", "select": "s1",
             "Loyalty Points": 42, "Joined": dt.date(2020, 1, 2)},
            {"customer_pk": 2, "E-mail Addr": "quote@example.com", "First Name": "dup", "select": "s2",
             "Loyalty Points": None, "Joined": None},
            {"customer_pk": 3, "E-mail Addr": "robert'); DROP TABLE x;--@example.com", "First Name": "R",
             "select": None, "Loyalty Points": 7, "Joined": None},
        ])
        conn.execute(schema.target_group_members.insert(),
                     [{"target_group": "g", "customer_pk": pk} for pk in (1, 2, 3)])
    assert missing_columns(engine, ["E-mail Addr", "e-mail addr", "select"], table_name="Customer Data") == [
        "e-mail addr"]
    result = freeze_recipient_list(
        engine, campaign_id="Q", send_date=DAY, target_group="g", identifier_column="E-mail Addr",
        fields={"FNAME": "First Name", "SEL": "select", "POINTS": "Loyalty Points", "JOINED": "Joined"},
        template_ids=["1001"], customers_table="Customer Data",
    )
    assert (result.row_count, result.collapsed_duplicates) == (2, 1)
    stored = _recipients(engine, result.list_key)
    assert stored["quote@example.com"][1] == {
        "FNAME": "Q", "SEL": "s1", "POINTS": "42", "JOINED": "2020-01-02"}
    assert stored["robert'); drop table x;--@example.com"][1]["SEL"] is None


# ------------------------------------------------------------------------------------------------
# the resource
# ------------------------------------------------------------------------------------------------
def test_resource_engine_is_cached_and_sqlite_is_wal(tmp_path):
    url = f"sqlite:///{tmp_path / 'nested' / 'dir' / 'r.db'}"
    res = CustomerDatabaseResource(url=url)
    try:
        eng = res.get_engine(create=True)  # directories and file made only when asked
        assert eng is CustomerDatabaseResource(url=url, chunk_size=5).get_engine()
        assert res.chunk_size == 10_000
        with eng.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar().lower() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 30_000
        res.ensure_tables()
        names = set(sa.inspect(eng).get_table_names())
        assert {t.name for t in schema.INTEGRATION_TABLES} <= names
        assert "customers" not in names
    finally:
        dispose_engine(url)


def test_resource_safe_url_hides_password():
    url = "postgresql+psycopg2://cheetah:p%40ss-w0rd@db.internal:5432/crm"
    res = CustomerDatabaseResource(url=url)
    try:
        shown = res.safe_url()
        assert "p@ss-w0rd" not in shown and "p%40ss-w0rd" not in shown
        assert shown == "postgresql+psycopg2://cheetah:***@db.internal:5432/crm"
        assert "SQLAlchemy URL" in CustomerDatabaseResource.model_fields["url"].description
    finally:
        dispose_engine(url)


def test_resource_works_on_postgres(db_url):
    res = CustomerDatabaseResource(url=db_url)
    res.ensure_tables()
    eng = res.get_engine()
    assert eng is engine_for(db_url)
    assert "cheetah_send_ledger" in sa.inspect(eng).get_table_names()
    assert queries.is_list_locked(eng, "x/2025-01-01") is False


@pytest.mark.postgres
def test_a_bare_postgresql_url_uses_the_driver_we_ship():
    """``postgresql://`` is what operators write; SQLAlchemy 2.1 would take it for psycopg 3."""
    from .pg import fresh_postgres_database

    with fresh_postgres_database() as url:
        bare = sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        res = CustomerDatabaseResource(url=bare)
        try:
            res.ensure_tables()
            assert res.get_engine().dialect.driver == "psycopg2"
            assert "cheetah_send_ledger" in sa.inspect(res.get_engine()).get_table_names()
        finally:
            dispose_engine(bare)


def test_list_transaction_excludes_other_writers_from_its_first_statement(engine):
    """The ledger check, the counts and the rebuild all happen under the list's lock."""
    schema.create_integration_tables(engine)
    key = list_key("L", DAY)
    with freeze.list_transaction(engine, key) as conn:
        conn.execute(sa.select(sa.func.count()).select_from(recipient_list)).scalar()
        if engine.dialect.name == "sqlite":
            other = sa.create_engine(engine.url, poolclass=sa.pool.NullPool, connect_args={"timeout": 0})
            with other.connect() as c2:
                with pytest.raises(sa.exc.OperationalError, match="locked"):
                    c2.exec_driver_sql("BEGIN IMMEDIATE")
            other.dispose()
        else:
            args = (queries.PG_LOCK_NAMESPACE, sa.func.hashtext(key))
            with engine.connect() as c2:
                assert c2.execute(sa.select(sa.func.pg_try_advisory_lock(*args))).scalar() is False
                other_key = (queries.PG_LOCK_NAMESPACE, sa.func.hashtext(list_key("M", DAY)))
                assert c2.execute(sa.select(sa.func.pg_try_advisory_lock(*other_key))).scalar() is True
                c2.execute(sa.select(sa.func.pg_advisory_unlock(*other_key)))
            assert conn.exec_driver_sql("SHOW transaction_isolation").scalar() == "repeatable read"
    # released afterwards
    if engine.dialect.name == "postgresql":
        with engine.connect() as c2:
            assert c2.execute(sa.select(sa.func.pg_try_advisory_lock(*args))).scalar() is True
            c2.execute(sa.select(sa.func.pg_advisory_unlock(*args)))
    else:
        with engine.begin() as c2:
            c2.exec_driver_sql("BEGIN IMMEDIATE")


def test_resource_in_a_dagster_asset(tmp_path):
    import dagster as dg

    url = f"sqlite:///{tmp_path / 'dg.db'}"

    @dg.asset
    def frozen(customer_db: CustomerDatabaseResource) -> dict:
        customer_db.ensure_tables()
        eng = customer_db.get_engine()
        seed_demo(eng, customers=200, days=1, today=TODAY, now=NOW)
        result = freeze_recipient_list(
            eng, campaign_id="D", send_date=DAY, target_group="vip", identifier_column="email",
            fields={"FNAME": "first_name"}, template_ids=["1001"], chunk_size=customer_db.chunk_size,
        )
        return {"rows": result.row_count, "url": customer_db.safe_url()}

    engine_for(url, create=True)
    try:
        res = dg.materialize([frozen], resources={"customer_db": CustomerDatabaseResource(url=url, chunk_size=7)})
        assert res.success
        out = res.output_for_node("frozen")
        assert out["url"] == url and 0 < out["rows"] < 200
        assert count_recipients(engine_for(url), "D/2025-11-24", "1001") == out["rows"]
    finally:
        dispose_engine(url)


# ------------------------------------------------------------------------------------------------
# a customer database that is not there (issue 8, item 10): never created, one clear sentence
# ------------------------------------------------------------------------------------------------
def test_a_missing_sqlite_file_is_never_created(tmp_path):
    import dagster as dg

    from cheetah_assets.customers.engines import CustomerDatabaseMissing

    path = tmp_path / "no" / "such" / "dir" / "customers.db"
    url = f"sqlite:///{path}"
    with pytest.raises(CustomerDatabaseMissing) as err:
        engine_for(url)
    message = str(err.value)
    assert message.count(". ") == 0 and str(path) in message and "CUSTOMER_DB_URL" in message
    res = CustomerDatabaseResource(url=url)
    for call in (res.get_engine, res.ensure_tables):
        with pytest.raises(dg.Failure) as failure:
            call()
        assert failure.value.description == message
    assert not (tmp_path / "no").exists()  # no directory, no file, no tables


def test_a_missing_sqlite_file_fails_the_run_with_one_sentence_and_creates_nothing(sim, tmp_path):
    import dagster as dg

    from .conftest import make_resources
    from .helpers import failure_messages, run_cycle

    path = tmp_path / "missing" / "customers.db"
    with dg.DagsterInstance.ephemeral() as instance:
        result = run_cycle(make_resources(sim, f"sqlite:///{path}"), sim.admin.now().date(), instance)
    assert not result.success
    messages = failure_messages(result)
    assert messages and all(m.startswith(f"The customer database file {path} does not exist;") for m in messages), messages
    assert not (tmp_path / "missing").exists()


def test_explicit_creation_and_memory_databases(tmp_path):
    url = f"sqlite:///{tmp_path / 'made' / 'here.db'}"
    try:
        eng = CustomerDatabaseResource(url=url).get_engine(create=True)
        assert (tmp_path / "made" / "here.db").is_file()
        assert eng is engine_for(url)  # exists now: no creation needed any more
        with eng.connect() as conn:
            assert conn.execute(sa.text("SELECT cheetah_norm(' \u00c9MILE@x\t')")).scalar() == "émile@x"
    finally:
        dispose_engine(url)
    memory = CustomerDatabaseResource(url="sqlite:///:memory:")
    memory.ensure_tables()
    assert "cheetah_send_ledger" in sa.inspect(memory.get_engine()).get_table_names()


def test_a_file_deleted_under_a_running_process_is_not_recreated(tmp_path):
    path = tmp_path / "gone.db"
    url = f"sqlite:///{path}"
    eng = engine_for(url, create=True)
    try:
        eng.dispose()
        path.unlink()
        with pytest.raises(sa.exc.OperationalError):
            with eng.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        assert not path.exists()
    finally:
        dispose_engine(url)


def test_the_seed_command_creates_the_database_it_fills(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'new' / 'demo.db'}"
    try:
        assert seed.main(["--url", url, "--customers", "20", "--days", "1"]) == 0
        assert (tmp_path / "new" / "demo.db").is_file()
    finally:
        dispose_engine(url)


def test_a_missing_customers_table_reads_as_one_sentence(tmp_path):
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    eng = engine_for(url, create=True)
    try:
        with pytest.raises(CustomerSchemaError) as err:
            queries.reflect_customers(eng)
        message = str(err.value)
        assert message == (
            f"The customer database sqlite:///{tmp_path / 'empty.db'} has no table named 'customers'; "
            "set CUSTOMER_DB_URL to the database that holds the customer data (set-up step 1)."
        )
        assert err.value.__cause__ is None and err.value.__suppress_context__
    finally:
        dispose_engine(url)


@contextlib.contextmanager
def _database_without_a_customers_table(sim, tmp_path):
    """A seeded demo database with one campaign today, whose customers table is then dropped:
    yields (its URL, today)."""
    day = sim.admin.now().date()
    url = f"sqlite:///{tmp_path / 'nocustomers.db'}"
    eng = CustomerDatabaseResource(url=url).get_engine(create=True)
    try:
        seed_demo(eng, customers=5, days=0, today=day, now=sim.admin.now())
        add_campaign(eng, campaign_id="NC", send_date=day, send_time="11:00", template_ids="1002")
        with eng.begin() as conn:
            conn.execute(sa.text("DROP TABLE customers"))
        yield url, day
    finally:
        dispose_engine(url)


def _no_customers_table(url: str) -> str:
    return (
        f"The customer database {url} has no table named 'customers'; set CUSTOMER_DB_URL to the "
        "database that holds the customer data (set-up step 1)."
    )


def test_a_missing_customers_table_fails_the_day_with_one_sentence(sim, tmp_path):
    """The blocking set-up check says what is wrong; no step dies with a CustomerSchemaError."""
    import dagster as dg

    from .conftest import make_resources
    from .helpers import failure_texts, run_cycle

    with _database_without_a_customers_table(sim, tmp_path) as (url, day):
        with dg.DagsterInstance.ephemeral() as instance:
            result = run_cycle(make_resources(sim, url), day, instance)
        checks = {e.asset_check_key.name: e for e in result.get_asset_check_evaluations()}
        assert checks["account_setup"].passed is False
        assert checks["account_setup"].description == _no_customers_table(url)
        assert not any("CustomerSchemaError" in t or "Traceback" in t for t in failure_texts(result)), failure_texts(result)


def test_a_missing_customers_table_fails_a_step_run_without_the_checks_with_one_sentence(sim, tmp_path):
    """Assets materialised on their own (no set-up check in the selection) say it the same way."""
    import dagster as dg

    from cheetah_assets.sending.assets import SEND_ASSETS

    from .conftest import make_resources
    from .helpers import failure_messages

    with _database_without_a_customers_table(sim, tmp_path) as (url, day):
        with dg.DagsterInstance.ephemeral() as instance:
            result = dg.materialize(
                SEND_ASSETS, partition_key=day.isoformat(), resources=make_resources(sim, url),
                instance=instance, raise_on_error=False,
            )
        assert failure_messages(result) == [_no_customers_table(url)]


@pytest.mark.parametrize("create", ["integration tables", "campaign_seen"])
def test_tables_created_by_runs_at_once_on_first_use_on_sqlite(tmp_path, create):
    """Regression: concurrent first uses raced between "is the table there" and CREATE TABLE
    ("table ... already exists"); the creation now holds SQLite's write lock from the start."""
    from cheetah_assets.customers.engines import engine_for

    from .helpers import create_tables_at_once

    create_tables_at_once(engine_for(f"sqlite:///{tmp_path / 'race.db'}", create=True), create)


def test_a_recipient_table_made_before_the_address_column_gets_it(tmp_path):
    """An existing deployment's cheetah_recipient has no ``address``: it is added in place, the
    rows already frozen keep NULL (sent as they were frozen), and a new freeze writes it."""
    from cheetah_assets.customers.engines import engine_for
    from cheetah_assets.customers.schema import create_demo_tables, create_integration_tables

    eng = engine_for(f"sqlite:///{tmp_path / 'old.db'}", create=True)
    create_demo_tables(eng)
    with eng.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE cheetah_recipient (list_key VARCHAR(200) NOT NULL, identifier VARCHAR(320) NOT NULL, "
            "template_id VARCHAR(64) NOT NULL, attrs TEXT NOT NULL, PRIMARY KEY (list_key, identifier)) WITHOUT ROWID")
        conn.exec_driver_sql("INSERT INTO cheetah_recipient VALUES ('OLD/2025-11-24', 'old@example.com', '1001', '{}')")
    create_integration_tables(eng)
    create_integration_tables(eng)  # again: nothing to do
    assert "address" in {c["name"] for c in sa.inspect(eng).get_columns("cheetah_recipient")}
    add_customers(eng, [_person(" New@Example.com")])
    _freeze(eng)
    with eng.connect() as conn:
        rows = dict(conn.execute(sa.select(recipient.c.identifier, recipient.c.address)).all())
    assert rows == {"old@example.com": None, "new@example.com": "New@Example.com"}
