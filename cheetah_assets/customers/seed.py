"""Demo data for the Optimove-side tables: customers, target groups, suppression, campaigns.

Deterministic from ``seed``: the same arguments give the same database. The customers carry the
data-quality problems the send path must cope with: NULL, blank and malformed e-mail addresses,
and duplicates of an address differing only in case (or surrounding spaces).

``cheetah-seed --url sqlite:///demo.db --customers 100000 --days 3 [--reset]`` seeds from the
command line. ``--reset`` DROPS the demo tables (customers, target_group_members,
campaign_schedule, suppression) first: never point it at a real customer database.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import random
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from . import schema
from .schema import campaign_schedule, customers, suppression, target_group_members

CHUNK = 50_000

TARGET_GROUPS = {  # group -> share of customers
    "all_customers": 1.0,
    "vip": 0.10,
    "winter_shoppers": 0.30,
    "new_signups": 0.05,
}
TIME_ZONES = ("UTC", "Europe/London", "America/New_York")
TEMPLATE_IDS = ("1001", "1002", "1003", "1004", "1005", "1006")
LATER_DAY_TIMES = ("09:00", "13:30", "18:00")
TWO_TEMPLATES = "1001,1003"

_THEMES = {
    "1001": "Winter sale",
    "1002": "Welcome",
    "1003": "Winter sale B",
    "1004": "Newsletter",
    "1005": "Weekend offers",
    "1006": "Local events",
}
_GROUP_LABELS = {
    "all_customers": "everyone",
    "vip": "VIP",
    "winter_shoppers": "winter shoppers",
    "new_signups": "new sign-ups",
}
FIRST_NAMES = (
    "Olivia", "Liam", "Emma", "Noah", "Amelia", "Oliver", "Ava", "Elijah", "Sophia", "Lucas",
    "Isabella", "Mateo", "Mia", "Levi", "Charlotte", "Ethan", "Harper", "James", "Evelyn", "Leo",
    "Chloé", "Zoë", "José", "Aoife", "Siobhán", "Björn", "Anaïs", "Renée", "Mohammed", "Fatima",
    "Wei", "Yuki", "Priya", "Arjun", "Kwame", "Amara", "Sven", "Ingrid", "Luca", "Giulia",
    "Hannah", "Jacob", "Grace", "Daniel", "Ella", "Samuel", "Lily", "David", "Nora", "Henry",
)
LAST_NAMES = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez",
    "Martinez", "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor",
    "Moore", "Jackson", "Martin", "Lee", "Perez", "Thompson", "White", "Harris", "Clark",
    "O'Brien", "McCarthy", "Müller", "Schmidt", "Dubois", "Lefèvre", "Rossi", "Bianchi",
    "Nakamura", "Kim", "Singh", "Patel", "Nguyen", "Okafor", "Kowalski", "Novak", "Jensen",
    "Larsen", "de la Cruz", "van der Berg", "Ó Súilleabháin", "Walker", "Young", "King",
)
DEPARTMENTS = (
    "Womenswear", "Menswear", "Kids", "Shoes", "Home", "Beauty", "Electronics", "Sports",
    "Outdoor", "Toys", "Garden", "Books",
)
CITIES = (
    "London", "Manchester", "Leeds", "Glasgow", "Dublin", "New York", "Boston", "Chicago",
    "Toronto", "Paris", "Lyon", "Berlin", "Munich", "Amsterdam", "Madrid", "Barcelona",
    "Rome", "Milan", "Stockholm", "Copenhagen",
)
DOMAINS = ("example.com", "example.org", "example.net", "mail.example", "shop.example")


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
# campaigns
# ------------------------------------------------------------------------------------------------
def _ceil_minutes(when: dt.datetime, step: int = 5) -> dt.datetime:
    if when.second or when.microsecond:
        when = when.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
    extra = (-when.minute) % step
    return when + dt.timedelta(minutes=extra)


def plan_campaigns(
    *, days: int, today: dt.date, now: dt.datetime, rng: random.Random
) -> list[dict[str, Any]]:
    """The demo schedule: 2-4 campaigns a day over ``days`` days starting ``today``.

    Today's campaigns go out at least 60 minutes after ``now`` (in their own time zone; if that is
    already tomorrow there, ``send_date`` is tomorrow: it is always the local date of the send).
    Later days send at 09:00, 13:30 and 18:00 local time. One campaign a day uses two templates.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    rows: list[dict[str, Any]] = []
    groups = list(TARGET_GROUPS)
    for day_index in range(days):
        nominal = today + dt.timedelta(days=day_index)
        count = rng.randint(2, 4)
        two_template_slot = rng.randrange(count)
        for n in range(count):
            tz_name = TIME_ZONES[(day_index + n) % len(TIME_ZONES)]
            if day_index == 0:
                local = _ceil_minutes(now.astimezone(ZoneInfo(tz_name)) + dt.timedelta(minutes=60 + 15 * n))
                send_date, send_time = local.date(), local.strftime("%H:%M")
            else:
                send_date, send_time = nominal, LATER_DAY_TIMES[n % len(LATER_DAY_TIMES)]
            templates = TWO_TEMPLATES if n == two_template_slot else rng.choice(TEMPLATE_IDS)
            group = "all_customers" if n == two_template_slot else rng.choice(groups)
            theme = _THEMES[templates.split(",")[0]]
            if n == two_template_slot:
                theme = "Winter sale A/B"
            rows.append(
                dict(
                    campaign_id=f"C{nominal:%Y%m%d}-{n + 1}",
                    name=f"{theme} for {_GROUP_LABELS[group]} ({send_date:%d %b})",
                    send_date=send_date,
                    send_time=send_time,
                    time_zone=tz_name,
                    template_ids=templates,
                    target_group=group,
                    status="SCHEDULED",
                )
            )
    return rows


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
) -> SeedSummary:
    """Create the demo and integration tables and fill the demo ones.

    Refuses (:class:`SeedError`) when a demo table already holds rows, unless ``reset=True``,
    which drops and recreates the demo tables (never the integration's cheetah_* tables).
    """
    started = time.perf_counter()
    if customers < 0 or days < 0:
        raise ValueError("customers and days must not be negative")
    now = now or dt.datetime.now(dt.timezone.utc)
    if now.tzinfo is None:
        now = now.replace(tzinfo=dt.timezone.utc)
    today = today or now.astimezone(dt.timezone.utc).date()
    rng = random.Random(seed)

    if reset:
        schema.metadata.drop_all(engine, tables=list(schema.OPTIMOVE_TABLES))
    schema.create_demo_tables(engine)
    schema.create_integration_tables(engine)

    n_null = n_blank = n_malformed = n_dupes = n_suppressed = 0
    group_counts = dict.fromkeys(TARGET_GROUPS, 0)
    recent: deque[str] = deque(maxlen=500)  # recent good addresses, to make case duplicates from

    customers_table = schema.customers
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
        supp_seen: set[str] = set()

        def flush(final: bool = False) -> None:
            if cust_rows and (final or len(cust_rows) >= CHUNK):
                conn.execute(customers_table.insert(), cust_rows)
                cust_rows.clear()
            if member_rows and (final or len(member_rows) >= CHUNK):
                conn.execute(target_group_members.insert(), member_rows)
                member_rows.clear()
            if supp_rows and (final or len(supp_rows) >= CHUNK):
                conn.execute(suppression.insert(), supp_rows)
                supp_rows.clear()

        group_shares = [(g, share) for g, share in TARGET_GROUPS.items() if g != "all_customers"]
        for pk in range(1, customers + 1):
            first = rng.choice(FIRST_NAMES)
            last = rng.choice(LAST_NAMES)
            local = "".join(
                ch for ch in f"{first}.{last}".lower() if ch.isascii() and (ch.isalnum() or ch == ".")
            )
            domain = rng.choice(DOMAINS)
            r = rng.random()
            email: str | None
            if r < 0.010:
                email, n_null = None, n_null + 1
            elif r < 0.015:
                email, n_blank = rng.choice(("", " ", "   ")), n_blank + 1
            elif r < 0.020:
                email, n_malformed = f"{local}{pk}.{domain}", n_malformed + 1
            elif r < 0.030 and recent:
                base = rng.choice(recent)
                variant = rng.randrange(3)
                if variant == 0:
                    email = base.upper()
                elif variant == 1:
                    email = base[:1].upper() + base[1:]
                else:
                    email = f" {base.title()} "
                n_dupes += 1
            else:
                email = f"{local}{pk}@{domain}"
                recent.append(email)
                if rng.random() < 0.02 and email.lower() not in supp_seen:
                    supp_seen.add(email.lower())
                    supp_rows.append(
                        {
                            # Stored in another case now and then: matching is case-insensitive.
                            "identifier": email.upper() if rng.random() < 0.25 else email,
                            "reason": "bounced" if rng.random() < 0.3 else "unsubscribed",
                            "added_at": now,
                        }
                    )
                    n_suppressed += 1
            cust_rows.append(
                {
                    "customer_pk": pk,
                    "email": email,
                    "first_name": first,
                    "last_name": last,
                    "fav_dept": rng.choice(DEPARTMENTS) if rng.random() < 0.95 else None,
                    "city": rng.choice(CITIES),
                    "updated_at": now,
                }
            )
            member_rows.append({"target_group": "all_customers", "customer_pk": pk})
            group_counts["all_customers"] += 1
            for group, share in group_shares:
                if rng.random() < share:
                    member_rows.append({"target_group": group, "customer_pk": pk})
                    group_counts[group] += 1
            if len(cust_rows) >= CHUNK or len(member_rows) >= CHUNK:
                flush()
                if progress is not None:
                    progress(pk)
        flush(final=True)
        if progress is not None and customers:
            progress(customers)
        _sync_pk_sequence(conn)

        campaign_rows = plan_campaigns(days=days, today=today, now=now, rng=rng)
        if campaign_rows:
            conn.execute(campaign_schedule.insert(), campaign_rows)
        _analyze(conn, schema.OPTIMOVE_TABLES)

    per_day: dict[dt.date, int] = {}
    for row in campaign_rows:
        per_day[row["send_date"]] = per_day.get(row["send_date"], 0) + 1
    return SeedSummary(
        customers=customers,
        null_emails=n_null,
        blank_emails=n_blank,
        malformed_emails=n_malformed,
        case_duplicates=n_dupes,
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
    from .resource import default_url, engine_for, safe_url

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
