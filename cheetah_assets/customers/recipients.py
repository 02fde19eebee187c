"""The customer table and frozen recipient lists: reflection, keys, reading (no Dagster here).

Everything works the same on SQLite and PostgreSQL. Column names that come from the Data Map
("Map To") are checked against the *reflected* customer table and used only as SQLAlchemy column
objects, so they are quoted by the dialect and never pasted into SQL text.

Identifiers are compared, de-duplicated, hashed and stored in their one normalised form,
:func:`.identifiers.normalise_identifier` (``strip(casefold(NFKC(s)))``), which the database
applies as ``cheetah_norm``. The freeze itself is in :mod:`.freeze`; :mod:`.queries` gathers the
public names.
"""

from __future__ import annotations

import datetime as dt
import json
import operator
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import AbstractSet, Any, Callable, Iterable, Iterator, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import NoSuchTableError

from ..timeutil import utc
from .engines import CustomerDatabaseError, safe_url
from .freeze_sql import PADDED_CHAR_TYPES, suppressed_norms
from .identifiers import template_index
from .schema import recipient, recipient_list, send_ledger

#: Ledger states that leave a recipient list open to re-derivation. Any other state of any send
#: of the list (IMPORTING, IMPORTED, CREATED, ..., FAILED) freezes it for good. A CANCELLED send
#: is never sent again (its campaign was deleted in Cheetah), so it does not keep the list of
#: the campaign's other sends from being re-frozen after a change (sending/changes.py).
UNLOCKED_STATES = ("PENDING", "MISSED", "CANCELLED")

#: First key of the two-key PostgreSQL advisory lock taken while a list is (re)built, so the
#: lock cannot collide with single-key advisory locks taken elsewhere ("CHET").
PG_LOCK_NAMESPACE = 0x43484554

Bind = Engine | Connection


class CustomerSchemaError(CustomerDatabaseError):
    """The customer database lacks a table or columns the Data Map needs (named in the message)."""

    def __init__(self, message: str, *, table: str, missing: Sequence[str] = ()):
        super().__init__(message)
        self.table = table
        self.missing = list(missing)


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------
@contextmanager
def connect(bind: Bind) -> Iterator[Connection]:
    """A connection of ``bind``: the connection itself, or a new one of the engine (closed after)."""
    if isinstance(bind, Connection):
        yield bind
    else:
        with bind.connect() as conn:
            yield conn


def _engine_of(bind: Bind) -> Engine:
    return bind.engine if isinstance(bind, Connection) else bind


def as_text(value: Any) -> str | None:
    """A personalisation value as the text that goes into the import file (None stays None).

    Dates and times in ISO form; booleans ``true``/``false`` (as PostgreSQL and JSON spell them);
    decimals by :func:`decimal_text`; bytes decoded as UTF-8; anything else ``str(value)``.
    """
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, Decimal):
        return decimal_text(value)
    return str(value)


def decimal_text(value: Decimal, scale: int | None = None) -> str:
    """A decimal in plain notation, never with an exponent: with ``scale`` decimals (a column's
    declared scale, NUMERIC(10, 2): ``19.90``), else without trailing zeros (``19.9``, ``10``,
    ``1000000``), so an unscaled NUMERIC reads the same whatever the database pads it to. No
    negative zero."""
    if value.is_zero():
        value = abs(value)
    if scale is not None and scale >= 0 and value.is_finite():
        return format(value, f".{scale}f")
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def is_decimal_type(col_type: sa.types.TypeEngine) -> bool:
    """NUMERIC / DECIMAL whose values are :class:`~decimal.Decimal` (not a float type)."""
    return isinstance(col_type, sa.Numeric) and not isinstance(col_type, sa.Float) and bool(col_type.asdecimal)


def value_text(col_type: sa.types.TypeEngine) -> Callable[[Any], str | None]:
    """:func:`as_text` for the values of a column of ``col_type``: a CHAR's trailing spaces (its
    padding) stripped, and a decimal of a column with a declared scale given that many decimals."""
    if isinstance(col_type, PADDED_CHAR_TYPES):

        def unpadded(value: Any) -> str | None:
            text = as_text(value)
            return None if text is None else text.rstrip(" ")

        return unpadded
    scale = col_type.scale if is_decimal_type(col_type) else None
    if scale is not None:
        return lambda value: decimal_text(value, scale) if isinstance(value, Decimal) else as_text(value)
    return as_text


def unique_in_order(values: Iterable[str]) -> tuple[str, ...]:
    """``values`` without repeats, first occurrence kept."""
    return tuple(dict.fromkeys(values))


def template_for(identifier: str, template_ids: Sequence[str]) -> str:
    """The template a recipient gets: a stable hash of its normalised identifier."""
    return template_ids[template_index(identifier, len(template_ids))]


# ------------------------------------------------------------------------------------------------
# the customer table
# ------------------------------------------------------------------------------------------------
def reflect_customers(engine: Bind, table_name: str = "customers") -> sa.Table:
    """The customer table as it really is in the database (columns, types, exact names)."""
    try:
        with connect(engine) as conn:
            return sa.Table(table_name, sa.MetaData(), autoload_with=conn)
    except NoSuchTableError:
        where = safe_url(_engine_of(engine).url)
        raise CustomerSchemaError(
            f"The customer database {where} has no table named {table_name!r}; set CUSTOMER_DB_URL "
            "to the database that holds the customer data (set-up step 1).",
            table=table_name,
        ) from None


def identifier_column_problem(customers: sa.Table, column: str, field: str | None = None) -> str | None:
    """Why ``column`` of the customer table cannot hold the identifier (Data Map ``field``), or None.

    A floating-point column (REAL, FLOAT, DOUBLE), or a NUMERIC with decimals, is refused: an
    identifier must be exact, and such a column rounds (two customers can end up with one
    identifier) and is rendered differently by each database (SQLite sends 123 as ``123.0``,
    which the suppression entry ``123`` does not match).
    """
    col_type = customers.c[column].type
    if isinstance(col_type, sa.Float):
        kind = "a floating-point column"
    elif is_decimal_type(col_type) and (col_type.scale or 0) > 0:
        kind = "a decimal column with decimals"
    else:
        return None
    return (
        f"The identifier column {customers.name}.{column}{f' (Data Map field {field})' if field else ''} is "
        f"{kind} ({col_type}); identifiers must be "
        "exact (a float rounds, and 123 may be sent as '123.0', missing its suppression). Map the Data "
        "Map's identifier field to an integer or text column (set-up steps 1-2)."
    )


def missing_columns(engine: Bind, columns: Iterable[str], table_name: str = "customers") -> list[str]:
    """The names among ``columns`` that the table does not have (exact, case-sensitive match).

    Order is kept and repeats are dropped. Raises :class:`CustomerSchemaError` if the table itself
    does not exist.
    """
    present = set(reflect_customers(engine, table_name).c.keys())
    return [c for c in unique_in_order(columns) if c not in present]


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
    with connect(engine) as conn:
        return bool(conn.execute(sa.select(_locked_clause(key))).scalar())


def template_counts(conn: Connection, key: str, template_ids: Sequence[str]) -> dict[str, int]:
    """How many recipients of the list go to each template (every id of ``template_ids``, then
    any other the stored list uses)."""
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


def stored_result(conn: Connection, row, template_ids: Sequence[str], *, reused: bool) -> FreezeResult:
    return FreezeResult(
        list_key=row["list_key"],
        row_count=row["row_count"],
        per_template=template_counts(conn, row["list_key"], template_ids),
        in_target_group=row["in_target_group"],
        excluded_missing_identifier=row["excluded_missing_identifier"],
        excluded_suppressed=row["excluded_suppressed"],
        collapsed_duplicates=row["collapsed_duplicates"],
        reused=reused,
        frozen_at=utc(row["frozen_at"]),
        identifier_column=row["identifier_column"],
        fields=json.loads(row["fields"]),
    )


def get_frozen_list(engine: Bind, key: str, template_ids: Sequence[str] = ()) -> FreezeResult | None:
    """The list as it was last frozen (``reused=True``), or None if it never was.

    ``per_template`` holds every id of ``template_ids`` (0 if it got nobody) and any other
    template the stored list uses.
    """
    with connect(engine) as conn:
        stmt = sa.select(recipient_list).where(recipient_list.c.list_key == key)
        row = conn.execute(stmt).mappings().first()
        return None if row is None else stored_result(conn, row, unique_in_order(template_ids), reused=True)


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


# ------------------------------------------------------------------------------------------------
# reading a frozen list
# ------------------------------------------------------------------------------------------------
def _raw_recipient_chunks(
    engine: Bind, list_key: str, template_id: str, chunk_size: int, leave_out: AbstractSet[str] = frozenset(),
    skipped: list[int] | None = None, left_out: list[str] | None = None,
) -> Iterator[list[tuple[str, str]]]:
    """``(identifier, attrs JSON text, address)`` chunks of one template of a list, by identifier,
    less the identifiers in ``leave_out`` (a chunk they empty is skipped; ``skipped[0]`` counts
    them, ``left_out`` gets each). ``address`` is None when it is the identifier itself."""
    if chunk_size < 1:
        raise ValueError("chunk_size must be at least 1")
    base = sa.select(recipient.c.identifier, recipient.c.attrs, recipient.c.address).where(
        recipient.c.list_key == list_key, recipient.c.template_id == template_id
    )
    last: str | None = None
    while True:
        stmt = base if last is None else base.where(recipient.c.identifier > last)
        with connect(engine) as conn:
            rows = conn.execute(stmt.order_by(recipient.c.identifier).limit(chunk_size)).all()
        if not rows:
            return
        kept = [r for r in rows if r[0] not in leave_out] if leave_out else rows
        if skipped is not None:
            skipped[0] += len(rows) - len(kept)
        if left_out is not None and len(kept) < len(rows):
            left_out.extend(r[0] for r in rows if r[0] in leave_out)
        if kept:
            yield kept
        if len(rows) < chunk_size:
            return
        last = rows[-1][0]  # the page's last row read, kept or not


def iter_recipient_chunks(
    engine: Bind, list_key: str, template_id: str, chunk_size: int
) -> Iterator[list[tuple[str, dict]]]:
    """The recipients of one template of a list, as chunks of ``(identifier, attrs)``.

    Ordered by identifier (the database's order for the column: bytewise on SQLite, and on
    PostgreSQL, whose column is created with collation "C"; a table created before that keeps the
    database's collation). Each chunk is its own short query (keyset pagination on
    the primary key), so no transaction stays open while the caller works on a chunk. Read a list
    only once it is frozen (its ledger row has left PENDING): then it cannot change between chunks.
    """
    for rows in _raw_recipient_chunks(engine, list_key, template_id, chunk_size):
        yield [(ident, json.loads(attrs)) for ident, attrs, _ in rows]


def iter_recipient_rows(
    engine: Bind,
    list_key: str,
    template_id: str,
    fields: Sequence[str],
    chunk_size: int,
    leave_out: AbstractSet[str] = frozenset(),
    skipped: list[int] | None = None,
    left_out: list[str] | None = None,
) -> Iterator[list[tuple]]:
    """The same recipients as :func:`iter_recipient_chunks`, in the same chunks and order, as
    tuples ``(address, value of each of fields in that order)`` (None for a field the attrs
    lack): the send path's CSV rows, each with the identifier as sent (the customer's own value,
    stripped; :func:`.identifiers.address_of`). Each chunk's attrs are parsed by one ``json.loads``.

    ``leave_out``: identifiers (as the list stores them) not to yield (the import's:
    :func:`suppressed_now`); the chunks are the same pages of the list, less them, and
    ``skipped[0]`` counts those left out (``left_out`` gets their identifiers)."""
    fields = tuple(fields)
    if len(fields) == 1:
        pick = lambda attrs, name=fields[0]: (attrs[name],)  # noqa: E731 - itemgetter of one is no tuple
    else:
        pick = operator.itemgetter(*fields) if fields else (lambda attrs: ())
    for rows in _raw_recipient_chunks(engine, list_key, template_id, chunk_size, leave_out, skipped, left_out):
        dicts = json.loads("[" + ",".join(attrs for _, attrs, _ in rows) + "]")
        try:
            values = list(map(pick, dicts))
        except KeyError:  # a field the list's attrs lack: empty, as attrs.get gives
            values = [tuple(d.get(f) for f in fields) for d in dicts]
        yield [(address or ident, *vals) for (ident, _, address), vals in zip(rows, values)]


def count_recipients(engine: Bind, list_key: str, template_id: str) -> int:
    stmt = sa.select(sa.func.count()).where(
        recipient.c.list_key == list_key, recipient.c.template_id == template_id
    )
    with connect(engine) as conn:
        return int(conn.execute(stmt).scalar_one())


def recipients_among(
    engine: Bind, list_key: str, template_id: str, among: AbstractSet[str], chunk_size: int = 50_000
) -> list[str]:
    """The identifiers of one template of a frozen list that are in ``among`` (as the list stores
    them), sorted: whom an import that leaves ``among`` out leaves out. Reads identifiers only, a
    page at a time (keyset pagination, as :func:`iter_recipient_chunks`)."""
    if not among:
        return []
    base = sa.select(recipient.c.identifier).where(
        recipient.c.list_key == list_key, recipient.c.template_id == template_id
    )
    found: list[str] = []
    last: str | None = None
    while True:
        stmt = base if last is None else base.where(recipient.c.identifier > last)
        with connect(engine) as conn:
            page = conn.execute(stmt.order_by(recipient.c.identifier).limit(chunk_size)).scalars().all()
        found.extend(i for i in page if i in among)
        if len(page) < chunk_size:
            return sorted(found)
        last = page[-1]


#: Seconds a sender (one per run, or per worker of a run) reuses the normalised suppression list
#: for its imports: a day's hundreds of sends would each normalise it again (19,000 entries cost
#: 40-70 ms). A new run always reads it afresh.
SUPPRESSION_REUSE_SECONDS = 60.0


def suppressed_now(engine: Bind) -> frozenset[str]:
    """The suppression list as the freeze matches it: each entry normalised in the database
    (:func:`.freeze_sql.suppressed_norms`). The import leaves out the frozen recipients in it
    (suppressed since the freeze, as the freeze left out everyone suppressed then)."""
    with connect(engine) as conn:
        return frozenset(conn.execute(suppressed_norms(conn.dialect.name)).scalars())


class SuppressedNow:
    """:func:`suppressed_now`, read again once it is older than ``max_age`` seconds (thread-safe:
    the workers of a run may share one)."""

    def __init__(self, engine: Bind, max_age: float = SUPPRESSION_REUSE_SECONDS, clock=time.monotonic):
        self.engine, self.max_age, self.clock = engine, max_age, clock
        self._lock = threading.Lock()
        self._read: tuple[float, frozenset[str]] | None = None

    def __call__(self) -> frozenset[str]:
        with self._lock:
            now = self.clock()
            if self._read is None or now - self._read[0] > self.max_age:
                self._read = (now, suppressed_now(self.engine))
            return self._read[1]


def recipient_preview(engine: Bind, list_key: str, limit: int = 10):
    """The first ``limit`` recipients of a list (identifier, template_id, then each field)."""
    import pandas as pd

    stmt = (
        sa.select(sa.func.coalesce(recipient.c.address, recipient.c.identifier), recipient.c.template_id, recipient.c.attrs)
        .where(recipient.c.list_key == list_key)
        .order_by(recipient.c.identifier)
        .limit(limit)
    )
    with connect(engine) as conn:
        rows = conn.execute(stmt).all()
    records = [{"identifier": i, "template_id": t, **json.loads(a)} for i, t, a in rows]
    columns = list(dict.fromkeys(k for r in records for k in r)) or ["identifier", "template_id"]
    return pd.DataFrame.from_records(records, columns=columns)
