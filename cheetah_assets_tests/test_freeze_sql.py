"""The freeze as one INSERT … SELECT (issue 12, item 1), on SQLite and PostgreSQL.

The database does the normalisation (SQLite: builtins for ASCII text), the de-duplication, the
suppression, the template split (SHA-256 of the normalised identifier) and the attrs JSON. These
properties prove it equal to the Python reference (``normalise_identifier``, ``template_index``,
``as_text``) and to the streamed freeze (``in_database=False``), which Python drives row by row.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cheetah_assets.customers import identifiers, queries, schema, seed, sqlite_norm
from cheetah_assets.customers.engines import dispose_engine, engine_for
from cheetah_assets.customers.identifiers import normalise_identifier, template_index
from cheetah_assets.customers.queries import freeze_recipient_list, list_key, template_for
from cheetah_assets.customers.recipients import as_text
from cheetah_assets.customers.schema import recipient, recipient_list, suppression, target_group_members

from .helpers import demo_tables_engine
from .pg import fresh_postgres_database

DAY = dt.date(2025, 11, 24)
FIELDS = {"FNAME": "first_name", "CITY": "city"}
ASCII_NOISE = [" ", "\t", "\n", "\r", "\x0b", "\x0c", "\x1c", "\x1f", "\x7f", "A", "Z", "a", "@", ".", "-", "_", "0", "~"]
UNICODE_NOISE = ["\u00a0", "\u200b", "\ufeff", "ß", "İ", "Ａ", "＠", "É", "e\u0301", "ﬁ", "\u3000", "Σ"]

#: Text without surrogates (no driver can send them) and without NUL (PostgreSQL text cannot hold it).
#: At most 100 characters: the demo table's VARCHAR(100) columns (PostgreSQL refuses longer; the over-long
#: identifiers have tests of their own).
TEXT = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=100)
MOSTLY_ASCII = st.lists(st.sampled_from(ASCII_NOISE + UNICODE_NOISE) | st.characters(max_codepoint=0x7F, exclude_characters="\x00"), max_size=24).map("".join)
IDENTS = TEXT | MOSTLY_ASCII


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request, tmp_path_factory):
    with demo_tables_engine(request.param, tmp_path_factory, "freeze_sql") as eng:
        yield eng


def _sql_values(engine, expr_of, values):
    stmt = sa.select(expr_of(sa.bindparam("v", type_=sa.Text)))
    with engine.connect() as conn:
        return [conn.execute(stmt, {"v": v}).scalar_one() for v in values]


# ------------------------------------------------------------------------------------------------
# the SQL expressions against the Python reference
# ------------------------------------------------------------------------------------------------
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(IDENTS, min_size=1, max_size=15))
def test_database_normalisation_equals_python(engine, values):
    dialect = engine.dialect.name
    assert _sql_values(engine, lambda e: identifiers.norm_sql(e, dialect), values) == [
        normalise_identifier(v) for v in values
    ]


#: Normalising once more changes these ("ß" + combining acute: "ss" + acute, then "sś" composed):
#: the split is the stored (normalised) identifier's, which template_index normalises again.
NOT_IDEMPOTENT = ["\u00df\u0301x@y.com", "ANGSTRO\u0308M\u212b@x.com"]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(IDENTS, min_size=1, max_size=10), st.integers(1, 7))
@example(NOT_IDEMPOTENT, 7)
@example(NOT_IDEMPOTENT, 5)
def test_database_template_split_equals_python(engine, values, count):
    """The split from the normalised identifier (what the freeze stores) is template_for's of it,
    on SQLite both from its text and from its UTF-8 bytes (what a UTF-8 database is handed)."""
    dialect = engine.dialect.name
    normalised = [normalise_identifier(v) for v in values]
    templates = [f"T{i}" for i in range(count)]
    for utf8 in (False, True) if dialect == "sqlite" else (False,):
        got = _sql_values(engine, lambda e: identifiers.template_index_sql(e, count, dialect, sqlite_utf8=utf8),
                          normalised)
        assert got == [template_index(n, count) for n in normalised]
        assert [templates[i] for i in got] == [template_for(n, templates) for n in normalised]


@settings(max_examples=300, deadline=None)
@given(IDENTS, st.integers(1, 7))
@example(NOT_IDEMPOTENT[0], 2)
@example(NOT_IDEMPOTENT[1], 7)
def test_sqlite_template_function_on_utf8_bytes_equals_python(value, count):
    """In a UTF-8 database the freeze hands SQLite's template function the stored identifier's
    bytes (CAST AS BLOB): its split is template_index's of that identifier, as from its text."""
    udf = sqlite_norm._sqlite_template_index
    stored = normalise_identifier(value)
    assert udf(stored.encode("utf-8"), count) == udf(stored, count) == template_index(stored, count)
    assert udf(value.encode("utf-8"), count) == udf(value, count)  # any value: bytes and text agree


def test_template_split_is_balanced():
    counts = [0, 0, 0]
    for i in range(30_000):
        counts[template_index(f"customer{i}@example.com", 3)] += 1
    assert all(abs(c - 10_000) < 400 for c in counts), counts


def test_sqlite_values_that_are_not_ascii_text_take_the_python_path(tmp_path):
    """Integers, reals, blobs and text holding NUL in a SQLite TEXT column: exactly the UDF's result."""
    url = f"sqlite:///{tmp_path / 'odd.db'}"
    eng = engine_for(url, create=True)
    try:
        with eng.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE odd (v TEXT)")
            conn.exec_driver_sql(
                "INSERT INTO odd VALUES (12345), (1.5), (X'41424320'), (' Ab' || char(0) || 'C '), (NULL), ('ÄB ')"
            )
            odd = sa.Table("odd", sa.MetaData(), autoload_with=conn)
            fast = conn.execute(sa.select(identifiers.norm_sql(odd.c.v, "sqlite"))).scalars().all()
            udf = conn.execute(sa.select(identifiers.norm(odd.c.v))).scalars().all()
        assert fast == udf
        assert fast[0] == "12345" and fast[-1] == "äb" and fast[4] is None
    finally:
        dispose_engine(url)


# ------------------------------------------------------------------------------------------------
# the whole freeze: in the database == streamed through Python
# ------------------------------------------------------------------------------------------------
def _empty(engine) -> None:
    with engine.begin() as conn:
        for table in (recipient, recipient_list, target_group_members, suppression, schema.customers):
            conn.execute(sa.delete(table))


def _stored(engine, key):
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(recipient.c.identifier, recipient.c.template_id, recipient.c.attrs).where(recipient.c.list_key == key)
        ).all()
    return {i: (t, json.loads(a)) for i, t, a in rows}


def _freeze(engine, campaign, in_database, templates, progress=None, fields=FIELDS, table="customers", chunk_size=3):
    return freeze_recipient_list(
        engine,
        campaign_id=campaign,
        send_date=DAY,
        target_group="all_customers",
        identifier_column="email",
        fields=fields,
        template_ids=templates,
        in_database=in_database,
        progress=progress,
        customers_table=table,
        chunk_size=chunk_size,
    )


CUSTOMER = st.fixed_dictionaries(
    {"email": st.none() | IDENTS | st.sampled_from(["a@x.com", " A@X.com", "a@x.com\t", "ＡＢ@x.com", "ab@x.com", "b@x.com"]),
     "first_name": st.none() | TEXT,
     "city": st.none() | st.sampled_from(["Paris", "Zürich", 'say "hi"\\', "\u2028\n\t", ""])}
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(CUSTOMER, max_size=25),
    st.lists(st.sampled_from(["A@x.com", "a@x.com\t", "b@X.COM ", "\u200bab@x.com", "zz@x.com", " ", "\u200b"]) | IDENTS,
             max_size=4, unique=True),
    st.integers(1, 4),
)
def test_freeze_in_the_database_equals_the_streamed_freeze(engine, customers, suppressed, n_templates):
    _empty(engine)
    seed.add_customers(engine, customers)
    with engine.begin() as conn:
        if suppressed:
            conn.execute(suppression.insert(), [{"identifier": s, "reason": "unsubscribed"} for s in suppressed])
    templates = [f"{1001 + 2 * i}" for i in range(n_templates)]
    calls: list[int] = []
    streamed = _freeze(engine, "STREAM", False, templates)
    in_db = _freeze(engine, "SQL", True, templates, progress=calls.append)
    assert _stored(engine, list_key("SQL", DAY)) == _stored(engine, list_key("STREAM", DAY))
    fields = ("row_count", "per_template", "in_target_group", "excluded_missing_identifier",
              "excluded_suppressed", "collapsed_duplicates", "reused")
    assert {f: getattr(in_db, f) for f in fields} == {f: getattr(streamed, f) for f in fields}
    assert calls == [in_db.row_count]  # progress once, at the end
    # the reference, spelled out: lowest customer_pk wins per normalised identifier
    blocked = {normalise_identifier(s) for s in suppressed} - {""}
    want = {}
    missing = excluded = 0
    for c in customers:
        n = None if c["email"] is None else identifiers.frozen_identifier(c["email"])
        missing += not n
        excluded += bool(n) and n in blocked
        if n and n not in blocked and n not in want:
            want[n] = (template_for(n, templates), {"FNAME": c["first_name"], "CITY": c["city"]})
    assert _stored(engine, list_key("SQL", DAY)) == want
    # and the counts, each customer under the first reason that applies
    assert (in_db.in_target_group, in_db.excluded_missing_identifier, in_db.excluded_suppressed,
            in_db.collapsed_duplicates, in_db.row_count) == (
        len(customers), missing, excluded, len(customers) - missing - excluded - len(want), len(want))


def _people(engine) -> sa.Table:
    """A customer table with an integer, a date and a real column next to the text ones."""
    md = sa.MetaData()
    people = sa.Table(
        "people", md,
        sa.Column("customer_pk", sa.Integer, primary_key=True),
        sa.Column("email", sa.String(320)),
        sa.Column("first_name", sa.Text),
        sa.Column("age", sa.Integer),
        sa.Column("born", sa.Date),
        sa.Column("score", sa.Float),
    )
    md.drop_all(engine)
    md.create_all(engine)
    return people


def test_integer_fields_in_the_database_and_dates_streamed_give_the_same_text(engine):
    _empty(engine)
    people = _people(engine)
    rows = [
        {"customer_pk": 1, "email": "Ann@x.com", "first_name": "Ann", "age": 41, "born": dt.date(1984, 2, 29), "score": 1.5},
        {"customer_pk": 2, "email": "bob@x.com ", "first_name": None, "age": None, "born": None, "score": None},
        {"customer_pk": 3, "email": "ann@x.com", "first_name": "dup", "age": -7, "born": dt.date(2000, 1, 1), "score": 2.0},
    ]
    with engine.begin() as conn:
        conn.execute(people.insert(), rows)
        conn.execute(target_group_members.insert(), [{"target_group": "all_customers", "customer_pk": r["customer_pk"]} for r in rows])
    text_fields = {"NAME": "first_name", "AGE": "age"}
    in_db = _freeze(engine, "P-SQL", True, ["1"], fields=text_fields, table="people")
    streamed = _freeze(engine, "P-STREAM", False, ["1"], fields=text_fields, table="people")
    assert _stored(engine, list_key("P-SQL", DAY)) == _stored(engine, list_key("P-STREAM", DAY)) == {
        "ann@x.com": ("1", {"NAME": "Ann", "AGE": "41"}),
        "bob@x.com": ("1", {"NAME": None, "AGE": None}),
    }
    assert (in_db.row_count, in_db.collapsed_duplicates) == (streamed.row_count, streamed.collapsed_duplicates) == (2, 1)

    # a date (and a real) column is rendered by Python: streamed, chunk by chunk, as before
    calls: list[int] = []
    _freeze(engine, "P-DATE", True, ["1"], progress=calls.append,
            fields={"BORN": "born", "SCORE": "score"}, table="people", chunk_size=1)
    assert _stored(engine, list_key("P-DATE", DAY)) == {
        "ann@x.com": ("1", {"BORN": as_text(dt.date(1984, 2, 29)), "SCORE": as_text(1.5)}),
        "bob@x.com": ("1", {"BORN": None, "SCORE": None}),
    }
    assert calls == [1, 2]
    with engine.begin() as conn:
        conn.execute(sa.delete(target_group_members))
    people.drop(engine)


def test_an_empty_list_reports_progress_once(engine):
    _empty(engine)
    for in_database in (True, False):
        calls: list[int] = []
        result = _freeze(engine, f"EMPTY-{in_database}", in_database, ["1001", "1003"], progress=calls.append)
        assert (result.row_count, result.per_template, calls) == (0, {"1001": 0, "1003": 0}, [0])


@pytest.mark.postgres
def test_installed_function_is_recognised_without_generating_it_again(monkeypatch):
    """Generating the PostgreSQL bodies takes seconds: a freeze must not pay it when they are installed."""
    with fresh_postgres_database() as url:
        eng = engine_for(url)
        identifiers.ensure_sql_function(eng)

        def generate_again():
            raise AssertionError("generated again")

        monkeypatch.setattr(identifiers, "postgres_function_bodies", generate_again)
        identifiers.ensure_sql_function(eng)  # recognised by its comment
        with eng.begin() as conn:  # someone replaces the body by hand: the comment no longer vouches for it
            conn.exec_driver_sql(
                "CREATE OR REPLACE FUNCTION cheetah_norm(text) RETURNS text LANGUAGE sql IMMUTABLE AS 'SELECT lower($1)'"
            )
        with pytest.raises(AssertionError, match="generated again"):
            identifiers.ensure_sql_function(eng)


# ------------------------------------------------------------------------------------------------
# what a freeze costs, counted without a clock (SQLite)
# ------------------------------------------------------------------------------------------------
def _sqlite_people(tmp_path, name, members, suppressed, *, ascii=True):
    """A SQLite demo database with ``members`` customers (a few duplicates) and a suppression list."""
    url = f"sqlite:///{tmp_path / name}"
    eng = engine_for(url, create=True)
    schema.create_demo_tables(eng)
    schema.create_integration_tables(eng)
    domain = "x.com" if ascii else "bücher.de"
    seed.add_customers(eng, [{"email": f"P{i % (members - 5)}@{domain}", "first_name": f"n{i}", "city": "Paris"}
                             for i in range(members)])
    with eng.begin() as conn:
        conn.execute(suppression.insert(), [{"identifier": f"s{i}@{domain}", "reason": "unsubscribed"}
                                            for i in range(suppressed)])
    return url, eng


def test_sqlite_normalises_each_member_once(tmp_path, monkeypatch):
    """Non-ASCII identifiers go through the registered Python function: counting its calls shows
    that the planner did not copy the normalisation into every place that names it, and that the
    counts and the insert share one pass over the members. Before, each member was normalised
    seven times."""
    calls = []
    real = sqlite_norm._sqlite_norm
    # (the template split hands it the identifier's UTF-8 bytes)
    monkeypatch.setattr(sqlite_norm, "_sqlite_norm",
                        lambda v: calls.append(v.decode() if isinstance(v, bytes) else v) or real(v))
    url, eng = _sqlite_people(tmp_path, "once.db", members=200, suppressed=30, ascii=False)
    try:
        calls.clear()
        result = _freeze(eng, "ONCE", True, ["1001", "1003"])
        assert (result.row_count, result.collapsed_duplicates) == (195, 5)
        # once per member ("P...", into the members' table both statements read), once per
        # recipient for the template split (its normalised "p..."), once per suppressed entry
        assert sum(v.startswith("P") for v in calls) == 200
        assert sum(v.startswith("p") for v in calls) == 195
        assert sum(v.startswith("s") for v in calls) == 30
    finally:
        dispose_engine(url)


def _vm_steps(eng, statements) -> int:
    """SQLite virtual machine instructions (in units of 100) spent running ``statements``."""
    steps = [0]
    with eng.connect() as conn:
        raw = conn.connection.driver_connection

        def tick():
            steps[0] += 1
            return 0

        raw.set_progress_handler(tick, 100)
        try:
            for stmt in statements:
                result = conn.execute(stmt)
                if result.returns_rows:
                    result.fetchall()
        finally:
            raw.set_progress_handler(None, 0)
        conn.rollback()
    return steps[0]


def test_sqlite_freeze_work_grows_linearly_with_members_and_suppression(tmp_path):
    """Doubling both the target group and the suppression list about doubles the freeze's work.

    A plan that scans the suppression list once per member (SQLite chose that for a LEFT JOIN to
    it once the members became a subquery) quadruples it; measured in SQLite VM instructions,
    not in seconds."""
    from cheetah_assets.customers.freeze_sql import field_texts, insert_statement, selection
    from cheetah_assets.customers.recipients import reflect_customers

    work = []
    for n in (1_000, 2_000):
        url, eng = _sqlite_people(tmp_path, f"lin{n}.db", members=n, suppressed=n)
        try:
            customers = reflect_customers(eng, "customers")
            texts = field_texts(customers, list(FIELDS.values()), eng.dialect)
            chosen = selection(customers, target_group="all_customers", identifier_column="email",
                               field_exprs=texts, dialect="sqlite", field_names=list(FIELDS))
            insert = insert_statement(f"LIN{n}", chosen.kept, ["1001", "1003"], list(FIELDS), "sqlite", sqlite_utf8=True)
            work.append(_vm_steps(eng, [*chosen.setup, chosen.counts, *chosen.prune, insert, *chosen.teardown]))
        finally:
            dispose_engine(url)
    assert 1.6 < work[1] / work[0] < 2.6, work


def test_sqlite_keeps_the_lowest_customer_whatever_order_the_members_come_in(tmp_path):
    """The members are written sorted by (identifier, customer_pk) so that each identifier's first
    row is its lowest customer; the upsert keeps the lowest one (and its fields) in any order: the
    same fill with the customers of each identifier in descending order keeps the same rows."""
    from cheetah_assets.customers.freeze_sql import field_texts, insert_statement, selection
    from cheetah_assets.customers.recipients import reflect_customers

    url = f"sqlite:///{tmp_path / 'order.db'}"
    eng = engine_for(url, create=True)
    try:
        schema.create_demo_tables(eng)
        schema.create_integration_tables(eng)
        seed.add_customers(eng, [{"email": e, "first_name": f"n{i}", "city": "Paris"}
                                 for i, e in enumerate(["b@x.com", "A@x.com", " a@x.com", "B@X.com", "a@x.com\t"])])
        customers = reflect_customers(eng, "customers")
        texts = field_texts(customers, list(FIELDS.values()), eng.dialect)
        stored = {}
        for order in ("ASC", "DESC"):
            chosen = selection(customers, target_group="all_customers", identifier_column="email",
                               field_exprs=texts, dialect="sqlite", field_names=list(FIELDS))
            insert = insert_statement(f"ORDER-{order}", chosen.kept, ["1001"], list(FIELDS), "sqlite")
            with eng.begin() as conn:
                for stmt in chosen.setup:
                    if isinstance(stmt, sa.Insert) and stmt.table.name == "cheetah_freeze_members":
                        sql = str(stmt.compile(dialect=eng.dialect, compile_kwargs={"literal_binds": True}))
                        assert "ORDER BY ident, members.pk ON CONFLICT" in sql
                        sql = sql.replace("LIMIT ? OFFSET", "LIMIT -1 OFFSET")  # the one bind left unrendered
                        stmt = sa.text(sql.replace("members.pk ON CONFLICT", f"members.pk {order} ON CONFLICT"))
                    conn.execute(stmt)
                counts = tuple(conn.execute(chosen.counts).one())
                for stmt in (*chosen.prune, insert, *chosen.teardown):
                    conn.execute(stmt)
            stored[order] = (counts, _stored(eng, f"ORDER-{order}"))
        assert stored["ASC"] == stored["DESC"] == (
            (5, 0, 0),
            {"a@x.com": ("1001", {"FNAME": "n1", "CITY": "Paris"}), "b@x.com": ("1001", {"FNAME": "n0", "CITY": "Paris"})},
        )
    finally:
        dispose_engine(url)


def test_the_recipient_table_is_written_once_per_recipient(engine):
    """The list's key is its only index (SQLite: a WITHOUT ROWID table, the key's b-tree itself),
    and on PostgreSQL its identifiers are ordered bytewise, the order the freeze writes them in."""
    inspector = sa.inspect(engine)
    assert inspector.get_indexes("cheetah_recipient") == []
    assert inspector.get_pk_constraint("cheetah_recipient")["constrained_columns"] == ["list_key", "identifier"]
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            ddl = conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE name = 'cheetah_recipient'").scalar_one()
            assert "WITHOUT ROWID" in ddl
        else:
            collations = dict(conn.exec_driver_sql(
                "SELECT column_name, collation_name FROM information_schema.columns "
                "WHERE table_name = 'cheetah_recipient' AND column_name IN ('list_key', 'identifier')"
            ).all())
            assert collations == {"list_key": "C", "identifier": "C"}


@pytest.mark.postgres
def test_an_earlier_recipient_table_works_and_takes_the_documented_upgrade():
    """A cheetah_recipient made before list_key had collation "C" keeps working; the statement
    docs/deploy.md gives (read from there) upgrades it in place, rows kept."""
    import pathlib
    import re

    doc = (pathlib.Path(__file__).resolve().parents[1] / "docs" / "deploy.md").read_text()
    (upgrade,) = re.findall(r"`(ALTER TABLE cheetah_recipient [^`]+)`", doc)
    with fresh_postgres_database() as url:
        eng = engine_for(url)
        schema.create_demo_tables(eng)
        with eng.begin() as conn:  # the earlier shape: list_key in the database's collation
            conn.exec_driver_sql(
                "CREATE TABLE cheetah_recipient (list_key VARCHAR(200) NOT NULL, identifier VARCHAR(320) "
                'COLLATE "C" NOT NULL, template_id VARCHAR(64) NOT NULL, attrs TEXT NOT NULL, '
                "PRIMARY KEY (list_key, identifier))"
            )
        schema.create_integration_tables(eng)
        seed.add_customers(eng, [{"email": f"p{i}@x.com", "first_name": "n", "city": "c"} for i in range(30)])
        before = _freeze(eng, "OLD", True, ["1001", "1003"])
        with eng.begin() as conn:
            conn.exec_driver_sql(upgrade)
            collation = conn.exec_driver_sql(
                "SELECT collation_name FROM information_schema.columns "
                "WHERE table_name = 'cheetah_recipient' AND column_name = 'list_key'"
            ).scalar_one()
        assert collation == "C"
        assert len(_stored(eng, list_key("OLD", DAY))) == before.row_count == 30
        after = _freeze(eng, "NEW", True, ["1001", "1003"])
        assert _stored(eng, list_key("NEW", DAY)) == _stored(eng, list_key("OLD", DAY))
        assert after.per_template == before.per_template
        dispose_engine(url)


@pytest.mark.postgres
@pytest.mark.parametrize("group, by_key", [(150, True), (30_000, False)], ids=["a small group", "the whole base"])
def test_postgres_reads_a_small_groups_customers_by_key(monkeypatch, group, by_key):
    """At PostgreSQL's default random_page_cost (4) a small group's members were joined to a full
    scan of the customer table (1.15 s a freeze at 5M customers). The freeze's settings make the
    planner fetch them by key, and still scan the table for a group that is all of it."""
    from cheetah_assets.customers import freeze
    from cheetah_assets.customers.freeze_sql import field_texts, selection
    from cheetah_assets.customers.recipients import reflect_customers

    with fresh_postgres_database() as url:
        eng = engine_for(url)
        schema.create_demo_tables(eng)
        schema.create_integration_tables(eng)
        identifiers.ensure_sql_function(eng)
        with eng.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO customers (customer_pk, email, first_name, city) "
                "SELECT i, 'p' || i || '@x.com', 'n', 'c' FROM generate_series(1, 30000) AS i"
            )
            conn.exec_driver_sql(
                "INSERT INTO target_group_members (target_group, customer_pk) "
                f"SELECT 'g', i FROM generate_series(1, 30000, {30_000 // group}) AS i"
            )
            conn.exec_driver_sql("ANALYZE customers")
            conn.exec_driver_sql("ANALYZE target_group_members")
        customers = reflect_customers(eng, "customers")
        texts = field_texts(customers, list(FIELDS.values()), eng.dialect)
        chosen = selection(customers, target_group="g", identifier_column="email", field_exprs=texts,
                           dialect="postgresql", field_names=list(FIELDS))
        compiled = chosen.setup[-1].compile(dialect=eng.dialect)  # the statement that reads the customers
        assert str(compiled).startswith("CREATE TEMPORARY TABLE cheetah_freeze_kept ")

        def scans_customers(settings) -> bool:
            with eng.begin() as conn:
                settings(conn)
                plan = conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + str(compiled), compiled.params).scalar_one()
            nodes, todo = [], [plan[0]["Plan"]]
            while todo:
                node = todo.pop()
                nodes.append(node)
                todo.extend(node.get("Plans", []))
            return any(n["Node Type"] == "Seq Scan" and n.get("Relation Name") == "customers" for n in nodes)

        assert scans_customers(freeze.pg_freeze_settings) is not by_key
        if by_key:  # and the default cost scanned the whole table for it
            monkeypatch.setattr(freeze, "PG_FREEZE_RANDOM_PAGE_COST", 4)
            assert scans_customers(freeze.pg_freeze_settings)
            monkeypatch.undo()
            # the freeze itself runs these settings in its transaction, before its INSERT
            executed: list[str] = []
            sa.event.listen(eng, "before_cursor_execute", lambda c, cur, stmt, *a: executed.append(stmt))
            result = freeze_recipient_list(eng, campaign_id="PLAN", send_date=DAY, target_group="g",
                                           identifier_column="email", fields=FIELDS, template_ids=["1001", "1003"])
            assert result.row_count == group
            insert_at = next(i for i, stmt in enumerate(executed) if stmt.startswith("CREATE TEMPORARY TABLE"))
            assert f"SET LOCAL random_page_cost = {freeze.PG_FREEZE_RANDOM_PAGE_COST}" in executed[:insert_at]
        dispose_engine(url)


def test_suppression_entries_that_normalise_alike_or_to_nothing(engine):
    """Two suppression entries with one normal form, and entries that normalise to "": the freeze
    neither fails nor counts a missing identifier as suppressed (each member under its first
    reason); in the database as streamed."""
    _empty(engine)
    emails = ["a@x.com", " A@X.COM", None, " ", "\u200b", "b@x.com", "B@x.com"]
    seed.add_customers(engine, [{"email": e, "first_name": f"n{i}", "city": "c"} for i, e in enumerate(emails)])
    with engine.begin() as conn:
        conn.execute(suppression.insert(), [{"identifier": s, "reason": "unsubscribed"}
                                            for s in ["A@x.com", "a@x.com\t", " ", "\u200b"]])
    for in_database in (True, False):
        r = _freeze(engine, f"SUPP-{in_database}", in_database, ["1001", "1003"])
        assert (r.in_target_group, r.excluded_missing_identifier, r.excluded_suppressed, r.collapsed_duplicates,
                r.row_count) == (7, 3, 2, 1, 1)
        assert set(_stored(engine, list_key(f"SUPP-{in_database}", DAY))) == {"b@x.com"}


def test_a_utf16_sqlite_database_gets_the_same_template_split(tmp_path):
    """PRAGMA encoding is fixed when a SQLite file is created, and can be UTF-16: there the bytes
    of CAST(text AS BLOB) are not UTF-8. Before the fix 11 of 20 recipients went to the other
    template; now the in-database freeze equals the streamed one and template_for."""
    import sqlite3

    path = tmp_path / "utf16.db"
    raw = sqlite3.connect(path)
    raw.execute("PRAGMA encoding = 'UTF-16le'")
    raw.execute("CREATE TABLE t (x)")  # the encoding is written with the first table
    raw.execute("DROP TABLE t")
    raw.close()
    url = f"sqlite:///{path}"
    eng = engine_for(url)
    try:
        assert not sqlite_norm.sqlite_text_is_utf8(eng)
        schema.create_demo_tables(eng)
        schema.create_integration_tables(eng)
        seed.add_customers(eng, [{"email": f"Person{i}@x.com", "first_name": "n", "city": "c"} for i in range(20)]
                           + [{"email": "Zoë@x.com", "first_name": "z", "city": "c"}])
        templates = ["1001", "1003"]
        for in_database in (True, False):
            _freeze(eng, f"U16-{in_database}", in_database, templates)
        stored = _stored(eng, list_key("U16-True", DAY))
        assert stored == _stored(eng, list_key("U16-False", DAY))
        assert {i: t for i, (t, _) in stored.items()} == {i: template_for(i, templates) for i in stored}
    finally:
        dispose_engine(url)


def test_an_identifier_stored_as_invalid_utf8_fails_the_freeze(tmp_path):
    """A TEXT identifier that is not UTF-8 (written as raw bytes): the freeze fails, in the database
    as streamed, and stores no list (before the fix the in-database freeze stored it, and the list
    could not be read back)."""
    url = f"sqlite:///{tmp_path / 'bad.db'}"
    eng = engine_for(url, create=True)
    try:
        schema.create_demo_tables(eng)
        schema.create_integration_tables(eng)
        with eng.begin() as conn:
            conn.exec_driver_sql("INSERT INTO customers (customer_pk, email, first_name, city) VALUES "
                                 "(1, CAST(X'C3412D4040' AS TEXT), 'bad', 'c'), (2, 'ok@x.com', 'ok', 'c')")
            conn.exec_driver_sql("INSERT INTO target_group_members VALUES ('all_customers', 1), ('all_customers', 2)")
        for in_database in (True, False):
            with pytest.raises(sa.exc.OperationalError):
                _freeze(eng, f"BAD-{in_database}", in_database, ["1", "2"])
        with eng.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(recipient)).scalar_one() == 0
            assert conn.execute(sa.select(sa.func.count()).select_from(recipient_list)).scalar_one() == 0
    finally:
        dispose_engine(url)


def _text_identifiers(engine, emails) -> sa.Table:
    """A customer table whose identifier column is TEXT (any length), every row in the group."""
    md = sa.MetaData()
    table = sa.Table("text_ids", md, sa.Column("customer_pk", sa.Integer, primary_key=True),
                     sa.Column("email", sa.Text), sa.Column("first_name", sa.Text), sa.Column("city", sa.Text))
    md.drop_all(engine)
    md.create_all(engine)
    with engine.begin() as conn:
        conn.execute(sa.delete(target_group_members))
        conn.execute(table.insert(), [{"customer_pk": i + 1, "email": e, "first_name": f"n{i}", "city": None}
                                      for i, e in enumerate(emails)])
        conn.execute(target_group_members.insert(), [{"target_group": "all_customers", "customer_pk": i + 1}
                                                     for i in range(len(emails))])
    return table


def test_an_identifier_too_long_for_a_list_is_missing_and_the_rest_is_sent(engine):
    """Regression (review item 4): one identifier whose normalised form is longer than the list's
    key (VARCHAR(320)) failed the whole campaign's freeze on PostgreSQL ("value too long") and was
    frozen on SQLite. Now an identifier longer than 320 characters, normalised or as sent, counts
    as missing, on both databases, in the database as streamed; 320 characters still go out."""
    _empty(engine)
    ligatures = "\ufb03" * 150 + "@example.com"  # 162 characters, normalised 462 ("ffi" each)
    decomposed = "e\u0301" * 170 + "@x.com"  # 346 as sent, 176 normalised
    longest = "A" * 314 + "@x.com"  # exactly 320
    emails = ["ok1@example.com", ligatures, decomposed, "b" * 321 + "@x.com", longest, " ok2@example.com\t"]
    table = _text_identifiers(engine, emails)
    want = {"ok1@example.com", "a" * 314 + "@x.com", "ok2@example.com"}
    for in_database in (True, False):
        r = _freeze(engine, f"LONG-{in_database}", in_database, ["1001", "1003"], table="text_ids")
        assert (r.in_target_group, r.row_count, r.excluded_missing_identifier) == (6, 3, 3)
        assert set(_stored(engine, list_key(f"LONG-{in_database}", DAY))) == want
    assert _stored(engine, list_key("LONG-True", DAY)) == _stored(engine, list_key("LONG-False", DAY))
    # the reference agrees: too long normalised (462, 327) or as sent (346 for 176 normalised)
    assert [len(identifiers.normal_form(e)) for e in emails[1:5]] == [462, 176, 327, 320]
    assert {identifiers.frozen_identifier(e) for e in emails} - {""} == want
    with engine.begin() as conn:
        conn.execute(sa.delete(target_group_members))
    table.drop(engine)


def test_a_member_too_long_as_sent_neither_wins_nor_hides_a_shorter_spelling(engine):
    """Two spellings of one identifier, the lower customer's too long as sent ("e" + combining acute
    is one character normalised): the other customer is sent, the first counts as missing, not as
    a duplicate; of a suppressed identifier, the too-long spelling is missing and the other
    suppressed (each member under the first reason that applies). PostgreSQL decides this in the
    sort of its one pass over the members (too long last), SQLite in its upsert."""
    _empty(engine)
    long_x, long_y, long_z = ("e\u0301" * 161 + f"@{d}.com" for d in "xyz")  # 328 as sent
    short_x, short_y = ("\u00e9" * 161 + f"@{d}.com" for d in "xy")  # 167: what the long ones normalise to
    table = _text_identifiers(engine, [long_x, short_x, long_y, short_y, long_z])
    with engine.begin() as conn:
        conn.execute(suppression.insert(), [{"identifier": short_y.upper(), "reason": "unsubscribed"}])
    try:
        for in_database in (True, False):
            r = _freeze(engine, f"SPELL-{in_database}", in_database, ["1001", "1003"], table="text_ids")
            assert (r.in_target_group, r.row_count, r.excluded_missing_identifier, r.excluded_suppressed,
                    r.collapsed_duplicates) == (5, 1, 3, 1, 0)
            assert _stored(engine, list_key(f"SPELL-{in_database}", DAY)) == {
                short_x: (template_for(short_x, ["1001", "1003"]), {"FNAME": "n1", "CITY": None})}
        assert identifiers.frozen_identifier(long_x) == "" and identifiers.frozen_identifier(short_x) == short_x
    finally:
        with engine.begin() as conn:
            conn.execute(sa.delete(target_group_members))
            conn.execute(sa.delete(suppression))
        table.drop(engine)


def test_a_bad_stored_date_is_sent_as_stored_and_does_not_stop_the_campaign(tmp_path):
    """Regression (review item 5): SQLite keeps whatever was written, and one DATE value that is not
    an ISO date ('03/02/1990', '') made SQLAlchemy's date conversion raise, which stopped the whole
    campaign's freeze with a message naming neither column nor customer. Now such a value (and a
    DATETIME or NUMERIC one) is sent as it is stored; good values are rendered as before; in the
    database as streamed."""
    url = f"sqlite:///{tmp_path / 'dates.db'}"
    eng = engine_for(url, create=True)
    try:
        schema.create_integration_tables(eng)
        with eng.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE customers (customer_pk INTEGER PRIMARY KEY, email VARCHAR(320), "
                                 "born DATE, seen DATETIME, score NUMERIC(10, 2))")
            conn.exec_driver_sql("CREATE TABLE target_group_members (target_group VARCHAR(100), customer_pk INTEGER, "
                                 "PRIMARY KEY (target_group, customer_pk))")
            conn.exec_driver_sql("CREATE TABLE suppression (identifier VARCHAR(320) PRIMARY KEY, reason VARCHAR(32))")
            rows = [(1, "good@x.com", "1990-02-03", "2025-01-02 10:11:12.000000", 1.5),
                    (2, "slash@x.com", "03/02/1990", "yesterday", "n/a"),
                    (3, "empty@x.com", "", "", ""),
                    (4, "time@x.com", "1990-02-03T10:00:00", None, None)]
            conn.exec_driver_sql("INSERT INTO customers VALUES (?, ?, ?, ?, ?)", rows)
            conn.exec_driver_sql("INSERT INTO target_group_members SELECT 'all_customers', customer_pk FROM customers")
        fields = {"BORN": "born", "SEEN": "seen", "SCORE": "score"}
        for in_database in (True, False):
            r = _freeze(eng, f"DATES-{in_database}", in_database, ["1"], fields=fields)
            assert r.row_count == 4
        stored = _stored(eng, list_key("DATES-True", DAY))
        assert stored == _stored(eng, list_key("DATES-False", DAY))
        assert {i: a for i, (_, a) in stored.items()} == {
            "good@x.com": {"BORN": "1990-02-03", "SEEN": "2025-01-02T10:11:12", "SCORE": "1.50"},
            "slash@x.com": {"BORN": "03/02/1990", "SEEN": "yesterday", "SCORE": "n/a"},
            "empty@x.com": {"BORN": "", "SEEN": "", "SCORE": ""},
            "time@x.com": {"BORN": "1990-02-03T10:00:00", "SEEN": None, "SCORE": None},
        }
    finally:
        dispose_engine(url)


def _typed(engine, name, columns, rows) -> sa.Table:
    """A customer table ``name``: ``customer_pk``, ``email`` and ``columns``, each of ``rows`` in the group."""
    md = sa.MetaData()
    table = sa.Table(name, md, sa.Column("customer_pk", sa.Integer, primary_key=True),
                     sa.Column("email", sa.String(320)), *columns)
    md.drop_all(engine)
    md.create_all(engine)
    with engine.begin() as conn:
        conn.execute(sa.delete(target_group_members))
        conn.execute(table.insert(), [{"customer_pk": i + 1, **r} for i, r in enumerate(rows)])
        conn.execute(target_group_members.insert(), [{"target_group": "all_customers", "customer_pk": i + 1}
                                                     for i in range(len(rows))])
    return table


def test_non_text_personalisation_is_the_same_text_on_every_database(engine):
    """Regression (review item 7): an unscaled NUMERIC was sent as '19.9000000000' from SQLite and
    '19.9' from PostgreSQL, a CHAR(5) 'AB' as 'AB   ' from PostgreSQL, booleans as 'True'/'False'.
    Now, on both databases, in the database as streamed: an unscaled decimal without trailing zeros
    and never with an exponent, a declared scale kept ('19.90'), a CHAR without its padding,
    booleans 'true'/'false'; dates stay ISO."""
    from decimal import Decimal

    cols = [sa.Column("price", sa.Numeric), sa.Column("amount", sa.Numeric(10, 2)), sa.Column("vip", sa.Boolean),
            sa.Column("code", sa.CHAR(5)), sa.Column("born", sa.Date)]
    prices = ["19.9", "10", "0.5", "1E+6", "0.000000000001", "-2.50"]
    rows = [{"email": f"p{i}@x.com", "price": Decimal(p), "amount": Decimal(p), "vip": i % 2 == 0,
             "code": ["AB", "ABCDE", " A B ", "", "x", "AB   "][i], "born": dt.date(1990, 2, 3)}
            for i, p in enumerate(prices)]
    rows.append({"email": "none@x.com", "price": None, "amount": None, "vip": None, "code": None, "born": None})
    table = _typed(engine, "typed", cols, rows)
    want_price = ["19.9", "10", "0.5", "1000000", "0.000000000001", "-2.5"]
    want_amount = ["19.90", "10.00", "0.50", "1000000.00", "0.00", "-2.50"]
    want_code = ["AB", "ABCDE", " A B", "", "x", "AB"]
    want = {f"p{i}@x.com": {"PRICE": want_price[i], "AMOUNT": want_amount[i], "VIP": ["true", "false"][i % 2],
                            "CODE": want_code[i], "BORN": "1990-02-03"} for i in range(len(prices))}
    want["none@x.com"] = dict.fromkeys(["PRICE", "AMOUNT", "VIP", "CODE", "BORN"])
    fields = {"PRICE": "price", "AMOUNT": "amount", "VIP": "vip", "CODE": "code", "BORN": "born"}
    for in_database in (True, False):
        _freeze(engine, f"TYPED-{in_database}", in_database, ["1"], fields=fields, table="typed")
        assert {i: a for i, (_, a) in _stored(engine, list_key(f"TYPED-{in_database}", DAY)).items()} == want
        # a CHAR alone is rendered by the database itself (in_database=True): its padding stripped too
        _freeze(engine, f"CHAR-{in_database}", in_database, ["1"], fields={"CODE": "code"}, table="typed")
        assert {i: a["CODE"] for i, (_, a) in _stored(engine, list_key(f"CHAR-{in_database}", DAY)).items()} == {
            i: a["CODE"] for i, a in want.items()}
    assert as_text(True) == "true" and as_text(Decimal("-0.000")) == "0" and as_text(Decimal("1.2E+3")) == "1200"
    with engine.begin() as conn:
        conn.execute(sa.delete(target_group_members))
    table.drop(engine)


@pytest.mark.parametrize("col_type", [sa.REAL, sa.Float, sa.DOUBLE_PRECISION, lambda: sa.Numeric(10, 2)],
                         ids=["real", "float", "double", "numeric-10-2"])
def test_a_floating_point_identifier_column_is_refused_with_what_to_change(engine, col_type):
    """Regression (review item 8): a REAL identifier column froze '123.0' on SQLite (which the
    suppression entry '123' missed) and '123' on PostgreSQL. An identifier in a float column (or a
    NUMERIC with decimals: '123.00' on PostgreSQL) is a data-model error, so the freeze now refuses
    it, in the database as streamed, with one message naming the column and what to change;
    integer and unscaled NUMERIC columns still freeze alike on both databases."""
    rows = [{"cust_no": v, "first_name": f"n{v}"} for v in (123, 456)]
    _empty(engine)
    with engine.begin() as conn:
        conn.execute(suppression.insert(), [{"identifier": "123", "reason": "unsubscribed"}])
    table = _typed(engine, "numbered", [sa.Column("cust_no", col_type()), sa.Column("first_name", sa.Text)], rows)
    for in_database in (True, False):
        with pytest.raises(queries.CustomerSchemaError) as err:
            freeze_recipient_list(engine, campaign_id=f"F-{in_database}", send_date=DAY, target_group="all_customers",
                                  identifier_column="cust_no", fields={"FNAME": "first_name"}, template_ids=["1"],
                                  customers_table="numbered", in_database=in_database)
        message = str(err.value)
        assert "numbered.cust_no" in message and "integer or text column" in message and "\n" not in message
        assert _stored(engine, list_key(f"F-{in_database}", DAY)) == {}
    table.drop(engine)
    for exact in (sa.Integer, sa.BigInteger, sa.Numeric):
        table = _typed(engine, "numbered", [sa.Column("cust_no", exact()), sa.Column("first_name", sa.Text)], rows)
        r = freeze_recipient_list(engine, campaign_id="OK", send_date=DAY, target_group="all_customers",
                                  identifier_column="cust_no", fields={"FNAME": "first_name"}, template_ids=["1"],
                                  customers_table="numbered")
        assert (r.row_count, r.excluded_suppressed) == (1, 1)
        assert list(_stored(engine, list_key("OK", DAY))) == ["456"]
        table.drop(engine)
    with engine.begin() as conn:
        conn.execute(sa.delete(target_group_members))
