"""One normalisation of identifiers (issue 8, items 2 and 7): nobody suppressed is mailed, whatever
the spelling, and spellings of one address collapse to one recipient, on SQLite and PostgreSQL.

``normalise_identifier(s) = strip(NFKC(casefold(NFKC(casefold(NFD(s))))))`` (Unicode's compatibility
caseless form; cheetah_assets.customers.identifiers); the
database applies the same function (``cheetah_norm``) inside the freeze.
"""

from __future__ import annotations

import datetime as dt
import unicodedata

import dagster as dg
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from cheetah_assets.customers import identifiers, schema, seed
from cheetah_assets.customers.engines import dispose_engine, engine_for
from cheetah_assets.customers.identifiers import normalise_identifier
from cheetah_assets.customers.queries import freeze_recipient_list, template_for
from cheetah_assets.customers.resource import CustomerDatabaseResource
from cheetah_assets.customers.schema import recipient, recipient_list, suppression, target_group_members

from .conftest import cheetah_resource, make_resources
from .helpers import (
    CAMPAIGN_X,
    audit_sends,
    demo_database,
    demo_tables_engine,
    frozen,
    ledger_rows,
    run_cycle,
    wrongly_mailed,
)
from .pg import fresh_postgres_database

DAY = dt.date(2025, 11, 24)
FIELDS = {"FNAME": "first_name"}

#: Whitespace and invisible format characters that people's data carries around addresses.
SURROUNDING = [" ", "\t", "\n", "\r", "\u00a0", "\u2003", "\u200b", "\u200c", "\u2060", "\ufeff", "\u3000", "\u202f"]


STRIP = "".join(chr(c) for c in range(0x110000) if chr(c).isspace() or unicodedata.category(chr(c)) == "Cf")

#: Code points whose normalisation is not plain lower-casing: text is drawn from these often.
TRICKY = SURROUNDING + ["ß", "ẞ", "İ", "ı", "ﬁ", "Σ", "ς", "ǅ", "Ａ", "ｅ", "＠", "\u0345", "Å", "Å", "e\u0301", "ŉ", "K",
                       "\u0301", "\u0342", "\u0313", "\u0390", "\u1fb7", "\u1f80", "\u0324"]
IDENTIFIER_TEXT = st.lists(st.one_of(st.characters(), st.sampled_from(TRICKY)), max_size=30).map("".join)


def reference(value: str) -> str:
    """The definition, spelled out the slow way (no ASCII short cut): "" (missing) when no mailbox
    can have it, longer than 320 characters or holding a control character (category Cc)."""
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFD", value).casefold()).casefold()
    out = unicodedata.normalize("NFKC", folded).strip(STRIP)
    return "" if len(out) > 320 or any(unicodedata.category(ch) == "Cc" for ch in out) else out


# ------------------------------------------------------------------------------------------------
# databases: one per module and backend, emptied between examples
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request, tmp_path_factory):
    with demo_tables_engine(request.param, tmp_path_factory, "ident") as eng:
        yield eng


def _empty(engine) -> None:
    with engine.begin() as conn:
        for table in (recipient, recipient_list, target_group_members, suppression, schema.customers):
            conn.execute(sa.delete(table))


def _load(engine, customers: list[str | None], suppressed: list[str]) -> None:
    _empty(engine)
    seed.add_customers(engine, [{"email": e, "first_name": f"n{i}"} for i, e in enumerate(customers)])
    with engine.begin() as conn:
        if suppressed:
            conn.execute(suppression.insert(), [{"identifier": s, "reason": "unsubscribed"} for s in suppressed])


def _freeze(engine, templates=("1001", "1003")):
    return freeze_recipient_list(
        engine,
        campaign_id="C1",
        send_date=DAY,
        target_group="all_customers",
        identifier_column="email",
        fields=FIELDS,
        template_ids=list(templates),
    )


def _frozen(engine) -> dict[str, str]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(recipient.c.identifier, recipient.c.template_id)).all()
    out = dict(rows)
    assert len(out) == len(rows)
    return out


# ------------------------------------------------------------------------------------------------
# the four cases of the issue, and item 7
# ------------------------------------------------------------------------------------------------
ISSUE_CASES = [
    ("supp@example.com\t", "supp@example.com"),
    ("\u00a0supp2@example.com", "supp2@example.com"),
    ("supp3@example.com\n", "supp3@example.com"),
    ("ÉMILE@example.com", "émile@example.com"),
]


@pytest.mark.parametrize("stored, suppressed", ISSUE_CASES, ids=["tab", "nbsp", "newline", "accented-capitals"])
def test_suppressed_customer_is_not_frozen_whatever_the_spelling(engine, stored, suppressed):
    _load(engine, [stored, "ok@example.com"], [suppressed])
    result = _freeze(engine)
    assert set(_frozen(engine)) == {"ok@example.com"}
    assert (result.row_count, result.excluded_suppressed) == (1, 1)


def test_the_issues_four_spellings_at_once(engine):
    _load(engine, [s for s, _ in ISSUE_CASES] + ["ok@example.com"], [s for _, s in ISSUE_CASES])
    result = _freeze(engine)
    assert set(_frozen(engine)) == {"ok@example.com"}
    assert (result.row_count, result.excluded_suppressed, result.in_target_group) == (1, 4, 5)


def test_suppression_stored_in_another_spelling_still_matches(engine):
    _load(engine, ["emile@example.com", "straße@example.com", "ok@example.com"],
          ["\tEMILE@EXAMPLE.COM\u200b", "STRASSE@example.com"])
    _freeze(engine)
    assert set(_frozen(engine)) == {"ok@example.com"}


def test_a_tab_duplicate_collapses_to_one_recipient_stored_normalised(engine):
    """Item 7: ``a@example.com`` and ``a@example.com\\t`` in one target group are one recipient."""
    _load(engine, ["a@example.com", "a@example.com\t", " A@Example.com", "ＡＢ@example.com"], [])
    result = _freeze(engine)
    frozen = _frozen(engine)
    assert set(frozen) == {"a@example.com", "ab@example.com"}
    assert (result.row_count, result.collapsed_duplicates) == (2, 2)
    assert all(template_for(i, ["1001", "1003"]) == t for i, t in frozen.items())


def test_blank_after_normalisation_counts_as_missing(engine):
    _load(engine, ["\u200b", "\u00a0\t", None, "ok@example.com"], [])
    result = _freeze(engine)
    assert set(_frozen(engine)) == {"ok@example.com"}
    assert result.excluded_missing_identifier == 3


def test_an_identifier_holding_a_control_character_is_missing_and_never_sent(engine):
    """Regression (review item 6): on SQLite ``supp@example.com\\x00`` was frozen and sent apart
    from its suppression, and ``dup@example.com\\x7f`` apart from ``dup@example.com``; PostgreSQL
    cannot store NUL, but kept the others. Now an identifier holding a control character (Cc)
    inside it counts as missing, on both databases, in the database as streamed; whitespace
    controls at its ends are stripped as before."""
    controls = ["dup@example.com\x7f", "ctl@example.com\x01", "tab@exa\tmple.com", "\u00e9mile@x.com\x9f"]
    if engine.dialect.name == "sqlite":
        controls += ["supp@example.com\x00", "nul\x00@example.com"]
    _load(engine, ["dup@example.com", *controls, "ok@example.com\t\n"], ["supp@example.com", "ctl@example.com"])
    for in_database in (True, False):
        result = freeze_recipient_list(engine, campaign_id=f"CC-{in_database}", send_date=DAY,
                                       target_group="all_customers", identifier_column="email", fields=FIELDS,
                                       template_ids=["1001"], in_database=in_database)
        with engine.connect() as conn:
            rows = conn.execute(sa.select(recipient.c.identifier, recipient.c.address)
                                .where(recipient.c.list_key == result.list_key)).all()
        assert sorted(rows) == [("dup@example.com", None), ("ok@example.com", None)]
        assert (result.row_count, result.excluded_missing_identifier, result.excluded_suppressed,
                result.collapsed_duplicates) == (2, len(controls), 0, 0)
    assert all(normalise_identifier(c) == "" for c in controls)


#: Spellings that ``strip(casefold(NFKC(s)))`` (the definition until this stop) told apart: an
#: address and its own upper case; a precomposed letter and its decomposed form. And an identifier
#: whose stored (normalised) form normalised to something else, so a suppression entry holding
#: the very string sent to Cheetah did not match it.
CANONICAL_CASES = [
    ("\u0390lia@example.gr", "\u0390lia@example.gr".upper()),
    ("stra\u00df\u0301e@example.de", "STRASS\u0301E@example.de"),
    ("\u00c5sa@example.se", "A\u030asa@example.se"),
    ("\u1fb7@example.gr", "\u03b1\u0342\u0345@example.gr"),
]


@pytest.mark.parametrize("one, other", CANONICAL_CASES, ids=["greek-upper", "sharp-s-accent", "nfd", "iota-subscript"])
def test_equivalent_spellings_are_one_recipient_and_meet_each_others_suppression(engine, one, other):
    """Regression (review of this stop): with a single casefold(NFKC()), each pair were two
    recipients, and a suppression of one spelling let the other through."""
    _load(engine, [one, other], [])
    result = _freeze(engine)
    assert (result.row_count, result.collapsed_duplicates) == (1, 1)
    _load(engine, [other, "ok@example.com"], [one])
    result = _freeze(engine)
    assert set(_frozen(engine)) == {"ok@example.com"} and result.excluded_suppressed == 1


def test_suppressing_the_identifier_sent_suppresses_it(engine):
    """Regression: ``straß\u0301e@`` was stored (and sent) as ``strass\u0301e@``, which normalised
    again gives ``strasśe@``: a suppression holding the sent string did not match."""
    _load(engine, ["stra\u00df\u0301e@example.de"], [])
    _freeze(engine)
    (sent,) = _frozen(engine)
    _load(engine, ["stra\u00df\u0301e@example.de", "ok@example.com"], [sent])
    result = _freeze(engine)
    assert set(_frozen(engine)) == {"ok@example.com"} and result.excluded_suppressed == 1


# ------------------------------------------------------------------------------------------------
# properties
# ------------------------------------------------------------------------------------------------
@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(), IDENTIFIER_TEXT))
def test_normalising_twice_or_any_canonical_spelling_gives_the_same(value):
    once = normalise_identifier(value)
    assert normalise_identifier(once) == once
    for form in ("NFC", "NFD", "NFKC", "NFKD"):
        assert normalise_identifier(unicodedata.normalize(form, value)) == once


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(), IDENTIFIER_TEXT))
def test_python_function_is_the_definition(value):
    assert normalise_identifier(value) == reference(value)


_FULL_WIDTH = {chr(c): chr(c + 0xFEE0) for c in range(0x21, 0x7F)}  # NFKC maps them back


def _spell(draw, address: str) -> str:
    """One spelling of ``address`` that normalises to the same identifier."""
    out = []
    for ch in address:
        choice = draw(st.integers(0, 3))
        if ch == "ß":
            out.append(draw(st.sampled_from(["ß", "ss", "SS", "ẞ", "Ss"])))
        elif choice == 0:
            out.append(ch.upper() if len(ch.upper()) == 1 else ch)
        elif choice == 1 and ch in _FULL_WIDTH:
            out.append(_FULL_WIDTH[ch].upper() if ch.isalpha() and draw(st.booleans()) else _FULL_WIDTH[ch])
        else:
            out.append(ch)
    before = draw(st.lists(st.sampled_from(SURROUNDING), max_size=3))
    after = draw(st.lists(st.sampled_from(SURROUNDING), max_size=3))
    return "".join(before) + "".join(out) + "".join(after)


LOCALS = st.sampled_from(["ann", "bob", "émile", "straße", "zoë", "ole.ørn", "jo+tag", "x_y", "ĳssel"])
DOMAINS = st.sampled_from(["example.com", "exämple.org", "mail.example"])


@st.composite
def populations(draw):
    """Addresses, some suppressed (in some spelling), each stored as 1-3 customers in random
    spellings."""
    addresses = draw(st.lists(st.tuples(LOCALS, DOMAINS).map("@".join), min_size=1, max_size=8, unique=True))
    addresses = list(dict.fromkeys(addresses, None))
    suppressed = draw(st.lists(st.sampled_from(addresses), max_size=len(addresses), unique=True))
    customers = [_spell(draw, a) for a in addresses for _ in range(draw(st.integers(1, 3)))]
    customers = draw(st.permutations(customers))
    return addresses, [_spell(draw, s) for s in suppressed], customers


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(populations())
def test_freeze_never_keeps_a_suppressed_spelling_and_collapses_the_others(engine, population):
    addresses, suppressed, customers = population
    keyed = {normalise_identifier(a) for a in addresses}
    assume(len(keyed) == len(addresses))  # distinct addresses stay distinct (e.g. not "ss" vs "ß")
    _load(engine, customers, suppressed)
    result = _freeze(engine)
    frozen = _frozen(engine)
    blocked = {normalise_identifier(s) for s in suppressed}
    assert set(frozen) == keyed - blocked  # each kept address exactly once, in its normalised form
    assert not set(frozen) & blocked
    assert result.row_count == len(frozen)
    assert result.excluded_suppressed == sum(normalise_identifier(c) in blocked for c in customers)
    assert result.in_target_group == len(customers) == (
        result.row_count + result.excluded_missing_identifier + result.excluded_suppressed + result.collapsed_duplicates
    )
    assert all(template_for(i, ["1001", "1003"]) == t for i, t in frozen.items())


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(st.text(), IDENTIFIER_TEXT), min_size=1, max_size=20))
def test_sql_function_equals_python(engine, values):
    identifiers.ensure_sql_function(engine)
    # PostgreSQL text cannot hold NUL, and no database text (nor its driver) a lone surrogate:
    # neither can be in a customer table, so neither is compared.
    values = ["".join(ch for ch in v if ch != "\x00" and not 0xD800 <= ord(ch) <= 0xDFFF) for v in values]
    stmt = sa.select(identifiers.norm(sa.bindparam("v", type_=sa.Text)))
    with engine.connect() as conn:
        got = [conn.execute(stmt, {"v": v}).scalar_one() for v in values]
    assert got == [normalise_identifier(v) for v in values]


def test_sql_function_equals_python_on_every_probe(engine):
    identifiers.ensure_sql_function(engine)
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            assert identifiers.disagreements(conn, identifiers.probe_strings()) == []
        else:
            for p in identifiers.probe_strings():
                assert conn.execute(sa.select(identifiers.norm(sa.literal(p)))).scalar_one() == normalise_identifier(p)
        assert conn.execute(sa.select(identifiers.norm(sa.null()))).scalar() is None


# ------------------------------------------------------------------------------------------------
# the PostgreSQL function
# ------------------------------------------------------------------------------------------------
@pytest.mark.postgres
def test_postgres_function_is_installed_once_replaced_when_different_and_inlined():
    with fresh_postgres_database() as url:
        eng = engine_for(url)
        identifiers.ensure_sql_function(eng)
        with eng.begin() as conn:  # someone's older definition
            conn.exec_driver_sql("CREATE OR REPLACE FUNCTION cheetah_norm(text) RETURNS text LANGUAGE sql IMMUTABLE AS 'SELECT lower($1)'")
        identifiers.ensure_sql_function(eng)
        with eng.connect() as conn:
            assert conn.execute(sa.text("SELECT cheetah_norm(:v)"), {"v": "\u00a0ÉMILE@x\t"}).scalar() == "émile@x"
            plan = "\n".join(conn.execute(sa.text("EXPLAIN VERBOSE SELECT cheetah_norm(v) FROM (VALUES ('A')) t(v)")).scalars())
        assert "'a'::text" in plan  # inlined and folded: no function call per row on ASCII


@pytest.mark.postgres
def test_a_database_that_is_not_utf8_is_refused_with_a_clear_message():
    from .pg import postgres_url_or_skip

    server = postgres_url_or_skip()
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    name = "cheetah_test_latin1_ident"
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
        conn.exec_driver_sql(f"CREATE DATABASE {name} ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0")
    url = sa.make_url(server).set(database=name).render_as_string(hide_password=False)
    try:
        with pytest.raises(identifiers.IdentifierNormalisationError, match="server_encoding is LATIN1.*UTF8"):
            identifiers.ensure_sql_function(engine_for(url))
    finally:
        dispose_engine(url)
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()


# ------------------------------------------------------------------------------------------------
# end to end (item 7): the campaign goes out, each address once, nobody suppressed
# ------------------------------------------------------------------------------------------------
def test_spelling_duplicates_and_suppressed_spellings_end_to_end(sim, db_url):
    day = sim.admin.now().date()
    eng = CustomerDatabaseResource(url=db_url).get_engine(create=True)
    seed.seed_demo(eng, customers=20, days=0, today=day, now=sim.admin.now())
    seed.add_customers(eng, [{"email": e, "first_name": "Dup"} for e in (
        "a@example.com", "a@example.com\t", "\u00a0A@Example.com", "ÉMILE@example.com",
        "supp@example.com\t", "\u00a0supp2@example.com", "supp3@example.com\n", "b@example.com",
    )])
    for s in ("supp@example.com", "supp2@example.com", "supp3@example.com", "émile@example.com"):
        seed.add_suppression(eng, s)
    seed.add_campaign(eng, campaign_id="DUP", name="Duplicates", send_date=day, send_time="12:00",
                      time_zone="UTC", template_ids="1002", target_group="all_customers")
    with dg.DagsterInstance.ephemeral() as instance:
        result = run_cycle(make_resources(sim, db_url), day, instance)
    assert result.success
    assert [r["state"] for r in ledger_rows(eng)] == ["APPROVED"], ledger_rows(eng)
    sim.admin.advance(dt.timedelta(days=1))
    sent = sim.admin.sent()
    assert audit_sends(eng, sent).ok
    (campaign,) = sent["campaigns"]
    got = [r["identifier"] for r in campaign["recipients"]]
    normalised = [normalise_identifier(i) for i in got]
    assert len(normalised) == len(set(normalised))  # each address exactly once
    assert normalised.count("a@example.com") == 1 and "b@example.com" in normalised
    assert not {"supp@example.com", "supp2@example.com", "supp3@example.com", "émile@example.com"} & set(normalised)
    assert set(got) <= {i.strip() for i in got}  # sent stripped


def test_what_is_sent_is_the_customers_own_address_not_its_normalised_form(sim, db_url):
    """Regression (review of this stop): the normalised form was sent, so ``info@straße.de`` went
    to ``info@strasse.de`` (another domain under IDNA 2008), ``user²@`` to ``user2@``, and a
    case-sensitive customer id was lowercased. The normalised form is only compared now."""
    day = sim.admin.now().date()
    eng = CustomerDatabaseResource(url=db_url).get_engine(create=True)
    seed.seed_demo(eng, customers=5, days=0, today=day, now=sim.admin.now())
    own = ["Info@Straße.de", "user²@example.com", "Ann.Lee@Example.com", "ＡＢ@example.com"]
    seed.add_customers(eng, [{"email": e, "first_name": "Own"} for e in
                             ["\u00a0" + own[0] + "\u200b", own[1], " " + own[2] + "\t", own[3],
                              "ann.lee@example.com", "info@strasse.de"]])  # later pks: duplicates
    seed.add_campaign(eng, campaign_id="OWN", name="Own", send_date=day, send_time="12:00",
                      time_zone="UTC", template_ids="1002", target_group="all_customers")
    with dg.DagsterInstance.ephemeral() as instance:
        assert run_cycle(make_resources(sim, db_url), day, instance).success
    sim.admin.advance(dt.timedelta(days=1))
    sent = sim.admin.sent()
    assert audit_sends(eng, sent).ok
    (campaign,) = sent["campaigns"]
    got = {r["identifier"]: r for r in campaign["recipients"]}
    assert set(own) <= set(got), sorted(got)
    assert not {"info@strasse.de", "user2@example.com", "ann.lee@example.com", "ab@example.com"} & set(got)
    # one recipient per normalised identifier, the lowest customer_pk's own value
    assert len({normalise_identifier(i) for i in got}) == len(got)


@pytest.mark.parametrize("stored", ["Plain@Example.COM", " x@y.z\t", "Stra\u00dfe@x.de", "\u2003\u0130d@x\u200b", "12345"])
def test_the_address_is_the_value_stripped_and_normalises_as_the_value(stored):
    from cheetah_assets.customers.identifiers import address_of

    assert address_of(stored) == stored.strip(STRIP)
    assert normalise_identifier(address_of(stored)) == normalise_identifier(stored)


@settings(max_examples=150, deadline=None)
@given(st.data(), st.tuples(LOCALS, DOMAINS).map("@".join))
def test_template_assignment_ignores_the_spelling(data, address):
    spelling = _spell(data.draw, address)
    assert normalise_identifier(spelling) == normalise_identifier(address)
    for templates in (["1001", "1003"], ["7", "8", "9"]):
        assert template_for(spelling, templates) == template_for(address, templates)


def test_template_assignment_of_plain_identifiers_is_unchanged():
    """Lists frozen before the normalisation keep their split for already-normal identifiers."""
    import hashlib

    for ident in ("ann@example.com", "bob.smith42@shop.example", "x"):
        digest = hashlib.sha256(ident.lower().encode("utf-8")).hexdigest()
        assert template_for(ident, ["1001", "1003"]) == ["1001", "1003"][int(digest[:12], 16) % 2]


# ------------------------------------------------------------------------------------------------
# suppressions added after the freeze (review finding 6): left out when the list is imported
# ------------------------------------------------------------------------------------------------
IMPORT_PATH = "/services2/api/Import"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def late_db(request, db_url, sim):
    """(url, engine) of a demo database of 12 customers with campaign X (template 1002, 11:00 UTC)."""
    day = sim.admin.now().date()
    if request.param == "sqlite":
        yield db_url, demo_database(db_url, sim, day, customers=12, campaigns=CAMPAIGN_X)
        return
    with fresh_postgres_database() as url:
        yield url, demo_database(url, sim, day, customers=12, campaigns=CAMPAIGN_X)


def _locked_by_a_failed_import(sim, url, engine, instance) -> list[str]:
    """The 06:00 run: every import answered 503, so the send stays IMPORTING and its list is locked
    (a re-run cannot re-freeze it). The list's recipients, normalised, sorted."""
    day = sim.admin.now().date()
    sim.admin.add_fault(kind="status", status=503, method="POST", path=IMPORT_PATH, times=None)
    assert not run_cycle(make_resources(sim, url), day, instance).success
    assert [r["state"] for r in ledger_rows(engine)] == ["IMPORTING"]
    sim.admin.clear_faults()
    sim.admin.advance(dt.timedelta(hours=1))
    return sorted(frozen(engine, f"X/{day}", "1002"))


def _run_messages(instance, result) -> list[str]:
    return [e.user_message for e in instance.all_logs(result.run_id) if e.dagster_event is None]


def _spellings(address: str) -> list[str]:
    """``address`` as people type it into an unsubscribe form: capitals, surrounding blanks, and
    a full-width first letter."""
    return [address.upper(), f"\u00a0 {address}\t", _FULL_WIDTH[address[0]] + address[1:]]


def test_a_suppression_added_after_the_freeze_is_left_out_of_the_send(sim, late_db):
    """Review finding 6 (demo r8): the import failed, the person unsubscribed, the re-run sent them
    anyway (the list is frozen and locked, and the import read it as it was). Fails before the fix:
    the victim is mailed."""
    url, engine = late_db
    day = sim.admin.now().date()
    with dg.DagsterInstance.ephemeral() as instance:
        members = _locked_by_a_failed_import(sim, url, engine, instance)
        victim = members[0]
        seed.add_suppression(engine, victim.upper(), reason="unsubscribed")
        result = run_cycle(make_resources(sim, url), day, instance)
        assert result.success
        messages = _run_messages(instance, result)
    (row,) = ledger_rows(engine)
    assert (row["state"], row["rows_in_list"], row["rows_accepted"], row["rows_rejected"]) == (
        "APPROVED", len(members), len(members) - 1, 0)
    sim.admin.advance(dt.timedelta(hours=8))
    sent = sim.admin.sent()
    (campaign,) = sent["campaigns"]
    assert sorted(normalise_identifier(r["identifier"]) for r in campaign["recipients"]) == members[1:]
    assert wrongly_mailed(engine, sent) == (0, [])
    said = [m for m in messages if "1 recipient suppressed since the list was frozen was left out" in m]
    assert any(": APPROVED: " in m for m in said), messages  # the send's outcome line says it
    (mat,) = [e.event_specific_data.materialization for e in result.get_asset_materialization_events()
              if e.asset_key == dg.AssetKey("campaign_sends")]
    assert mat.metadata["recipients_left_out_suppressed"].value == 1  # and the asset's metadata
    (record,) = mat.metadata["sends"].value.records
    assert "1 recipient suppressed since the list was frozen was left out" in record.data["note"], record.data


def test_a_late_suppression_in_another_spelling_is_matched(sim, late_db):
    """Capitals, surrounding blanks (a no-break space, a tab) and a full-width letter: each matches
    the frozen identifier as the freeze would have matched it. Fails before the fix."""
    url, engine = late_db
    day = sim.admin.now().date()
    with dg.DagsterInstance.ephemeral() as instance:
        members = _locked_by_a_failed_import(sim, url, engine, instance)
        victims = members[:3]
        for i, victim in enumerate(victims):  # one spelling each
            spelling = _spellings(victim)[i]
            assert spelling != victim and normalise_identifier(spelling) == victim
            seed.add_suppression(engine, spelling, reason="unsubscribed")
        result = run_cycle(make_resources(sim, url), day, instance)
        assert result.success
        messages = _run_messages(instance, result)
    (row,) = ledger_rows(engine)
    assert (row["state"], row["rows_accepted"]) == ("APPROVED", len(members) - 3)
    sim.admin.advance(dt.timedelta(hours=8))
    sent = sim.admin.sent()
    (campaign,) = sent["campaigns"]
    assert sorted(normalise_identifier(r["identifier"]) for r in campaign["recipients"]) == members[3:]
    assert wrongly_mailed(engine, sent) == (0, [])
    assert any("3 recipients suppressed since the list was frozen were left out" in m for m in messages), messages


def test_everyone_suppressed_after_the_freeze_ends_empty_with_no_campaign(sim, late_db):
    """Nobody left to send to: the send ends EMPTY like any empty list, and nothing is created in
    Cheetah (no list, no campaign). Fails before the fix: the campaign goes to all of them."""
    url, engine = late_db
    day = sim.admin.now().date()
    with dg.DagsterInstance.ephemeral() as instance:
        members = _locked_by_a_failed_import(sim, url, engine, instance)
        for m in members:
            seed.add_suppression(engine, f" {m.upper()} ", reason="unsubscribed")
        result = run_cycle(make_resources(sim, url), day, instance)
        assert result.success
        messages = _run_messages(instance, result)
    (row,) = ledger_rows(engine)
    assert (row["state"], row["camp_id"], row["list_id"], row["rows_accepted"]) == ("EMPTY", None, None, 0)
    assert "suppressed since the list was frozen" in row["error"] and "rejected" not in row["error"], row["error"]
    with cheetah_resource(sim).get_client() as client:
        assert client.find_campaign(row["cheetah_name"]) is None
    assert not [r for r in sim.admin.requests() if r["method"] == "POST" and r["path"].endswith("/EmailCampaign")]
    assert sim.admin.lists(rows=False) == []
    sim.admin.advance(dt.timedelta(hours=8))
    assert sim.admin.sent()["campaigns"] == []
    assert any(f"{len(members)} recipients suppressed since the list was frozen were left out" in m
               for m in messages), messages


def _work_the_import_queue(sim) -> None:
    """Complete every import Cheetah queued. A real Cheetah works its queue by itself; the simulator
    moves an import on only when it is polled, so imports whose replies were lost are polled here."""
    from cheetah_assets.cheetah.errors import UnknownImport

    with cheetah_resource(sim).get_client() as client:
        for import_id in range(1, 1000):
            try:
                client.get_import(import_id)
                client.get_import(import_id)
            except UnknownImport:
                return


def test_a_late_suppression_after_an_import_applied_with_its_reply_lost_is_not_mailed_nor_stuck(sim, late_db):
    """Review: the first run's import was applied but its reply lost (the send stays IMPORTING, its
    list in Cheetah holds all 12); then a recipient unsubscribed. The re-run left them out, but
    imported the other 11 into the same list, which still held all 12: the list-size check refused
    to launch (nobody suppressed was mailed) with "something else changed it", and the campaign
    was stuck for the 11 others for good. Now the resumed import that leaves someone out goes into
    a list of its own, and the 11 are sent, the suppressed person not. Fails before the fix: the
    send ends at CREATED with 12 in the list and 11 accepted, and nothing is sent."""
    url, engine = late_db
    day = sim.admin.now().date()
    with dg.DagsterInstance.ephemeral() as instance:
        sim.admin.add_fault(method="POST", path=IMPORT_PATH, kind="apply_then_drop", times=None)
        assert not run_cycle(make_resources(sim, url), day, instance).success
        assert [r["state"] for r in ledger_rows(engine)] == ["IMPORTING"]
        sim.admin.clear_faults()
        _work_the_import_queue(sim)
        (earlier,) = sim.admin.lists(rows=False)
        members = sorted(frozen(engine, f"X/{day}", "1002"))
        assert earlier["rowCount"] == len(members) == 12, earlier  # the lost attempt's list holds everyone
        victim = members[0]
        seed.add_suppression(engine, victim, reason="unsubscribed")
        sim.admin.advance(dt.timedelta(minutes=30))
        result = run_cycle(make_resources(sim, url), day, instance)
        assert result.success, [(r["state"], r["error"]) for r in ledger_rows(engine)]
        again = run_cycle(make_resources(sim, url), day, instance)  # a further run finds it done
        assert again.success
    (row,) = ledger_rows(engine)
    assert (row["state"], row["rows_in_list"], row["rows_accepted"], row["rows_rejected"]) == (
        "APPROVED", 12, 11, 0), row
    lists = {str(x["listId"]): x for x in sim.admin.lists(rows=False)}
    used = lists[row["list_id"]]
    assert used["listId"] != earlier["listId"] and used["rowCount"] == 11, (used, earlier)
    assert used["listName"].startswith(row["cheetah_name"] + "-"), used  # named after the send
    sim.admin.advance(dt.timedelta(hours=8))
    sent = sim.admin.sent()
    (campaign,) = sent["campaigns"]
    assert campaign["sendCount"] == 1
    assert sorted(normalise_identifier(r["identifier"]) for r in campaign["recipients"]) == members[1:]
    assert wrongly_mailed(engine, sent) == (0, [])


def test_a_resumed_import_whose_reply_is_lost_again_is_found_again_by_its_list_name(sim, db_url):
    """The list of its own is named deterministically: when the resumed import's reply is lost
    too, the next run imports into that same list (not a third one), and the 11 are sent."""
    day = sim.admin.now().date()
    engine = demo_database(db_url, sim, day, customers=12, campaigns=CAMPAIGN_X)
    with dg.DagsterInstance.ephemeral() as instance:
        sim.admin.add_fault(method="POST", path=IMPORT_PATH, kind="apply_then_drop", times=None)
        assert not run_cycle(make_resources(sim, db_url), day, instance).success
        _work_the_import_queue(sim)
        members = sorted(frozen(engine, f"X/{day}", "1002"))
        seed.add_suppression(engine, members[-1].upper(), reason="unsubscribed")
        assert not run_cycle(make_resources(sim, db_url), day, instance).success  # lost again
        sim.admin.clear_faults()
        _work_the_import_queue(sim)
        assert sorted(x["rowCount"] for x in sim.admin.lists(rows=False)) == [11, 12]
        assert run_cycle(make_resources(sim, db_url), day, instance).success
    assert sorted(x["rowCount"] for x in sim.admin.lists(rows=False)) == [11, 12]  # no third list
    (row,) = ledger_rows(engine)
    assert (row["state"], row["rows_accepted"]) == ("APPROVED", 11), row
    sim.admin.advance(dt.timedelta(hours=8))
    sent = sim.admin.sent()
    (campaign,) = sent["campaigns"]
    assert sorted(normalise_identifier(r["identifier"]) for r in campaign["recipients"]) == members[:-1]
    assert wrongly_mailed(engine, sent) == (0, [])


def test_the_list_of_a_resumed_import_is_named_after_the_send_and_whom_it_leaves_out():
    from cheetah_assets.sending.importing import attempt_list_name

    name = attempt_list_name("OPT-X-1002-20251124", ["b@example.com", "a@example.com"])
    assert name == attempt_list_name("OPT-X-1002-20251124", ["a@example.com", "b@example.com"])  # any order
    assert name != attempt_list_name("OPT-X-1002-20251124", ["a@example.com"])
    assert name != attempt_list_name("OPT-X-1002-20251124-r1", ["b@example.com", "a@example.com"])
    assert name.startswith("OPT-X-1002-20251124-s") and len(name) == len("OPT-X-1002-20251124") + 18
    assert attempt_list_name("n", ["a,b"]) != attempt_list_name("n", ["a", "b"])  # unambiguous digest
