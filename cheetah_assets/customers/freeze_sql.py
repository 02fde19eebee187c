"""The statements of a freeze (no Dagster, no execution here): who is on a list, in SQL.

:func:`selection` gives the counts and the kept rows (members of the target group, identifier
present and not suppressed, one per normalised identifier, the lowest ``customer_pk`` winning),
with the statements to run around them (SQLite: the members' sorted temporary table, filled
before the counts and pruned after them).
:func:`insert_statement` turns the kept rows into one ``INSERT INTO cheetah_recipient … SELECT``:
normalisation, de-duplication, suppression, the template split (:func:`.identifiers.template_index`)
and the attrs JSON all run in the database, and no row passes through Python. :func:`field_texts`
says whether the Data Map's columns can be rendered as text by the database exactly as the
streamed freeze renders them (``recipients.as_text``); when not, the caller streams.
"""

from __future__ import annotations

import functools
import json
import operator
from dataclasses import dataclass
from typing import Any, Sequence

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.compiler import compiles

from .identifiers import MAX_LENGTH, address_sql, norm_sql, template_index_sql
from .schema import recipient, suppression, target_group_members


#: Column types whose values are padded with spaces to their length: sent without trailing spaces.
PADDED_CHAR_TYPES = (sa.CHAR, sa.NCHAR)


def _field_text(column: sa.Column, dialect: sa.engine.Dialect) -> Any | None:
    """``column`` as the text ``value_text`` makes of its value, in SQL, or None if not provably equal."""
    col_type = column.type
    if not isinstance(col_type, (sa.String, sa.Integer)):
        return None  # dates, numbers with a fraction, booleans ...: rendered by Python
    if col_type.result_processor(dialect, None) is not None:
        return None  # the driver's value is converted by SQLAlchemy before as_text sees it
    padded = isinstance(col_type, PADDED_CHAR_TYPES)
    if dialect.name == "sqlite":
        # The raw stored value is what as_text sees: text and NULL as they are, integers by CAST
        # (decimal digits, as str(int)), anything else (reals, blobs) by the registered function.
        kind = sa.func.typeof(column)
        text = sa.case(
            (kind.in_(("text", "null")), column),
            (kind == "integer", sa.cast(column, sa.Text)),
            else_=sa.func.cheetah_norm_text(column, type_=sa.Text),
        )
    elif dialect.name == "postgresql":
        text = column if isinstance(col_type, sa.String) and not padded else sa.cast(column, sa.Text)
    else:
        return None
    # a CHAR's padding: its trailing spaces (U+0020 only, as str.rstrip(" ")) are not sent
    return sa.func.rtrim(text, " ", type_=sa.Text) if padded else text


def field_texts(customers: sa.Table, field_columns: Sequence[str], dialect: sa.engine.Dialect) -> list | None:
    """The SQL text of each Data Map column, or None if any of them must be rendered by Python."""
    out = [_field_text(customers.c[c], dialect) for c in field_columns]
    return None if any(e is None for e in out) else out


#: SQLite: the list being frozen, one row per normalised identifier of the target group's members,
#: written once per freeze inside its transaction (and dropped before it commits). ``pk`` is the
#: lowest ``customer_pk`` with that identifier, ``attrs`` its attrs JSON (NULL when the freeze
#: streams), ``n`` how many members have it. ``ident`` is "" for the members whose identifier is
#: NULL, normalises to "" or is too long as sent (all missing:
#: :func:`.identifiers.frozen_identifier`). The counts and the suppression read it by key.
FREEZE_MEMBERS = sa.Table(
    "cheetah_freeze_members",
    sa.MetaData(),
    sa.Column("ident", sa.Text, primary_key=True),
    sa.Column("pk", sa.Integer, nullable=False),
    sa.Column("attrs", sa.Text),
    sa.Column("address", sa.Text),
    sa.Column("n", sa.Integer, nullable=False),
    prefixes=["TEMPORARY"],
    sqlite_with_rowid=False,
)

#: SQLite: the suppression list, normalised once per freeze (the counts and the prune read it).
FREEZE_SUPPRESSED = sa.Table(
    "cheetah_freeze_suppressed",
    sa.MetaData(),
    sa.Column("ident", sa.Text, primary_key=True),
    prefixes=["TEMPORARY"],
    sqlite_with_rowid=False,
)


@dataclass(frozen=True)
class Selection:
    """The statements of one freeze, all run in the freeze's transaction: ``setup``, then
    ``counts`` (one row), then ``prune``, then the insert of (or the stream of) ``kept``, then
    ``teardown``."""

    setup: tuple
    counts: Any
    prune: tuple
    kept: Any
    teardown: tuple


def _attrs_json(names: Sequence[str], values: Sequence[Any], dialect: str) -> Any:
    """``{name: value}`` as JSON text, in the database (values are text or NULL).

    PostgreSQL: the object is concatenated from ``to_json`` of each value (a third cheaper than
    ``json_build_object``, which also spaces its output); the names are bound as their JSON text.
    """
    if dialect == "postgresql":
        parts: list[Any] = []
        for i, (name, value) in enumerate(zip(names, values)):
            key = ("{" if i == 0 else ",") + json.dumps(name, ensure_ascii=False) + ":"
            parts += [sa.literal(key, sa.Text), sa.func.coalesce(sa.cast(sa.func.to_json(value), sa.Text), "null")]
        if not parts:
            return sa.literal("{}", sa.Text)
        return functools.reduce(operator.add, parts + [sa.literal("}", sa.Text)])
    args: list[Any] = []
    for name, value in zip(names, values):
        args += [sa.literal(name, sa.Text), value]
    return sa.func.json_object(*args, type_=sa.Text)


def suppressed_norms(dialect: str) -> sa.Select:
    """The suppression list, normalised: one column ``norm``, NULL and blank entries left out (they
    match no identifier), repeats kept. The freeze leaves these out of a list; the import leaves
    out those of a frozen list suppressed since (:func:`.recipients.suppressed_now`)."""
    s_norm = norm_sql(suppression.c.identifier, dialect)
    return sa.select(s_norm.label("norm")).where(suppression.c.identifier.is_not(None), s_norm != "")


def selection(
    customers: sa.Table,
    *,
    target_group: str,
    identifier_column: str,
    field_exprs: Sequence[Any],
    dialect: str,
    field_names: Sequence[str] | None = None,
) -> Selection:
    """The counts statement, and the kept rows as a subquery.

    ``counts`` returns ``(in_target_group, missing, suppressed)`` (each member counted under the
    first reason that applies; missing: :func:`.identifiers.frozen_identifier` is ``""``);
    ``kept`` has the columns ``ident`` (normalised), ``address`` (what is sent, when it differs: :func:`.identifiers.address_of`; else NULL), then either
    ``attrs`` (the attrs JSON, on SQLite when ``field_names`` names the fields: the freeze writes
    in the database) or ``f0..fn`` (the ``field_exprs``), one row per normalised identifier, the
    lowest ``customer_pk`` winning, in the list's key order.

    Each member's identifier is normalised once. The planners would copy the normalisation into
    every place that names ``ident`` (SQLite's flattener, PostgreSQL's pull-up: about four times
    per row), so:

    * SQLite: the members are written once, sorted, to :data:`FREEZE_MEMBERS` (``setup``), one
      row per identifier: an upsert keeps its lowest ``pk`` (and that member's attrs) and counts
      its members. The counts look each suppression entry (normalised once, into
      :data:`FREEZE_SUPPRESSED`) up in that key, not each member up in the suppression list (a
      few thousand probes instead of a million); ``prune`` deletes the missing and the
      suppressed the same way, and ``kept`` reads the rest along the key: no second sort, no
      grouping. When streaming, the lowest ``pk``'s fields are read back from the customer table.
    * PostgreSQL: one ``CREATE TEMPORARY TABLE … AS`` (``setup``; :data:`PG_FREEZE_KEPT`), a
      plan the server may run in parallel, as it never runs an INSERT's: the members behind
      ``OFFSET 0`` (no planner merges it), sorted bytewise by identifier, then as sent too long
      last, then by ``customer_pk``; ``DISTINCT ON`` the identifier keeps each one's first row,
      window counts over the identifier count its members and the too long, and the suppression
      list is a hash join, whatever its size. The counts add that table up (no second pass over
      the members) and ``kept`` reads it in the list's key order, so the insert appends to the key.
    * Elsewhere: the same members subquery, grouped by identifier, the lowest eligible
      ``customer_pk``'s fields read back by key.
    """
    ident_col = customers.c[identifier_column]
    ident = ident_col if isinstance(ident_col.type, sa.String) else sa.cast(ident_col, sa.String)
    members_of_group = customers.join(
        target_group_members,
        sa.and_(
            target_group_members.c.customer_pk == customers.c.customer_pk,
            target_group_members.c.target_group == target_group,
        ),
    )
    s_norm = norm_sql(suppression.c.identifier, dialect)
    if dialect == "sqlite":
        return _sqlite_selection(customers, members_of_group, ident, s_norm, field_exprs, field_names)

    if dialect == "postgresql":
        return _postgres_selection(customers, members_of_group, ident, field_exprs, field_names)

    members = (
        sa.select(
            norm_sql(ident, dialect).label("ident"),
            address_sql(ident, dialect).label("sent"),
            customers.c.customer_pk.label("pk"),
            *[expr.label(f"f{i}") for i, expr in enumerate(field_exprs)],
        )
        .select_from(members_of_group)
        .offset(0)
        .subquery("members")
    )
    supp = suppressed_norms(dialect).distinct().subquery("supp")
    flagged = members.outerjoin(supp, supp.c.norm == members.c.ident)
    too_long = sa.func.length(members.c.sent) > MAX_LENGTH  # as sent (normalised: in cheetah_norm)
    is_missing = sa.or_(members.c.ident.is_(None), members.c.ident == "", too_long)
    counts = sa.select(
        sa.func.count().label("in_target_group"),
        sa.func.coalesce(sa.func.sum(sa.case((is_missing, 1), else_=0)), 0).label("missing"),
        sa.func.coalesce(
            sa.func.sum(sa.case((sa.and_(sa.not_(is_missing), supp.c.norm.is_not(None)), 1), else_=0)), 0
        ).label("suppressed"),
    ).select_from(flagged)
    eligible = sa.and_(members.c.ident != "", sa.not_(too_long), supp.c.norm.is_(None))  # NULL fails the first
    # plain SQL: the lowest pk per identifier, its fields read back by key
    first = (
        sa.select(members.c.ident, sa.func.min(members.c.pk).label("pk"))
        .select_from(flagged)
        .where(eligible)
        .group_by(members.c.ident)
        .subquery("first")
    )
    kept = sa.select(
        first.c.ident, sa.func.nullif(address_sql(ident, dialect), first.c.ident).label("address"),
        *[expr.label(f"f{i}") for i, expr in enumerate(field_exprs)],
    ).select_from(first.join(customers, customers.c.customer_pk == first.c.pk))
    return Selection(setup=(), counts=counts, prune=(), kept=kept.subquery("kept"), teardown=())


class CreateTempTableAs(sa.sql.expression.Executable, sa.sql.expression.ClauseElement):
    """PostgreSQL's ``CREATE TEMPORARY TABLE name ON COMMIT DROP AS <select>`` (its parameters bound)."""

    inherit_cache = False

    def __init__(self, name: str, select: sa.Select):
        self.name, self.select = name, select


@compiles(CreateTempTableAs)
def _compile_create_temp_table_as(element: CreateTempTableAs, compiler, **kw) -> str:
    return f"CREATE TEMPORARY TABLE {element.name} ON COMMIT DROP AS {compiler.process(element.select, **kw)}"


#: PostgreSQL: the list being frozen, one row per normalised identifier of the target group's
#: members (``ident`` "" for those whose identifier is NULL or normalises to ""), written by one
#: ``CREATE TEMPORARY TABLE … AS``, dropped before commit. Unlike an INSERT's, that statement's
#: plan may be parallel: the join, the normalisation, the attrs JSON and the sort are shared by the
#: server's workers. Each row is the identifier's first member in (``too_long``, ``customer_pk``)
#: order, so its lowest ``pk`` that is not too long as sent when there is one; ``n`` counts the
#: identifier's members, ``nl`` those too long as sent (missing); ``suppressed`` says whether the
#: suppression list holds it. The counts and the kept rows read it; nothing is normalised twice.
PG_FREEZE_KEPT = "cheetah_freeze_kept"


def _postgres_selection(customers, members_of_group, raw_ident, field_exprs, field_names) -> Selection:
    """:func:`selection` on PostgreSQL: the list's temporary table (see :data:`PG_FREEZE_KEPT`)."""
    sent = address_sql(raw_ident, "postgresql")
    if field_names is not None:
        payload = [_attrs_json(field_names, field_exprs, "postgresql").label("attrs")]
    else:  # streamed: each field as the database returns it, typed, for Python to render
        payload = [expr.label(f"f{i}") for i, expr in enumerate(field_exprs)]
    members = (
        sa.select(
            sa.func.coalesce(norm_sql(raw_ident, "postgresql"), "").collate("C").label("ident"),
            sent.label("sent"),
            sa.func.coalesce(sa.func.length(sent) > MAX_LENGTH, False).label("too_long"),
            customers.c.customer_pk.label("pk"),
            *payload,
        )
        .select_from(members_of_group)
        # sorted here, below the OFFSET that keeps each identifier normalised once: so the workers
        # that compute the members also sort them, and the leader only merges
        .order_by(sa.literal_column("ident"), sa.literal_column("too_long"), sa.literal_column("pk"))
        .offset(0)
        .subquery("members")
    )
    order = [members.c.ident, members.c.too_long, members.c.pk]
    whole = {"partition_by": members.c.ident, "order_by": order[1:], "rows": (None, None)}
    firsts = (
        sa.select(
            members.c.ident,
            sa.func.nullif(members.c.sent, members.c.ident).label("address"),
            members.c.too_long,
            sa.func.count().over(**whole).label("n"),
            sa.func.count().filter(members.c.too_long).over(**whole).label("nl"),
            *[members.c[p.name] for p in payload],
        )
        .ext(distinct_on(members.c.ident))
        .order_by(*order)
        .subquery("firsts")
    )
    supp = suppressed_norms("postgresql").distinct().subquery("supp")
    fill = sa.select(firsts, supp.c.norm.is_not(None).label("suppressed")).select_from(
        firsts.outerjoin(supp, supp.c.norm.collate("C") == firsts.c.ident)
    )
    k = sa.table(
        PG_FREEZE_KEPT,
        sa.column("ident", sa.Text), sa.column("address", sa.Text), sa.column("too_long", sa.Boolean),
        sa.column("n", sa.BigInteger), sa.column("nl", sa.BigInteger), sa.column("suppressed", sa.Boolean),
        *[sa.column(p.name, p.type) for p in payload],
    )
    named = k.c.ident != ""
    counts = sa.select(
        sa.func.coalesce(sa.func.sum(k.c.n), 0).label("in_target_group"),
        sa.func.coalesce(sa.func.sum(sa.case((named, k.c.nl), else_=k.c.n)), 0).label("missing"),
        sa.func.coalesce(sa.func.sum(sa.case((sa.and_(named, k.c.suppressed), k.c.n - k.c.nl), else_=0)), 0)
        .label("suppressed"),
    )
    # No ORDER BY: the table was written in the list's key order (bytewise), which the insert
    # appends to; the order of the rows is not what makes the list.
    kept = sa.select(k.c.ident, k.c.address, *[k.c[p.name] for p in payload]).where(
        named, sa.not_(k.c.too_long), sa.not_(k.c.suppressed)
    )
    drop = sa.text(f"DROP TABLE IF EXISTS pg_temp.{PG_FREEZE_KEPT}")
    return Selection(
        setup=(drop, CreateTempTableAs(PG_FREEZE_KEPT, fill)),
        counts=counts,
        prune=(),
        kept=kept.subquery("kept"),
        teardown=(drop,),
    )


def _sqlite_selection(customers, members_of_group, raw_ident, s_norm, field_exprs, field_names) -> Selection:
    """:func:`selection` on SQLite: the list's table of identifiers (see there)."""
    m, supp = FREEZE_MEMBERS, FREEZE_SUPPRESSED
    attrs = _attrs_json(field_names, field_exprs, "sqlite") if field_names is not None else sa.null()
    member_rows = (
        sa.select(norm_sql(raw_ident, "sqlite").label("ident"), address_sql(raw_ident, "sqlite").label("sent"),
                  customers.c.customer_pk.label("pk"), attrs.label("attrs"))
        .select_from(members_of_group)
        .offset(0)  # a subquery SQLite does not flatten: each identifier normalised once
        .subquery("members")
    )
    # Sorted, so each identifier's first row is its lowest pk and its others update the row just
    # written; the update keeps the lowest pk (and its attrs) whatever the order rows come in.
    members = (
        sa.select(sa.case((sa.func.length(member_rows.c.sent) > MAX_LENGTH, ""),  # too long as sent: missing
                          else_=sa.func.coalesce(member_rows.c.ident, "")).label("ident"),
                  member_rows.c.pk, member_rows.c.attrs,
                  sa.func.nullif(member_rows.c.sent, member_rows.c.ident).label("address"),
                  sa.literal(1, sa.Integer).label("n"))
        .where(sa.true())  # SQLite's upsert after INSERT … SELECT wants a WHERE clause
        .order_by("ident", "pk")
    )
    fill = sqlite_insert(m).from_select(["ident", "pk", "attrs", "address", "n"], members)
    fill = fill.on_conflict_do_update(
        index_elements=[m.c.ident],
        set_={
            "n": m.c.n + fill.excluded.n,
            "attrs": sa.case((fill.excluded.pk < m.c.pk, fill.excluded.attrs), else_=m.c.attrs),
            "address": sa.case((fill.excluded.pk < m.c.pk, fill.excluded.address), else_=m.c.address),
            "pk": sa.func.min(m.c.pk, fill.excluded.pk),
        },
    )
    in_list = sa.select(supp.c.ident)
    members_with = sa.select(sa.func.coalesce(sa.func.sum(m.c.n), 0))
    counts = sa.select(
        members_with.scalar_subquery().label("in_target_group"),
        members_with.where(m.c.ident == "").scalar_subquery().label("missing"),
        members_with.where(m.c.ident != "", m.c.ident.in_(in_list)).scalar_subquery().label("suppressed"),
    )
    if field_names is not None:
        kept = sa.select(m.c.ident, m.c.address, m.c.attrs)
    else:  # the fields of each identifier's lowest pk, read back from the customer table
        kept = sa.select(m.c.ident, m.c.address, *[expr.label(f"f{i}") for i, expr in enumerate(field_exprs)]).select_from(
            m.join(customers, customers.c.customer_pk == m.c.pk)
        )
    return Selection(
        setup=(
            sa.text("DROP TABLE IF EXISTS temp.cheetah_freeze_members"),
            sa.text("DROP TABLE IF EXISTS temp.cheetah_freeze_suppressed"),
            sa.schema.CreateTable(m),
            sa.schema.CreateTable(supp),
            fill,
            # NULLs stay out: the list holds what an identifier can normalise to
            supp.insert().prefix_with("OR IGNORE").from_select(
                ["ident"], sa.select(s_norm).where(suppression.c.identifier.is_not(None))
            ),
        ),
        counts=counts,
        prune=(sa.delete(m).where(m.c.ident == ""), sa.delete(m).where(m.c.ident.in_(in_list))),
        kept=kept.subquery("kept"),
        teardown=(sa.text("DROP TABLE temp.cheetah_freeze_members"), sa.text("DROP TABLE temp.cheetah_freeze_suppressed")),
    )


def insert_statement(
    key: str, kept, templates: Sequence[str], field_names: Sequence[str], dialect: str, *, sqlite_utf8: bool = False
):
    """``INSERT INTO cheetah_recipient (list_key, identifier, template_id, attrs) SELECT …`` of the
    kept rows: each to ``templates[template_index(ident)]``, with its attrs JSON (``kept.attrs``
    when the selection built it, else built here from ``f0..fn``). ``sqlite_utf8``: the SQLite
    database stores text as UTF-8 (:func:`.identifiers.template_index_sql`)."""
    index = template_index_sql(kept.c.ident, len(templates), dialect, sqlite_utf8=sqlite_utf8)
    template = sa.case({i: t for i, t in enumerate(templates)}, value=index) if len(templates) > 1 else sa.literal(
        templates[0], sa.Text
    )
    if "attrs" in kept.c:
        attrs = kept.c.attrs
    else:
        attrs = _attrs_json(field_names, [kept.c[f"f{i}"] for i in range(len(field_names))], dialect)
    # No ORDER BY: the de-duplication already yields the rows by identifier, the list's key order
    # (the key's b-tree is appended to, several times faster than in random order).
    rows = sa.select(sa.literal(key, sa.Text), kept.c.ident, template, attrs, kept.c.address)
    return recipient.insert().from_select(["list_key", "identifier", "template_id", "attrs", "address"], rows)
