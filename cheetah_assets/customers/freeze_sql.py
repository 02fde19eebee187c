"""The statements of a freeze (no Dagster, no execution here): who is on a list, in SQL.

:func:`selection` gives the counts and the kept rows (members of the target group, identifier
present and not suppressed, one per normalised identifier, the lowest ``customer_pk`` winning),
with the statements to run before and after them (SQLite: the members' temporary table).
:func:`insert_statement` turns the kept rows into one ``INSERT INTO cheetah_recipient … SELECT``:
normalisation, de-duplication, suppression, the template split (:func:`.identifiers.template_index`)
and the attrs JSON all run in the database, and no row passes through Python. :func:`field_texts`
says whether the Data Map's columns can be rendered as text by the database exactly as the
streamed freeze renders them (``recipients.as_text``); when not, the caller streams.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import distinct_on

from .identifiers import norm_sql, template_index_sql
from .schema import recipient, suppression, target_group_members


def _field_text(column: sa.Column, dialect: sa.engine.Dialect) -> Any | None:
    """``column`` as the text ``as_text`` makes of its value, in SQL, or None if not provably equal."""
    col_type = column.type
    if isinstance(col_type, sa.CHAR) or not isinstance(col_type, (sa.String, sa.Integer)):
        return None  # padded CHAR, dates, numbers with a fraction, booleans ...: rendered by Python
    if col_type.result_processor(dialect, None) is not None:
        return None  # the driver's value is converted by SQLAlchemy before as_text sees it
    if dialect.name == "sqlite":
        # The raw stored value is what as_text sees: text and NULL as they are, integers by CAST
        # (decimal digits, as str(int)), anything else (reals, blobs) by the registered function.
        kind = sa.func.typeof(column)
        return sa.case(
            (kind.in_(("text", "null")), column),
            (kind == "integer", sa.cast(column, sa.Text)),
            else_=sa.func.cheetah_norm_text(column, type_=sa.Text),
        )
    if dialect.name == "postgresql":
        return column if isinstance(col_type, sa.String) else sa.cast(column, sa.Text)
    return None


def field_texts(customers: sa.Table, field_columns: Sequence[str], dialect: sa.engine.Dialect) -> list | None:
    """The SQL text of each Data Map column, or None if any of them must be rendered by Python."""
    out = [_field_text(customers.c[c], dialect) for c in field_columns]
    return None if any(e is None for e in out) else out


#: SQLite: the members of the list being frozen, written once per freeze inside its transaction
#: (and dropped before it commits), so that the counts and the insert read them without
#: normalising each identifier or looking it up in the suppression list a second time.
FREEZE_MEMBERS = sa.Table(
    "cheetah_freeze_members",
    sa.MetaData(),
    sa.Column("ident", sa.Text),
    sa.Column("pk", sa.Integer),
    sa.Column("suppressed", sa.Integer),
    prefixes=["TEMPORARY"],
)


@dataclass(frozen=True)
class Selection:
    """The statements of one freeze: run ``setup``, then ``counts`` (one row) and the insert of
    (or the stream of) ``kept``, then ``teardown``, all in the freeze's transaction."""

    setup: tuple
    counts: Any
    kept: Any
    teardown: tuple


def selection(
    customers: sa.Table,
    *,
    target_group: str,
    identifier_column: str,
    field_exprs: Sequence[Any],
    dialect: str,
) -> Selection:
    """The counts statement, and the kept rows as a subquery.

    ``counts`` returns ``(in_target_group, missing, suppressed)`` (each member counted under the
    first reason that applies); ``kept`` has the columns ``ident`` (normalised) and ``f0..fn`` (the
    ``field_exprs``), one row per normalised identifier, the lowest ``customer_pk`` winning.

    Both read the members: each member of the target group with its normalised identifier,
    computed once per row. The planners would copy the normalisation into every place that names
    ``ident`` (SQLite's flattener, PostgreSQL's pull-up: about four times per row), so:

    * SQLite: the members, with their suppression flag, are written once to a temporary table
      (:data:`FREEZE_MEMBERS`) that both statements read. The suppression list is looked up by
      ``IN`` (an index of the list built once; a join to it would scan it per member).
    * Elsewhere: the members are a subquery behind ``OFFSET 0``, which no planner merges, and the
      suppression list is a hash join (PostgreSQL), whatever its size.

    The de-duplication: PostgreSQL ``DISTINCT ON`` the identifier, ordered bytewise then by
    ``customer_pk`` (one sort, in the list's key order, so the insert appends to the key);
    elsewhere ``min(customer_pk)`` per identifier over the small ``(ident, customer_pk)`` pairs,
    then that customer's fields read back by primary key (plain SQL; SQLite's grouping yields the
    identifiers in its key order too).
    """
    ident_col = customers.c[identifier_column]
    ident = ident_col if isinstance(ident_col.type, sa.String) else sa.cast(ident_col, sa.String)
    member_rows = sa.select(
        norm_sql(ident, dialect).label("ident"),
        customers.c.customer_pk.label("pk"),
        *([expr.label(f"f{i}") for i, expr in enumerate(field_exprs)] if dialect == "postgresql" else []),
    ).select_from(
        customers.join(
            target_group_members,
            sa.and_(
                target_group_members.c.customer_pk == customers.c.customer_pk,
                target_group_members.c.target_group == target_group,
            ),
        )
    )
    s_norm = norm_sql(suppression.c.identifier, dialect)
    setup: tuple = ()
    teardown: tuple = ()
    if dialect == "sqlite":
        # The IN list needs neither DISTINCT nor the "" filter (one normalisation per entry);
        # NULLs stay out of it: one NULL in a NOT IN list would exclude everybody.
        in_list = sa.select(s_norm).where(suppression.c.identifier.is_not(None))
        members = FREEZE_MEMBERS
        fenced = member_rows.offset(0).subquery("m")  # ident computed once, then looked up
        setup = (
            sa.text("DROP TABLE IF EXISTS temp.cheetah_freeze_members"),
            sa.schema.CreateTable(FREEZE_MEMBERS),
            FREEZE_MEMBERS.insert().from_select(
                ["ident", "pk", "suppressed"], sa.select(fenced.c.ident, fenced.c.pk, fenced.c.ident.in_(in_list))
            ),
        )
        teardown = (sa.text("DROP TABLE temp.cheetah_freeze_members"),)
        flagged, is_suppressed = members, members.c.suppressed == 1
    else:
        members = member_rows.offset(0).subquery("members")
        supp = (
            sa.select(s_norm.label("norm"))
            .where(suppression.c.identifier.is_not(None), s_norm != "")
            .distinct()
            .subquery("supp")
        )
        flagged = members.outerjoin(supp, supp.c.norm == members.c.ident)
        is_suppressed = supp.c.norm.is_not(None)
    is_missing = sa.or_(members.c.ident.is_(None), members.c.ident == "")
    counts = sa.select(
        sa.func.count().label("in_target_group"),
        sa.func.coalesce(sa.func.sum(sa.case((is_missing, 1), else_=0)), 0).label("missing"),
        sa.func.coalesce(
            sa.func.sum(sa.case((sa.and_(sa.not_(is_missing), is_suppressed), 1), else_=0)), 0
        ).label("suppressed"),
    ).select_from(flagged)

    eligible = sa.and_(members.c.ident != "", sa.not_(is_suppressed))  # a NULL ident fails the first
    if dialect == "postgresql":
        bytewise = members.c.ident.collate("C")  # the list's key order; equality is unchanged
        kept = (
            sa.select(members.c.ident, *[members.c[f"f{i}"] for i in range(len(field_exprs))])
            .select_from(flagged)
            .where(eligible)
            .ext(distinct_on(bytewise))
            .order_by(bytewise, members.c.pk)
        )
    else:
        first = (
            sa.select(members.c.ident, sa.func.min(members.c.pk).label("pk"))
            .select_from(flagged)
            .where(eligible)
            .group_by(members.c.ident)
            .subquery("first")
        )
        kept = sa.select(first.c.ident, *[expr.label(f"f{i}") for i, expr in enumerate(field_exprs)]).select_from(
            first.join(customers, customers.c.customer_pk == first.c.pk)
        )
    return Selection(setup=setup, counts=counts, kept=kept.subquery("kept"), teardown=teardown)


def _attrs_json(names: Sequence[str], values: Sequence[Any], dialect: str) -> Any:
    """``{name: value}`` as JSON text, in the database (values are text or NULL)."""
    args: list[Any] = []
    for name, value in zip(names, values):
        args += [sa.literal(name, sa.Text), value]
    if dialect == "postgresql":
        return sa.cast(sa.func.json_build_object(*args), sa.Text)
    return sa.func.json_object(*args, type_=sa.Text)


def insert_statement(key: str, kept, templates: Sequence[str], field_names: Sequence[str], dialect: str):
    """``INSERT INTO cheetah_recipient (list_key, identifier, template_id, attrs) SELECT …`` of the
    kept rows: each to ``templates[template_index(ident)]``, its fields as a JSON object."""
    index = template_index_sql(kept.c.ident, len(templates), dialect)
    template = sa.case({i: t for i, t in enumerate(templates)}, value=index) if len(templates) > 1 else sa.literal(
        templates[0], sa.Text
    )
    values = [kept.c[f"f{i}"] for i in range(len(field_names))]
    # No ORDER BY: the de-duplication already yields the rows by identifier, the list's key order
    # (the key's b-tree is appended to, several times faster than in random order).
    rows = sa.select(sa.literal(key, sa.Text), kept.c.ident, template, _attrs_json(field_names, values, dialect))
    return recipient.insert().from_select(["list_key", "identifier", "template_id", "attrs"], rows)
