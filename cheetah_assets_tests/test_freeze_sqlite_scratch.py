"""SQLite: the freeze's scratch tables live in the temporary schema without a rollback journal
(``list_transaction``). That is only safe if the mode never outlives the freeze and a freeze that
fails throws its connection (and the temporary schema it may have left half-written) away."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from cheetah_assets.customers import schema
from cheetah_assets.customers.engines import dispose_engine, engine_for
from cheetah_assets.customers.queries import freeze_recipient_list
from cheetah_assets.customers.schema import recipient, recipient_list


def _freeze(eng, campaign):
    return freeze_recipient_list(
        eng, campaign_id=campaign, send_date=dt.date(2025, 11, 24), target_group="all_customers",
        identifier_column="email", fields={"FNAME": "first_name"}, template_ids=["1", "2"],
    )


@pytest.fixture
def eng(tmp_path):
    url = f"sqlite:///{tmp_path / 'scratch.db'}"
    engine = engine_for(url, create=True)
    schema.create_demo_tables(engine)
    schema.create_integration_tables(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO customers (customer_pk, email, first_name, city) VALUES "
                             "(1, 'a@x.com', 'A', 'c'), (2, ' A@X.com', 'dup', 'c'), (3, 'b@x.com', 'B', 'c')")
        conn.exec_driver_sql("INSERT INTO target_group_members VALUES "
                             "('all_customers', 1), ('all_customers', 2), ('all_customers', 3)")
    yield engine
    dispose_engine(url)


def _driver(eng):
    with eng.connect() as conn:
        return conn.connection.driver_connection, conn.exec_driver_sql("PRAGMA temp.journal_mode").scalar()


def test_the_temporary_schema_has_no_journal_during_the_freeze_only(eng):
    seen: list[str] = []

    @sa.event.listens_for(eng, "before_cursor_execute")
    def record(conn, cursor, statement, *args):
        if statement.startswith(("PRAGMA temp.journal_mode", "BEGIN", "INSERT INTO cheetah_freeze_members")):
            seen.append(statement)

    before, mode_before = _driver(eng)
    result = _freeze(eng, "OK")
    sa.event.remove(eng, "before_cursor_execute", record)
    assert result.row_count == 2 and result.collapsed_duplicates == 1
    off = seen.index("PRAGMA temp.journal_mode = OFF")
    assert off < seen.index("BEGIN IMMEDIATE") < next(i for i, s in enumerate(seen) if s.startswith("INSERT"))
    after, mode_after = _driver(eng)
    assert after is before  # a freeze that succeeds keeps its connection ...
    assert mode_after == mode_before == "delete"  # ... with the journal mode it had


def test_a_freeze_that_fails_discards_its_connection_and_the_next_one_is_whole(eng):
    before, _ = _driver(eng)
    with eng.begin() as conn:  # not UTF-8: the template split fails inside the INSERT, scratch tables full
        conn.exec_driver_sql("INSERT INTO customers (customer_pk, email, first_name, city) "
                             "VALUES (4, CAST(X'C3412D4040' AS TEXT), 'bad', 'c')")
        conn.exec_driver_sql("INSERT INTO target_group_members VALUES ('all_customers', 4)")
    with pytest.raises(sa.exc.OperationalError):
        _freeze(eng, "FAILS")
    after, mode = _driver(eng)
    assert after is not before and mode == "delete"
    with eng.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(recipient)).scalar_one() == 0
        assert conn.execute(sa.select(sa.func.count()).select_from(recipient_list)).scalar_one() == 0
    with eng.begin() as conn:
        conn.exec_driver_sql("DELETE FROM target_group_members WHERE customer_pk = 4")
    again = _freeze(eng, "FAILS")
    assert (again.row_count, again.in_target_group, again.collapsed_duplicates) == (2, 3, 1)
    with eng.connect() as conn:
        assert sorted(conn.execute(sa.select(recipient.c.identifier)).scalars()) == ["a@x.com", "b@x.com"]
