"""Freezing a recipient list: who a campaign goes to, decided by the database (no Dagster here).

The database selects, suppresses and de-duplicates the target group's members on the normalised
identifier (:mod:`.identifiers`: one function on SQLite and PostgreSQL) and writes the list with
its template split and attrs JSON (:mod:`.freeze_sql`): no row passes through Python, unless a
column must be rendered as Python renders it (then the rows are streamed in chunks). Memory stays
flat whatever the size of the customer table. The list keeps the normalised identifier (compared)
and the customer's own value (``address``: what is sent)."""

from __future__ import annotations

import datetime as dt
import json
import os
from contextlib import contextmanager
from decimal import Decimal
from json.encoder import encode_basestring
from typing import Any, Callable, Iterator, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from ..timeutil import utc
from .freeze_sql import Selection, field_texts, insert_statement, selection
from .identifiers import ensure_sql_function
from .recipients import (
    PG_LOCK_NAMESPACE,
    UNLOCKED_STATES,
    CustomerSchemaError,
    FreezeResult,
    as_text,
    get_frozen_list,
    identifier_column_problem,
    is_decimal_type,
    is_list_locked,
    list_key,
    reflect_customers,
    stored_result,
    template_counts,
    template_for,
    unique_in_order,
    value_text,
)
from .schema import recipient, recipient_list, send_ledger
from .sqlite_norm import register_sqlite_function, sqlite_text_is_utf8


def _attrs_encoder(field_names: Sequence[str]) -> Callable[[Sequence[str | None]], str]:
    """A fast encoder of ``{field name: text or null}`` for one list of field names.

    Equivalent to ``json.dumps(dict(zip(names, values)), ensure_ascii=False, separators=(",", ":"))``
    for values that are str or None, at a fraction of the per-row cost (the keys are encoded once).
    """
    keys = [encode_basestring(name) + ":" for name in field_names]

    def encode(values: Sequence[str | None]) -> str:
        return "{" + ",".join(
            k + ("null" if v is None else encode_basestring(v)) for k, v in zip(keys, values)
        ) + "}"

    return encode


def streamed_field(column: sa.Column, dialect: sa.engine.Dialect) -> tuple[Any, Callable[[Any], str | None]]:
    """What the streamed freeze selects for a Data Map ``column``, and the function that makes its
    value the text of the import file.

    The column itself and :func:`.recipients.as_text`, the same text on every database: a
    decimal with the column's declared scale, else without trailing zeros; a CHAR without its
    trailing spaces (:func:`.recipients.value_text`). On SQLite, for a column whose values
    SQLAlchemy converts in Python (dates, times, numbers with a fraction, ...), the raw stored
    value is selected and converted here (an unscaled NUMERIC exactly, not to ten decimals), and
    one the conversion refuses (a DATE of ``'03/02/1990'`` or ``''``) is rendered as it is stored
    instead of stopping the whole campaign's freeze.
    """
    text = value_text(column.type)
    if dialect.name != "sqlite":
        return column, text
    convert = column.type.dialect_impl(dialect).result_processor(dialect, None)
    if convert is None:
        return column, text
    if is_decimal_type(column.type) and column.type.scale is None:
        convert = _exact_decimal

    def render(value: Any) -> str | None:
        if value is None:
            return None
        try:
            return text(convert(value))
        except (ValueError, TypeError, ArithmeticError):  # ArithmeticError: decimal.InvalidOperation
            return as_text(value)

    return sa.type_coerce(column, sa.types.NullType()), render


def _exact_decimal(value: Any) -> Decimal:
    """A number SQLite stored in an unscaled NUMERIC column, as the decimal it was written as (its
    shortest repr for a REAL); text is left to the caller (TypeError)."""
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, int):
        return Decimal(value)
    raise TypeError(type(value).__name__)


_SERIALIZATION_FAILURES = ("40001", "40P01")  # serialization_failure, deadlock_detected
_FREEZE_ATTEMPTS = 3

#: PostgreSQL ``work_mem`` for the freeze's transaction (per sort, on the database server).
PG_FREEZE_WORK_MEM = "128MB"
#: PostgreSQL ``random_page_cost`` for the freeze's transaction (the default is 4, for disks
#: that seek): the members of a small target group are then read by key.
PG_FREEZE_RANDOM_PAGE_COST = 1.1

#: SQLite: helper threads the freeze's sort of the members may use (a million members sorted in
#: 1.86 s instead of 2.15 s with two, on two cores).
SQLITE_SORT_THREADS = min(4, os.cpu_count() or 1)
_JOURNAL_MODES = {"DELETE", "TRUNCATE", "PERSIST", "MEMORY", "WAL", "OFF"}


@contextmanager
def list_transaction(engine: Engine, key: str) -> Iterator[Connection]:
    """One transaction in which nobody else can (re)build the same list.

    * PostgreSQL: a session advisory lock on the list key, taken *before* the transaction, then a
      REPEATABLE READ transaction, so every count and the streamed selection see one snapshot
      that already includes whatever a previous holder of the lock committed.
    * SQLite: ``BEGIN IMMEDIATE`` on this connection only (the other connections keep pysqlite's
      default behaviour): the database write lock is held from the start, so the snapshot is
      consistent and a concurrent freezer or ledger writer waits (busy_timeout) until commit.
    * Anything else: a plain transaction (correct, but not guarded against concurrent freezes).
    """
    dialect = engine.dialect.name
    with engine.connect() as conn:
        if dialect == "postgresql":
            lock_args = (sa.literal(PG_LOCK_NAMESPACE, sa.Integer), sa.func.hashtext(key))
            conn.execute(sa.select(sa.func.pg_advisory_lock(*lock_args)))
            conn.commit()
            try:
                conn.execution_options(isolation_level="REPEATABLE READ")
                with conn.begin():
                    yield conn
            finally:
                try:
                    if conn.in_transaction():
                        conn.rollback()
                    conn.execute(sa.select(sa.func.pg_advisory_unlock(*lock_args)))
                    conn.commit()
                except Exception:  # a dead connection released its session lock anyway
                    conn.invalidate()
        elif dialect == "sqlite":
            register_sqlite_function(conn.connection.driver_connection)  # engines not made by engine_for
            # The members' sort may use helper threads (SQLite's sorter; only large sorts do).
            conn.exec_driver_sql(f"PRAGMA threads = {SQLITE_SORT_THREADS}")
            # The temporary schema holds only the freeze's scratch tables, dropped before commit: no
            # journal for it (1M members filled 0.2 s, dropped 0.1 s faster). Without one a rollback
            # cannot restore it, so a freeze that fails throws its connection (and that file) away.
            journal = str(conn.exec_driver_sql("PRAGMA temp.journal_mode").scalar()).upper()
            conn.exec_driver_sql("PRAGMA temp.journal_mode = OFF")
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                try:
                    conn.rollback()
                finally:
                    conn.invalidate()
                raise
            conn.commit()
            conn.exec_driver_sql(f"PRAGMA temp.journal_mode = {journal if journal in _JOURNAL_MODES else 'DELETE'}")
        else:
            with conn.begin():
                yield conn


def pg_freeze_settings(conn: Connection) -> None:
    """PostgreSQL settings of the freeze's transaction (``SET LOCAL``: they end with it).

    More memory for the de-duplication's sort; no JIT compilation (the freeze's expressions run
    once per member, and compiling them cost more than it saved); and the cost of a random page
    read of cached or SSD-backed tables, so that a target group of a few thousand is fetched by
    key: at the default of 4 a group's members were joined to a full scan of the customer table
    (1.15 s per freeze at 5M customers). A whole-base group still gets a scan and a hash join,
    shared by the server's parallel workers when it has them (``max_parallel_workers_per_gather``).
    """
    conn.exec_driver_sql(f"SET LOCAL work_mem = '{PG_FREEZE_WORK_MEM}'")
    conn.exec_driver_sql("SET LOCAL jit = off")
    conn.exec_driver_sql(f"SET LOCAL random_page_cost = {PG_FREEZE_RANDOM_PAGE_COST}")


_RECIPIENT_COLUMNS = ("list_key", "identifier", "template_id", "attrs", "address")


def _recipient_writer(conn: Connection) -> Callable[[list[tuple]], None]:
    """A function inserting ``(list_key, identifier, template_id, attrs, address)`` tuples in one executemany.

    On a positional-parameter driver (SQLite's qmark) the compiled Core INSERT goes straight to the
    driver with tuples, skipping SQLAlchemy's per-row parameter processing (a fifth of the time of
    a freeze); elsewhere it is an ordinary Core executemany (insertmanyvalues on psycopg2).
    """
    compiled = recipient.insert().compile(dialect=conn.dialect, column_keys=list(_RECIPIENT_COLUMNS))
    plain_types = all(
        recipient.c[k].type.bind_processor(conn.dialect) is None for k in _RECIPIENT_COLUMNS
    )
    if compiled.positional and list(compiled.positiontup or ()) == list(_RECIPIENT_COLUMNS) and plain_types:
        sql = str(compiled)  # built by the dialect from the table definition: no values in it

        def write(batch: list[tuple]) -> None:
            conn.exec_driver_sql(sql, batch)

    else:
        stmt = recipient.insert()

        def write(batch: list[tuple]) -> None:
            conn.execute(stmt, [dict(zip(_RECIPIENT_COLUMNS, row)) for row in batch])

    return write


def _stream_rows(
    conn: Connection,
    key: str,
    keep_stmt,
    templates: tuple[str, ...],
    field_names: list[str],
    renders: Sequence[Callable[[Any], str | None]],
    chunk_size: int,
    progress: Callable[[int], None] | None,
) -> tuple[dict[str, int], int]:
    """The streamed freeze: the kept rows through Python in chunks (template split, attrs JSON)."""
    per_template = dict.fromkeys(templates, 0)
    encode_attrs = _attrs_encoder(field_names)
    write_batch = _recipient_writer(conn)
    written = 0
    result = conn.execute(keep_stmt.execution_options(stream_results=True, yield_per=chunk_size))
    try:
        for part in result.partitions(chunk_size):
            batch = []
            for row in part:
                ident = row[0]
                template_id = template_for(ident, templates)
                per_template[template_id] += 1
                attrs = encode_attrs([render(v) for render, v in zip(renders, row[2:])])
                batch.append((key, ident, template_id, attrs, row[1]))
            write_batch(batch)
            written += len(batch)
            if progress is not None:
                progress(written)
    finally:
        result.close()
    return per_template, written


def _is_serialization_failure(exc: DBAPIError) -> bool:
    return getattr(exc.orig, "pgcode", None) in _SERIALIZATION_FAILURES


def freeze_recipient_list(
    engine: Engine,
    *,
    campaign_id: str,
    send_date: dt.date,
    target_group: str,
    identifier_column: str,
    fields: dict[str, str],
    template_ids: Sequence[str],
    chunk_size: int = 10_000,
    progress: Callable[[int], None] | None = None,
    customers_table: str = "customers",
    now: dt.datetime | None = None,
    in_database: bool = True,
) -> FreezeResult:
    """Materialize the recipient list of (campaign, day), or return it untouched if it is frozen.

    ``fields`` maps Data Map field name -> customer column ("Map To"), identifier excluded.

    Who is on the list (all decided by the database, in one consistent snapshot): the members of
    ``target_group``, minus those whose identifier is NULL or normalises to ``""``, minus those
    suppressed (normalised identifiers equal), with one row per normalised identifier (the lowest
    ``customer_pk`` wins); the identifier is stored normalised (:mod:`.identifiers`), and that
    customer's own value, stripped (``address``, when it differs), is what is sent to Cheetah. Each recipient goes to :func:`template_for` its identifier. Counts add up: ``in_target_group = row_count +
    excluded_missing_identifier + excluded_suppressed + collapsed_duplicates`` (each customer
    counted under the first reason that applies, in that order).

    Once any ledger row of the list has left PENDING/MISSED the list is frozen: the stored result
    is returned with ``reused=True`` and nothing is read from the customer tables. Otherwise the
    list is rebuilt in one transaction (old rows deleted, new ones inserted, the list row
    replaced), so readers see the old complete list or the new one, never a mix; concurrent
    freezes of the same list run one after the other.

    The list is written by one ``INSERT … SELECT`` (:mod:`.freeze_sql`): no row passes through
    Python. Only when a Data Map column's type cannot be rendered as text by the database exactly
    as Python renders it (dates, reals, booleans, decimals, ...), or with ``in_database=False``,
    are the rows streamed through Python in chunks of ``chunk_size``. ``progress`` is called with
    the number of rows written so far: after each chunk when streaming, once at the end otherwise.
    """
    templates = unique_in_order(str(t) for t in template_ids)
    if not templates:
        raise ValueError(f"campaign {campaign_id!r} has no template to send")
    if chunk_size < 1:
        raise ValueError("chunk_size must be at least 1")
    key = list_key(campaign_id, send_date)

    # A frozen list stays frozen: no need to look at the customer tables at all.
    if is_list_locked(engine, key):
        frozen = get_frozen_list(engine, key, templates)
        if frozen is not None:
            return frozen

    ensure_sql_function(engine)
    customers = reflect_customers(engine, customers_table)
    field_names = list(fields)
    field_columns = [fields[n] for n in field_names]
    present = set(customers.c.keys())
    missing = [c for c in unique_in_order(["customer_pk", identifier_column, *field_columns]) if c not in present]
    if missing:
        raise CustomerSchemaError(
            f"The customer table {customers_table!r} has no column(s) {', '.join(map(repr, missing))} "
            "(Data Map 'Map To' names must match the column names exactly, case included).",
            table=customers_table,
            missing=missing,
        )
    problem = identifier_column_problem(customers, identifier_column)
    if problem is not None:
        raise CustomerSchemaError(problem, table=customers_table)
    texts = field_texts(customers, field_columns, engine.dialect) if in_database else None
    streamed = [streamed_field(customers.c[c], engine.dialect) for c in field_columns]
    chosen = selection(
        customers,
        target_group=target_group,
        identifier_column=identifier_column,
        field_exprs=texts if texts is not None else [expr for expr, _ in streamed],
        dialect=engine.dialect.name,
        field_names=field_names if texts is not None else None,
    )
    sqlite_utf8 = sqlite_text_is_utf8(engine)
    insert_stmt = None if texts is None else insert_statement(
        key, chosen.kept, templates, field_names, engine.dialect.name, sqlite_utf8=sqlite_utf8
    )
    frozen_at = utc(now) if now is not None else dt.datetime.now(dt.timezone.utc)

    for attempt in range(1, _FREEZE_ATTEMPTS + 1):
        try:
            with list_transaction(engine, key) as conn:
                return _freeze_locked(
                    conn,
                    key=key,
                    campaign_id=campaign_id,
                    send_date=send_date,
                    identifier_column=identifier_column,
                    fields=fields,
                    field_names=field_names,
                    renders=[render for _, render in streamed],
                    templates=templates,
                    chosen=chosen,
                    insert_stmt=insert_stmt,
                    chunk_size=chunk_size,
                    progress=progress,
                    frozen_at=frozen_at,
                )
        except DBAPIError as exc:
            if attempt < _FREEZE_ATTEMPTS and _is_serialization_failure(exc):
                continue  # a ledger row moved under our snapshot: start again from a fresh one
            raise
    raise AssertionError("unreachable")


def _freeze_locked(
    conn: Connection,
    *,
    key: str,
    campaign_id: str,
    send_date: dt.date,
    identifier_column: str,
    fields: dict[str, str],
    field_names: list[str],
    renders: list[Callable[[Any], str | None]],
    templates: tuple[str, ...],
    chosen: Selection,
    insert_stmt,
    chunk_size: int,
    progress: Callable[[int], None] | None,
    frozen_at: dt.datetime,
) -> FreezeResult:
    # Lock the list's ledger rows (PostgreSQL; SQLite already holds the write lock) so a sender
    # cannot start on the old list while the new one is being written.
    states = (
        conn.execute(sa.select(send_ledger.c.state).where(send_ledger.c.list_key == key).with_for_update())
        .scalars()
        .all()
    )
    existing = (
        conn.execute(sa.select(recipient_list).where(recipient_list.c.list_key == key)).mappings().first()
    )
    if existing is not None and any(s not in UNLOCKED_STATES for s in states):
        return stored_result(conn, existing, templates, reused=True)

    if conn.dialect.name == "postgresql":
        pg_freeze_settings(conn)
    for stmt in chosen.setup:
        conn.execute(stmt)
    in_target_group, n_missing, n_suppressed = (int(v) for v in conn.execute(chosen.counts).one())
    for stmt in chosen.prune:
        conn.execute(stmt)

    conn.execute(sa.delete(recipient).where(recipient.c.list_key == key))
    if insert_stmt is not None:
        conn.execute(insert_stmt)
        per_template = template_counts(conn, key, templates)
        written = sum(per_template.values())
    else:
        per_template, written = _stream_rows(
            conn, key, sa.select(chosen.kept), templates, field_names, renders, chunk_size, progress
        )
    for stmt in chosen.teardown:  # on an error the transaction's rollback takes it away
        conn.execute(stmt)
    if progress is not None and (insert_stmt is not None or written == 0):
        progress(written)  # once at the end when no chunk reported
    if set(per_template) != set(templates):  # cannot happen; never commit a list that disagrees
        raise RuntimeError(f"recipient list {key}: rows written for unknown templates; not saved")

    values = dict(
        list_key=key,
        campaign_id=campaign_id,
        send_date=send_date,
        identifier_column=identifier_column,
        fields=json.dumps(fields, ensure_ascii=False),
        row_count=written,
        in_target_group=in_target_group,
        excluded_missing_identifier=n_missing,
        excluded_suppressed=n_suppressed,
        collapsed_duplicates=in_target_group - n_missing - n_suppressed - written,
        frozen_at=frozen_at,
    )
    conn.execute(sa.delete(recipient_list).where(recipient_list.c.list_key == key))
    conn.execute(recipient_list.insert().values(**values))
    return FreezeResult(
        list_key=key,
        row_count=written,
        per_template=per_template,
        in_target_group=in_target_group,
        excluded_missing_identifier=n_missing,
        excluded_suppressed=n_suppressed,
        collapsed_duplicates=values["collapsed_duplicates"],
        reused=False,
        frozen_at=frozen_at,
        identifier_column=identifier_column,
        fields=dict(fields),
    )
