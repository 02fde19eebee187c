"""Reads and writes on the customer database (SQLAlchemy Core; no Dagster here).

Everything works the same on SQLite and PostgreSQL. Column names that come from the Data Map
("Map To") are checked against the *reflected* customer table and used only as SQLAlchemy column
objects, so they are quoted by the dialect and never pasted into SQL text. Recipient lists are
selected, de-duplicated and counted by the database and streamed through Python in chunks, so
memory stays flat whatever the size of the customer table.

Identifier normalisation, everywhere: ``lower(trim(identifier))`` where ``trim`` removes spaces
and ``lower`` folds ASCII letters only (SQLite's ``lower``; on PostgreSQL the same is obtained by
folding under the "C" collation), so the two databases treat every identifier the same.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Callable, Iterable, Iterator, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, NoSuchTableError

from .schema import (
    campaign_schedule,
    recipient,
    recipient_list,
    send_ledger,
    suppression,
    target_group_members,
)

#: Ledger states that leave a recipient list open to re-derivation. Any other state of any send
#: of the list (IMPORTING, IMPORTED, CREATED, ..., FAILED, CANCELLED) freezes it for good.
UNLOCKED_STATES = ("PENDING", "MISSED")

#: ``campaign_schedule.status`` values.
SCHEDULE_STATUSES = ("SCHEDULED", "CANCELLED")

#: First key of the two-key PostgreSQL advisory lock taken while a list is (re)built, so the
#: lock cannot collide with single-key advisory locks taken elsewhere ("CHET").
PG_LOCK_NAMESPACE = 0x43484554

def _attrs_encoder(field_names: Sequence[str]) -> Callable[[Sequence[str | None]], str]:
    """A fast encoder of ``{field name: text or null}`` for one list of field names.

    Equivalent to ``json.dumps(dict(zip(names, values)), ensure_ascii=False, separators=(",", ":"))``
    for values that are str or None, at a fraction of the per-row cost (the keys are encoded once).
    """
    from json.encoder import encode_basestring

    keys = [encode_basestring(name) + ":" for name in field_names]

    def encode(values: Sequence[str | None]) -> str:
        return "{" + ",".join(
            k + ("null" if v is None else encode_basestring(v)) for k, v in zip(keys, values)
        ) + "}"

    return encode


_SERIALIZATION_FAILURES = ("40001", "40P01")  # serialization_failure, deadlock_detected
_FREEZE_ATTEMPTS = 3

Bind = Engine | Connection


class CustomerSchemaError(ValueError):
    """The customer database lacks a table or columns the Data Map needs (named in the message)."""

    def __init__(self, message: str, *, table: str, missing: Sequence[str] = ()):
        super().__init__(message)
        self.table = table
        self.missing = list(missing)


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------
@contextmanager
def _connect(bind: Bind) -> Iterator[Connection]:
    if isinstance(bind, Connection):
        yield bind
    else:
        with bind.connect() as conn:
            yield conn


def _engine_of(bind: Bind) -> Engine:
    return bind.engine if isinstance(bind, Connection) else bind


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    """SQLite hands back naive datetimes; everything stored here is UTC."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc)


def _as_text(value: Any) -> str | None:
    """A personalisation value as the text that goes into the import file (None stays None)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


def _fold(expr, dialect_name: str):
    """ASCII-only ``lower`` on both databases (see the module docstring)."""
    if dialect_name == "postgresql":
        return sa.func.lower(sa.collate(expr, "C"))
    return sa.func.lower(expr)


def _unique(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))


def template_for(identifier: str, template_ids: Sequence[str]) -> str:
    """The template a recipient gets: a stable hash of the lower-cased identifier."""
    digest = hashlib.sha256(identifier.lower().encode("utf-8")).hexdigest()
    return template_ids[int(digest[:12], 16) % len(template_ids)]


# ------------------------------------------------------------------------------------------------
# the customer table
# ------------------------------------------------------------------------------------------------
def reflect_customers(engine: Bind, table_name: str = "customers") -> sa.Table:
    """The customer table as it really is in the database (columns, types, exact names)."""
    try:
        with _connect(engine) as conn:
            return sa.Table(table_name, sa.MetaData(), autoload_with=conn)
    except NoSuchTableError as exc:
        raise CustomerSchemaError(
            f"The customer database has no table named {table_name!r}.", table=table_name
        ) from exc


def missing_columns(engine: Bind, columns: Iterable[str], table_name: str = "customers") -> list[str]:
    """The names among ``columns`` that the table does not have (exact, case-sensitive match).

    Order is kept and repeats are dropped. Raises :class:`CustomerSchemaError` if the table itself
    does not exist.
    """
    present = set(reflect_customers(engine, table_name).c.keys())
    return [c for c in _unique(columns) if c not in present]


# ------------------------------------------------------------------------------------------------
# the campaign schedule
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ScheduledCampaign:
    campaign_id: str
    name: str
    send_date: dt.date
    send_time: str  # local wall time "HH:MM" in time_zone
    time_zone: str | None  # IANA name; None means the plan's default
    template_ids: tuple[str, ...]
    target_group: str
    status: str  # SCHEDULED or CANCELLED


def parse_template_ids(raw: str | None) -> tuple[str, ...]:
    """``"1001, 1003,,1001"`` -> ``("1001", "1003")``: stripped, empties dropped, order kept, no repeats."""
    if not raw:
        return ()
    return _unique(part.strip() for part in str(raw).split(",") if part.strip())


def load_schedule(engine: Bind, send_date: dt.date) -> list[ScheduledCampaign]:
    """Every campaign scheduled on ``send_date`` (any status), ordered by campaign id."""
    stmt = (
        sa.select(campaign_schedule)
        .where(campaign_schedule.c.send_date == send_date)
        .order_by(campaign_schedule.c.campaign_id)
    )
    with _connect(engine) as conn:
        rows = conn.execute(stmt).mappings().all()
    return [
        ScheduledCampaign(
            campaign_id=r["campaign_id"],
            name=r["name"],
            send_date=r["send_date"],
            send_time=str(r["send_time"]).strip(),
            time_zone=(r["time_zone"] or "").strip() or None,
            template_ids=parse_template_ids(r["template_ids"]),
            target_group=r["target_group"],
            status=(r["status"] or "SCHEDULED").strip().upper(),
        )
        for r in rows
    ]


def set_campaign_status(engine: Bind, campaign_id: str, status: str) -> bool:
    """Set a campaign's status (SCHEDULED or CANCELLED); False if there is no such campaign."""
    if status not in SCHEDULE_STATUSES:
        raise ValueError(f"status must be one of {SCHEDULE_STATUSES}, not {status!r}")
    stmt = (
        sa.update(campaign_schedule)
        .where(campaign_schedule.c.campaign_id == campaign_id)
        .values(status=status)
    )
    if isinstance(engine, Connection):
        return engine.execute(stmt).rowcount > 0
    with engine.begin() as conn:
        return conn.execute(stmt).rowcount > 0


# ------------------------------------------------------------------------------------------------
# frozen recipient lists
# ------------------------------------------------------------------------------------------------
def list_key(campaign_id: str, send_date: dt.date) -> str:
    return f"{campaign_id}/{send_date.isoformat()}"


@dataclass(frozen=True)
class FreezeResult:
    list_key: str
    row_count: int
    per_template: dict[str, int]
    in_target_group: int
    excluded_missing_identifier: int
    excluded_suppressed: int
    collapsed_duplicates: int
    reused: bool
    frozen_at: dt.datetime
    identifier_column: str = ""
    fields: dict[str, str] = field(default_factory=dict)


def _locked_clause(key: str):
    return (
        sa.select(sa.literal(1))
        .where(send_ledger.c.list_key == key, send_ledger.c.state.not_in(UNLOCKED_STATES))
        .exists()
    )


def is_list_locked(engine: Bind, key: str) -> bool:
    """True once any send of the list has left PENDING/MISSED: the list must never change again."""
    with _connect(engine) as conn:
        return bool(conn.execute(sa.select(_locked_clause(key))).scalar())


def _per_template(conn: Connection, key: str, template_ids: Sequence[str]) -> dict[str, int]:
    counts = dict(
        conn.execute(
            sa.select(recipient.c.template_id, sa.func.count())
            .where(recipient.c.list_key == key)
            .group_by(recipient.c.template_id)
        ).all()
    )
    out = {t: int(counts.pop(t, 0)) for t in template_ids}
    out.update({t: int(n) for t, n in sorted(counts.items())})
    return out


def _result_from_row(conn: Connection, row, template_ids: Sequence[str], *, reused: bool) -> FreezeResult:
    return FreezeResult(
        list_key=row["list_key"],
        row_count=row["row_count"],
        per_template=_per_template(conn, row["list_key"], template_ids),
        in_target_group=row["in_target_group"],
        excluded_missing_identifier=row["excluded_missing_identifier"],
        excluded_suppressed=row["excluded_suppressed"],
        collapsed_duplicates=row["collapsed_duplicates"],
        reused=reused,
        frozen_at=_utc(row["frozen_at"]),
        identifier_column=row["identifier_column"],
        fields=json.loads(row["fields"]),
    )


def get_frozen_list(engine: Bind, key: str, template_ids: Sequence[str] = ()) -> FreezeResult | None:
    """The list as it was last frozen (``reused=True``), or None if it never was.

    ``per_template`` holds every id of ``template_ids`` (0 if it got nobody) and any other
    template the stored list uses.
    """
    with _connect(engine) as conn:
        stmt = sa.select(recipient_list).where(recipient_list.c.list_key == key)
        row = conn.execute(stmt).mappings().first()
        return None if row is None else _result_from_row(conn, row, _unique(template_ids), reused=True)


def lock_for_replace(conn: Connection, key: str) -> None:
    """Serialise the transactions that replace the same rows (delete them, insert anew).

    On PostgreSQL two such transactions would both delete nothing and then collide on insert;
    a transaction-level advisory lock on ``key`` makes the second wait for the first and then
    replace its rows. SQLite already serialises writers (the first write takes the database lock).
    """
    if conn.dialect.name == "postgresql":
        conn.execute(
            sa.select(sa.func.pg_advisory_xact_lock(sa.literal(PG_LOCK_NAMESPACE, sa.Integer), sa.func.hashtext(key)))
        )


@contextmanager
def _list_transaction(engine: Engine, key: str) -> Iterator[Connection]:
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
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.rollback()
                raise
            conn.commit()
        else:
            with conn.begin():
                yield conn


def _selection(
    customers: sa.Table,
    *,
    target_group: str,
    identifier_column: str,
    field_columns: Sequence[str],
    dialect_name: str,
):
    """The two statements of a freeze: the counts, and the streamed rows to keep."""
    ident_col = customers.c[identifier_column]
    ident = ident_col if isinstance(ident_col.type, sa.String) else sa.cast(ident_col, sa.String)
    trimmed = sa.func.trim(ident)
    norm = _fold(trimmed, dialect_name)

    s_trimmed = sa.func.trim(suppression.c.identifier)
    supp = (
        sa.select(_fold(s_trimmed, dialect_name).label("norm"))
        .where(suppression.c.identifier.is_not(None), s_trimmed != "")
        .distinct()
        .subquery("supp")
    )
    joined = customers.join(
        target_group_members,
        sa.and_(
            target_group_members.c.customer_pk == customers.c.customer_pk,
            target_group_members.c.target_group == target_group,
        ),
    ).outerjoin(supp, supp.c.norm == norm)

    is_missing = sa.or_(ident_col.is_(None), trimmed == "")
    flags = (
        sa.select(
            norm.label("norm"),
            sa.case((is_missing, 1), else_=0).label("missing"),
            sa.case((supp.c.norm.is_not(None), 1), else_=0).label("suppressed"),
        )
        .select_from(joined)
        .subquery("flags")
    )
    eligible = sa.and_(flags.c.missing == 0, flags.c.suppressed == 0)
    counts = sa.select(
        sa.func.count().label("in_target_group"),
        sa.func.coalesce(sa.func.sum(flags.c.missing), 0).label("missing"),
        sa.func.coalesce(
            sa.func.sum(sa.case((sa.and_(flags.c.missing == 0, flags.c.suppressed == 1), 1), else_=0)), 0
        ).label("suppressed"),
        sa.func.count(sa.distinct(sa.case((eligible, flags.c.norm)))).label("distinct_kept"),
    )

    ranked = (
        sa.select(
            trimmed.label("ident"),
            *[customers.c[col].label(f"f{i}") for i, col in enumerate(field_columns)],
            sa.func.row_number()
            .over(partition_by=norm, order_by=customers.c.customer_pk)
            .label("rn"),
        )
        .select_from(joined)
        .where(sa.not_(is_missing), supp.c.norm.is_(None))
        .subquery("ranked")
    )
    keep = sa.select(
        ranked.c.ident, *[ranked.c[f"f{i}"] for i in range(len(field_columns))]
    ).where(ranked.c.rn == 1)
    return counts, keep


_RECIPIENT_COLUMNS = ("list_key", "identifier", "template_id", "attrs")


def _recipient_writer(conn: Connection) -> Callable[[list[tuple]], None]:
    """A function inserting ``(list_key, identifier, template_id, attrs)`` tuples in one executemany.

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
) -> FreezeResult:
    """Materialize the recipient list of (campaign, day), or return it untouched if it is frozen.

    ``fields`` maps Data Map field name -> customer column ("Map To"), identifier excluded.

    Who is on the list (all decided by the database, in one consistent snapshot): the members of
    ``target_group``, minus those whose identifier is NULL or blank, minus those suppressed
    (``lower(trim())`` match), with one row per ``lower(trim(identifier))`` (the lowest
    ``customer_pk`` wins); the identifier is stored trimmed, case kept. Each recipient goes to
    :func:`template_for` its identifier. Counts add up: ``in_target_group = row_count +
    excluded_missing_identifier + excluded_suppressed + collapsed_duplicates`` (each customer
    counted under the first reason that applies, in that order).

    Once any ledger row of the list has left PENDING/MISSED the list is frozen: the stored result
    is returned with ``reused=True`` and nothing is read from the customer tables. Otherwise the
    list is rebuilt in one transaction (old rows deleted, new ones inserted, the list row
    replaced), so readers see the old complete list or the new one, never a mix; concurrent
    freezes of the same list run one after the other.
    """
    templates = _unique(str(t) for t in template_ids)
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

    customers = reflect_customers(engine, customers_table)
    field_names = list(fields)
    field_columns = [fields[n] for n in field_names]
    present = set(customers.c.keys())
    missing = [c for c in _unique(["customer_pk", identifier_column, *field_columns]) if c not in present]
    if missing:
        raise CustomerSchemaError(
            f"The customer table {customers_table!r} has no column(s) {', '.join(map(repr, missing))} "
            "(Data Map 'Map To' names must match the column names exactly, case included).",
            table=customers_table,
            missing=missing,
        )
    counts_stmt, keep_stmt = _selection(
        customers,
        target_group=target_group,
        identifier_column=identifier_column,
        field_columns=field_columns,
        dialect_name=engine.dialect.name,
    )
    frozen_at = _utc(now) if now is not None else dt.datetime.now(dt.timezone.utc)

    for attempt in range(1, _FREEZE_ATTEMPTS + 1):
        try:
            with _list_transaction(engine, key) as conn:
                return _freeze_locked(
                    conn,
                    key=key,
                    campaign_id=campaign_id,
                    send_date=send_date,
                    identifier_column=identifier_column,
                    fields=fields,
                    field_names=field_names,
                    templates=templates,
                    counts_stmt=counts_stmt,
                    keep_stmt=keep_stmt,
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
    templates: tuple[str, ...],
    counts_stmt,
    keep_stmt,
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
        return _result_from_row(conn, existing, templates, reused=True)

    in_target_group, n_missing, n_suppressed, n_kept = (int(v) for v in conn.execute(counts_stmt).one())

    conn.execute(sa.delete(recipient).where(recipient.c.list_key == key))
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
                batch.append((key, ident, template_id, encode_attrs([_as_text(v) for v in row[1:]])))
            write_batch(batch)
            written += len(batch)
            if progress is not None:
                progress(written)
    finally:
        result.close()
    if written != n_kept:  # cannot happen within one snapshot; never commit a list that disagrees
        raise RuntimeError(
            f"recipient list {key}: counted {n_kept} recipients but selected {written}; not saved"
        )

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
        collapsed_duplicates=in_target_group - n_missing - n_suppressed - n_kept,
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


# ------------------------------------------------------------------------------------------------
# reading a frozen list
# ------------------------------------------------------------------------------------------------
def iter_recipient_chunks(
    engine: Bind, list_key: str, template_id: str, chunk_size: int
) -> Iterator[list[tuple[str, dict]]]:
    """The recipients of one template of a list, as chunks of ``(identifier, attrs)``.

    Ordered by identifier (the database's order for the column: bytewise on SQLite and under a
    "C"/"C.UTF-8" PostgreSQL collation). Each chunk is its own short query (keyset pagination on
    the primary key), so no transaction stays open while the caller works on a chunk. Read a list
    only once it is frozen (its ledger row has left PENDING): then it cannot change between chunks.
    """
    if chunk_size < 1:
        raise ValueError("chunk_size must be at least 1")
    base = sa.select(recipient.c.identifier, recipient.c.attrs).where(
        recipient.c.list_key == list_key, recipient.c.template_id == template_id
    )
    last: str | None = None
    while True:
        stmt = base if last is None else base.where(recipient.c.identifier > last)
        with _connect(engine) as conn:
            rows = conn.execute(stmt.order_by(recipient.c.identifier).limit(chunk_size)).all()
        if not rows:
            return
        yield [(ident, json.loads(attrs)) for ident, attrs in rows]
        if len(rows) < chunk_size:
            return
        last = rows[-1][0]


def count_recipients(engine: Bind, list_key: str, template_id: str) -> int:
    stmt = sa.select(sa.func.count()).where(
        recipient.c.list_key == list_key, recipient.c.template_id == template_id
    )
    with _connect(engine) as conn:
        return int(conn.execute(stmt).scalar_one())


def recipient_preview(engine: Bind, list_key: str, limit: int = 10):
    """The first ``limit`` recipients of a list (identifier, template_id, then each field)."""
    import pandas as pd

    stmt = (
        sa.select(recipient.c.identifier, recipient.c.template_id, recipient.c.attrs)
        .where(recipient.c.list_key == list_key)
        .order_by(recipient.c.identifier)
        .limit(limit)
    )
    with _connect(engine) as conn:
        rows = conn.execute(stmt).all()
    records = [{"identifier": i, "template_id": t, **json.loads(a)} for i, t, a in rows]
    columns = list(dict.fromkeys(k for r in records for k in r)) or ["identifier", "template_id"]
    return pd.DataFrame.from_records(records, columns=columns)
