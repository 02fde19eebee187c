"""The statements of a freeze (no Dagster, no execution here): who is on a list, in SQL.

:func:`selection` gives the counts and the kept rows (members of the target group, identifier
present and not suppressed, one per normalised identifier, the lowest ``customer_pk`` winning).
:func:`insert_statement` turns the kept rows into one ``INSERT INTO cheetah_recipient … SELECT``:
normalisation, de-duplication, suppression, the template split (:func:`.identifiers.template_index`)
and the attrs JSON all run in the database, and no row passes through Python. :func:`field_texts`
says whether the Data Map's columns can be rendered as text by the database exactly as the
streamed freeze renders them (``recipients.as_text``); when not, the caller streams.
"""

from __future__ import annotations

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


def selection(
    customers: sa.Table,
    *,
    target_group: str,
    identifier_column: str,
    field_exprs: Sequence[Any],
    dialect: str,
):
    """``(counts, kept)``: the counts statement, and the kept rows as a subquery.

    ``counts`` returns ``(in_target_group, missing, suppressed)`` (each member counted under the
    first reason that applies); ``kept`` has the columns ``ident`` (normalised) and ``f0..fn`` (the
    ``field_exprs``), one row per normalised identifier, the lowest ``customer_pk`` winning.

    Both read ``members``: each member of the target group with its normalised identifier, computed
    once per row. Its ``OFFSET 0`` keeps the planners from merging it into the statements that read
    it (SQLite's flattener and PostgreSQL's pull-up would copy the normalisation into every place
    ``ident`` is named, four times per row). The suppression list is looked up by ``IN`` on SQLite
    (an index of the list built once) and by a hash join elsewhere. The de-duplication:

    * PostgreSQL: ``DISTINCT ON`` the identifier, ordered bytewise then by ``customer_pk``: one
      sort, whose order is the list's primary key order (the insert appends to the index);
    * elsewhere: ``min(customer_pk)`` per identifier over the small ``(ident, customer_pk)``
      pairs, then that customer's fields read back by primary key (plain SQL; SQLite's grouping
      yields the identifiers in its key order too).
    """
    ident_col = customers.c[identifier_column]
    ident = ident_col if isinstance(ident_col.type, sa.String) else sa.cast(ident_col, sa.String)
    members = (
        sa.select(
            norm_sql(ident, dialect).label("ident"),
            customers.c.customer_pk.label("pk"),
            *([expr.label(f"f{i}") for i, expr in enumerate(field_exprs)] if dialect == "postgresql" else []),
        )
        .select_from(
            customers.join(
                target_group_members,
                sa.and_(
                    target_group_members.c.customer_pk == customers.c.customer_pk,
                    target_group_members.c.target_group == target_group,
                ),
            )
        )
        .offset(0)
        .subquery("members")
    )
    s_norm = norm_sql(suppression.c.identifier, dialect)
    supp = (
        sa.select(s_norm.label("norm"))
        .where(suppression.c.identifier.is_not(None), s_norm != "")
        .distinct()
        .subquery("supp")
    )
    if dialect == "sqlite":  # IN builds an index of the list once; a join to it would scan it per member
        flagged, is_suppressed = members, members.c.ident.in_(sa.select(supp.c.norm))
    else:  # a hash join (PostgreSQL), whatever the size of the list
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
        # One sort of the eligible members by (ident, pk), the first of each kept: the rows come
        # out in the primary key's order, so the list's index is appended to, not scattered into.
        return counts, (
            sa.select(members.c.ident, *[members.c[f"f{i}"] for i in range(len(field_exprs))])
            .select_from(flagged)
            .where(eligible)
            .ext(distinct_on(bytewise))
            .order_by(bytewise, members.c.pk)
            .subquery("kept")
        )
    # Elsewhere the first member per identifier, then its fields read back by primary key: plain
    # SQL, one sort of small (ident, pk) pairs with no field in it (SQLite yields them in order).
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
    return counts, kept.subquery("kept")


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
