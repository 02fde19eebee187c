"""Writing the demo data (:mod:`.demo_data`) into a customer database, and ``cheetah-seed``.

Deterministic from ``seed``: the same arguments give the same database.

``cheetah-seed --url sqlite:///demo.db --customers 100000 --days 3 [--past-days 7] [--reset]``
seeds from the command line. ``--reset`` DROPS the demo tables (customers, target_group_members,
campaign_schedule, suppression) first: never point it at a real customer database.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ..timeutil import utc
from . import schema
from .demo_data import (
    BLANK_EMAIL,
    CASE_DUPLICATE,
    MALFORMED_EMAIL,
    NULL_EMAIL,
    TARGET_GROUPS,
    demo_customers,
    plan_campaigns,
)
from .engines import default_url, engine_for, safe_url
from .schema import campaign_schedule, customers, suppression, target_group_members

CHUNK = 50_000


class SeedError(RuntimeError):
    """The database cannot be seeded as asked (e.g. it already holds demo data)."""


@dataclass(frozen=True)
class SeedSummary:
    customers: int
    null_emails: int
    blank_emails: int
    malformed_emails: int
    case_duplicates: int
    target_groups: dict[str, int]
    suppressed: int
    campaigns: int
    campaigns_per_day: dict[dt.date, int]
    seconds: float
    url: str = ""  # password masked
    campaign_ids: tuple[str, ...] = field(default=())

    def lines(self) -> list[str]:
        out = [
            f"database:     {self.url}",
            f"customers:    {self.customers:,} (NULL e-mail {self.null_emails:,}, "
            f"blank {self.blank_emails:,}, "
            f"malformed {self.malformed_emails:,}, case duplicates {self.case_duplicates:,})",
            "target groups: " + ", ".join(f"{g} {n:,}" for g, n in self.target_groups.items()),
            f"suppressed:   {self.suppressed:,}",
            f"campaigns:    {self.campaigns} ("
            + ", ".join(f"{d.isoformat()}: {n}" for d, n in sorted(self.campaigns_per_day.items()))
            + ")",
            f"took:         {self.seconds:.1f}s",
        ]
        return out


# ------------------------------------------------------------------------------------------------
# seeding
# ------------------------------------------------------------------------------------------------
def _has_rows(conn, table: sa.Table) -> bool:
    return conn.execute(sa.select(sa.literal(1)).select_from(table).limit(1)).first() is not None


def _sync_pk_sequence(conn) -> None:
    """After explicit customer_pk values, move PostgreSQL's serial on so add_customers works."""
    if conn.dialect.name == "postgresql":
        seq = conn.execute(
            sa.select(sa.func.pg_get_serial_sequence(customers.name, customers.c.customer_pk.name))
        ).scalar()
        if seq:
            top = conn.execute(sa.select(sa.func.max(customers.c.customer_pk))).scalar() or 0
            if top:
                conn.execute(sa.select(sa.func.setval(seq, top)))


def _analyze(conn, tables: Sequence[sa.Table]) -> None:
    """Fresh planner statistics after a bulk load (PostgreSQL plans the freeze by them)."""
    if conn.dialect.name == "postgresql":
        preparer = conn.dialect.identifier_preparer
        for table in tables:  # our own table names, quoted by the dialect
            conn.exec_driver_sql(f"ANALYZE {preparer.format_table(table)}")


def seed_demo(
    engine: Engine,
    *,
    customers: int = 5_000,
    days: int = 3,
    today: dt.date | None = None,
    now: dt.datetime | None = None,
    seed: int = 42,
    progress: Callable[[int], None] | None = None,
    reset: bool = False,
    past_days: int = 0,
) -> SeedSummary:
    """Create the demo and integration tables and fill the demo ones: campaigns on ``days`` days
    from ``today``, and on the ``past_days`` days before it (the demo's week of history).

    Refuses (:class:`SeedError`) when a demo table already holds rows, unless ``reset=True``,
    which drops and recreates the demo tables (never the integration's cheetah_* tables).
    """
    started = time.perf_counter()
    if customers < 0 or days < 0 or past_days < 0:
        raise ValueError("customers, days and past_days must not be negative")
    now = utc(now or dt.datetime.now(dt.timezone.utc))
    today = today or now.date()
    rng = random.Random(seed)

    if reset:
        schema.metadata.drop_all(engine, tables=list(schema.OPTIMOVE_TABLES))
    schema.create_demo_tables(engine)
    schema.create_integration_tables(engine)

    flaws: Counter[str] = Counter()
    group_counts = dict.fromkeys(TARGET_GROUPS, 0)
    n_suppressed = 0
    with engine.begin() as conn:
        busy = [t.name for t in schema.OPTIMOVE_TABLES if _has_rows(conn, t)]
        if busy:
            raise SeedError(
                f"The database already holds demo data (tables: {', '.join(busy)}); "
                "pass reset=True (cheetah-seed --reset) to drop and recreate the demo tables."
            )
        cust_rows: list[dict] = []
        member_rows: list[dict] = []
        supp_rows: list[dict] = []

        def flush(final: bool = False) -> None:
            if cust_rows and (final or len(cust_rows) >= CHUNK):
                conn.execute(schema.customers.insert(), cust_rows)
                cust_rows.clear()
            if member_rows and (final or len(member_rows) >= CHUNK):
                conn.execute(target_group_members.insert(), member_rows)
                member_rows.clear()
            if supp_rows and (final or len(supp_rows) >= CHUNK):
                conn.execute(suppression.insert(), supp_rows)
                supp_rows.clear()

        for customer in demo_customers(customers, rng, now):
            pk = customer.row["customer_pk"]
            cust_rows.append(customer.row)
            for group in customer.groups:
                member_rows.append({"target_group": group, "customer_pk": pk})
                group_counts[group] += 1
            if customer.suppression is not None:
                supp_rows.append(customer.suppression)
                n_suppressed += 1
            if customer.flaw is not None:
                flaws[customer.flaw] += 1
            if len(cust_rows) >= CHUNK or len(member_rows) >= CHUNK:
                flush()
                if progress is not None:
                    progress(pk)
        flush(final=True)
        if progress is not None and customers:
            progress(customers)
        _sync_pk_sequence(conn)

        campaign_rows = plan_campaigns(days=days, today=today, now=now, rng=rng, past_days=past_days)
        if campaign_rows:
            conn.execute(campaign_schedule.insert(), campaign_rows)
        _analyze(conn, schema.OPTIMOVE_TABLES)

    per_day: dict[dt.date, int] = {}
    for row in campaign_rows:
        per_day[row["send_date"]] = per_day.get(row["send_date"], 0) + 1
    return SeedSummary(
        customers=customers,
        null_emails=flaws[NULL_EMAIL],
        blank_emails=flaws[BLANK_EMAIL],
        malformed_emails=flaws[MALFORMED_EMAIL],
        case_duplicates=flaws[CASE_DUPLICATE],
        target_groups=group_counts,
        suppressed=n_suppressed,
        campaigns=len(campaign_rows),
        campaigns_per_day=per_day,
        seconds=time.perf_counter() - started,
        url=engine.url.render_as_string(hide_password=True),
        campaign_ids=tuple(r["campaign_id"] for r in campaign_rows),
    )


# ------------------------------------------------------------------------------------------------
# small helpers for tests
# ------------------------------------------------------------------------------------------------
def add_customers(
    engine: Engine, rows: Iterable[dict], groups: Iterable[str] = ("all_customers",)
) -> list[int]:
    """Insert customers (dicts of demo-table columns) into ``groups``; returns their customer_pk."""
    groups = list(dict.fromkeys(groups))
    rows = list(rows)
    if not rows:
        return []
    pks: list[int] = []
    with engine.begin() as conn:
        for start in range(0, len(rows), CHUNK):
            chunk = rows[start : start + CHUNK]
            explicit = [r for r in chunk if r.get("customer_pk") is not None]
            if len(explicit) == len(chunk):
                conn.execute(customers.insert(), chunk)
                chunk_pks = [int(r["customer_pk"]) for r in chunk]
            else:
                result = conn.execute(
                    customers.insert().returning(customers.c.customer_pk, sort_by_parameter_order=True),
                    [{k: v for k, v in r.items() if k != "customer_pk" or v is not None} for r in chunk],
                )
                chunk_pks = [int(pk) for pk in result.scalars().all()]
            if groups:
                conn.execute(
                    target_group_members.insert(),
                    [{"target_group": g, "customer_pk": pk} for pk in chunk_pks for g in groups],
                )
            pks.extend(chunk_pks)
        _sync_pk_sequence(conn)
    return pks


def add_campaign(engine: Engine, **fields: Any) -> str:
    """Insert one campaign_schedule row; ``template_ids`` may be a string or a sequence."""
    values = {
        "name": fields.get("campaign_id", ""),
        "send_time": "09:00",
        "time_zone": "UTC",
        "target_group": "all_customers",
        "status": "SCHEDULED",
        **fields,
    }
    templates = values.get("template_ids")
    if templates is not None and not isinstance(templates, str):
        values["template_ids"] = ",".join(str(t) for t in templates)
    missing = [k for k in ("campaign_id", "send_date", "template_ids") if values.get(k) in (None, "")]
    if missing:
        raise ValueError(f"add_campaign needs {', '.join(missing)}")
    with engine.begin() as conn:
        conn.execute(campaign_schedule.insert().values(**values))
    return values["campaign_id"]


def add_suppression(
    engine: Engine, identifier: str, reason: str = "unsubscribed", added_at: dt.datetime | None = None
) -> None:
    with engine.begin() as conn:
        conn.execute(
            suppression.insert().values(
                identifier=identifier, reason=reason, added_at=added_at or dt.datetime.now(dt.timezone.utc)
            )
        )


# ------------------------------------------------------------------------------------------------
# command line
# ------------------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="cheetah-seed", description="Fill a customer database with deterministic demo data."
    )
    parser.add_argument(
        "--url", default=None, help="SQLAlchemy URL (default: $CUSTOMER_DB_URL or the embedded SQLite file)"
    )
    parser.add_argument("--customers", type=int, default=5_000)
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--today", type=dt.date.fromisoformat, default=None, help="first day (YYYY-MM-DD)")
    parser.add_argument("--past-days", type=int, default=0, help="also campaigns on this many days before --today")
    parser.add_argument("--reset", action="store_true", help="DROP and recreate the demo tables first")
    args = parser.parse_args(argv)

    url = args.url or default_url()
    shown = safe_url(url)
    engine = engine_for(url, create=True)  # the seed command creates the demo database it fills
    width = max(1, int(math.log10(max(args.customers, 1))) + 1)

    def report(n: int) -> None:
        print(f"\r  customers written: {n:>{width},}", end="", file=sys.stderr, flush=True)

    print(f"seeding {shown} ...", file=sys.stderr)
    try:
        summary = seed_demo(
            engine,
            customers=args.customers,
            days=args.days,
            today=args.today,
            seed=args.seed,
            progress=report,
            reset=args.reset,
            past_days=args.past_days,
        )
    except SeedError as exc:
        print(f"\ncheetah-seed: {exc}", file=sys.stderr)
        return 2
    except sa.exc.SQLAlchemyError as exc:  # the message of a DBAPI error may echo the URL: keep it short
        cause = getattr(exc, "orig", None) or exc
        print(f"\ncheetah-seed: database error on {shown}: {type(cause).__name__}", file=sys.stderr)
        return 1
    print(file=sys.stderr)
    print("\n".join(summary.lines()))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
