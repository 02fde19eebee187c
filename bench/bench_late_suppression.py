"""What the late-suppression check (``sending/late_suppression.py``) costs per tick.

    python bench/bench_late_suppression.py [--backend sqlite|postgresql|both] [--recipients 1000000]
                                           [--sends 200] [--suppressed 19428]

Sets up a customer database (a temporary SQLite file, or a fresh PostgreSQL database) holding,
written directly (no freeze): one frozen list of ``--recipients`` recipients and ``--sends - 1``
lists of 5,000, each handed over (ledger APPROVED) with its send time ahead; and a suppression
list of ``--suppressed`` entries (mixed case, a tenth of them recipients of the big list). Then it
times :func:`check` as the preparation sensor calls it:

* **first check**: the copy of the suppression list made (every entry normalised once), and every
  send checked whole (each entry looked up in its list's key);
* **quiet tick**: nothing came or went (the steady state);
* **one unsubscribe**: one new entry, on the big list;
* **a new send handed over**: one more send of 5,000, checked whole, the others not;
* **the baseline**: what a check without the copy would do on every tick: the suppression list
  normalised and joined to every send's list key.

Best of ``--repeat`` for the repeatable ones. Prints the machine's speed first (``machine.py``).
No assertion: a measurement.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sqlalchemy as sa  # noqa: E402

from bench.machine import speed_line  # noqa: E402
from cheetah_assets.customers.engines import engine_for  # noqa: E402
from cheetah_assets.customers.freeze_sql import suppressed_norms  # noqa: E402
from cheetah_assets.customers.identifiers import ensure_sql_function  # noqa: E402
from cheetah_assets.customers.schema import (  # noqa: E402
    create_demo_tables, create_integration_tables, recipient, send_ledger, suppression,
)
from cheetah_assets.sending.late_suppression import check  # noqa: E402

NOW = dt.datetime(2026, 12, 8, 7, 0, tzinfo=dt.timezone.utc)
DAY = NOW.date()


def _seed(engine, recipients: int, sends: int, suppressed: int) -> None:
    create_demo_tables(engine)
    create_integration_tables(engine)
    if engine.dialect.name == "postgresql":
        ensure_sql_function(engine)
    lists = [("BIG", recipients)] + [(f"C{i:04d}", 5_000) for i in range(sends - 1)]
    with engine.begin() as conn:
        for campaign, n in lists:
            key = f"{campaign}/{DAY}"
            rows = [{"list_key": key, "identifier": f"{campaign.lower()}.user{i:07d}@example.com", "template_id": "1002",
                     "attrs": "{}"} for i in range(n)]
            for start in range(0, n, 50_000):
                conn.execute(recipient.insert(), rows[start:start + 50_000])
            conn.execute(send_ledger.insert().values(
                send_key=f"{campaign}/1002/{DAY}", campaign_id=campaign, template_id="1002", send_date=DAY, list_key=key,
                cheetah_name=f"OPT-{campaign}-1002-{DAY:%Y%m%d}", state="APPROVED", send_at=NOW + dt.timedelta(hours=4),
                rows_in_list=n, rows_accepted=n, rows_rejected=0, created_at=NOW, updated_at=NOW))
        step = max(1, recipients // max(1, suppressed // 10))
        entries = {f"BIG.USER{i:07d}@Example.com" for i in range(0, recipients, step)}
        entries |= {f"Gone{i:06d}@Elsewhere.example" for i in range(suppressed - len(entries))}
        conn.execute(suppression.insert(), [{"identifier": e, "reason": "unsubscribed", "added_at": NOW} for e in entries])
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("VACUUM ANALYZE")


def _timed(fn, repeat: int = 1) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - started)
    return best, result


def _baseline(engine) -> int:
    """Every tick without the copy: the suppression list normalised, joined to every send's list key."""
    norms = suppressed_norms(engine.dialect.name).subquery()
    with engine.connect() as conn:
        keys = list(conn.execute(sa.select(send_ledger.c.list_key)).scalars())
        return sum(
            len(conn.execute(sa.select(recipient.c.identifier).join(
                norms, sa.and_(recipient.c.list_key == key, recipient.c.identifier == norms.c.norm))).all())
            for key in keys
        )


def _measure(engine, args) -> None:
    started = time.perf_counter()
    _seed(engine, args.recipients, args.sends, args.suppressed)
    print(f"  seeded in {time.perf_counter() - started:.1f}s")
    first, found = _timed(lambda: check(engine, NOW))
    print(f"  first check (copy made: {found.came:,} entries normalised; {found.whole} sends checked whole; "
          f"{sum(found.found.values()):,} found): {first * 1000:.0f} ms")
    quiet, found = _timed(lambda: check(engine, NOW + dt.timedelta(minutes=1)), args.repeat)
    print(f"  quiet tick ({found.checked} sends ahead, nothing came): {quiet * 1000:.1f} ms")

    def one_more():
        n = one_more.n = getattr(one_more, "n", 0) + 1
        with engine.begin() as conn:
            conn.execute(suppression.insert().values(identifier=f"big.user{2 * n + 1:07d}@example.com", reason="unsubscribed"))
        return check(engine, NOW + dt.timedelta(minutes=1 + n))

    one, found = _timed(one_more, args.repeat)
    print(f"  one unsubscribe (came {found.came}, found {sum(found.found.values())}): {one * 1000:.1f} ms")
    with engine.begin() as conn:
        key = f"NEW/{DAY}"
        conn.execute(recipient.insert(), [{"list_key": key, "identifier": f"new.user{i:07d}@example.com",
                                           "template_id": "1002", "attrs": "{}"} for i in range(5_000)])
        conn.execute(send_ledger.insert().values(
            send_key=f"NEW/1002/{DAY}", campaign_id="NEW", template_id="1002", send_date=DAY, list_key=key,
            cheetah_name=f"OPT-NEW-1002-{DAY:%Y%m%d}", state="APPROVED", send_at=NOW + dt.timedelta(hours=4),
            rows_in_list=5_000, rows_accepted=5_000, rows_rejected=0, created_at=NOW, updated_at=NOW))
    new, found = _timed(lambda: check(engine, NOW + dt.timedelta(minutes=30)))
    print(f"  a new send handed over ({found.whole} checked whole): {new * 1000:.1f} ms")
    base, hits = _timed(lambda: _baseline(engine), args.repeat)
    print(f"  baseline, every tick (suppression list normalised and joined to {args.sends + 1} list keys; "
          f"{hits:,} hits): {base * 1000:.0f} ms")


@contextlib.contextmanager
def _database(backend: str):
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            yield engine_for(f"sqlite:///{folder}/customers.db", create=True)
        return
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from cheetah_assets_tests.pg import fresh_postgres_database

    with fresh_postgres_database("cheetah_bench") as url:
        yield engine_for(url)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--recipients", type=int, default=1_000_000)
    parser.add_argument("--sends", type=int, default=200)
    parser.add_argument("--suppressed", type=int, default=19_428)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    print(speed_line())
    for backend in (["sqlite", "postgresql"] if args.backend == "both" else [args.backend]):
        print(f"{backend}: a list of {args.recipients:,} and {args.sends - 1} of 5,000, handed over; "
              f"{args.suppressed:,} suppression entries")
        with _database(backend) as engine:
            _measure(engine, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
