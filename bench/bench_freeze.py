"""Benchmark: freezing a recipient list in the database vs. a raw scan, today's streaming freeze
and a naive pandas read, on SQLite and on PostgreSQL.

    python bench/bench_freeze.py                        # 1,000,000 customers, SQLite and PostgreSQL
    python bench/bench_freeze.py --customers 200000 --backends sqlite --no-tracemalloc

Seeds N demo customers into a temporary SQLite file and into a PostgreSQL database of its own
(``cheetah_bench_freeze`` on the server of CHEETAH_TEST_PG_URL, default
postgresql://postgres@127.0.0.1:5432/test; dropped afterwards unless --keep), then measures, each
in its own fresh process (so one approach's memory cannot hide in another's high-water mark):

(raw)    the raw limit: one SQL scan of the same rows (the identifier and the Data Map fields of
         the target group's members), fetched to Python and thrown away;
(naive)  ``pandas.read_sql`` of the whole customers table (plus the group's members and the
         suppression list), then filtering, suppression and de-duplication in pandas, and the
         template split. It does NOT write the list anywhere, which flatters it;
(stream) today's freeze: ``freeze_recipient_list(..., in_database=False)``, selection in SQL, the
         rows streamed through Python in chunks (template split, attrs JSON) and inserted back;
(freeze) ``freeze_recipient_list``: one INSERT ... SELECT, no row through Python;
(select) the freeze's own statements without the write: its counts, and its INSERT's SELECT
         (normalisation, suppression, de-duplication, template split, attrs JSON), every column's
         length summed in the database. It writes nothing: what a freeze costs before a single row is stored, the
         floor of any list that is stored at all.

For each: wall time and peak RSS (growth over the process's RSS after imports), the median of
--repeat runs (3 by default; each freeze writes a list of its own), then, in a further run, the
peak Python allocation under tracemalloc (slower; skip with --no-tracemalloc).
The stream and the freeze must write the same list (identifiers, templates, attrs compared in
SQL); all must select the same number of recipients.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

FIELDS = {"FNAME": "first_name", "LNAME": "last_name", "FAV_DEPT": "fav_dept", "CITY": "city"}
TEMPLATES = ["1001", "1003"]
GROUP = "all_customers"
APPROACHES = ("raw", "naive", "stream", "freeze", "select")
PG_DATABASE = "cheetah_bench_freeze"
SEND_DATE = dt.date(2025, 11, 24)


def _rss_now_kib() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def _naive(url: str) -> int:
    import pandas as pd
    import sqlalchemy as sa

    from cheetah_assets.customers import schema
    from cheetah_assets.customers.queries import template_for

    engine = sa.create_engine(url)
    with engine.connect() as conn:
        customers = pd.read_sql(sa.select(schema.customers), conn)
        members = pd.read_sql(
            sa.select(schema.target_group_members.c.customer_pk).where(
                schema.target_group_members.c.target_group == GROUP
            ),
            conn,
        )
        suppressed = pd.read_sql(sa.select(schema.suppression.c.identifier), conn)
    df = customers.merge(members, on="customer_pk")
    ident = df["email"].str.strip(" ")
    df = df.assign(ident=ident)[ident.notna() & (ident != "")]
    df = df.assign(norm=df["ident"].str.lower())
    blocked = set(suppressed["identifier"].dropna().str.strip(" ").str.lower())
    df = df[~df["norm"].isin(blocked)]
    df = df.sort_values("customer_pk").drop_duplicates("norm", keep="first")
    df = df.assign(template_id=[template_for(i, TEMPLATES) for i in df["ident"]])
    engine.dispose()
    return len(df)


def _raw(url: str) -> int:
    import sqlalchemy as sa

    from cheetah_assets.customers import schema
    from cheetah_assets.customers.engines import engine_for

    c, m = schema.customers, schema.target_group_members
    stmt = sa.select(c.c.email, *[c.c[col] for col in FIELDS.values()]).join(
        m, sa.and_(m.c.customer_pk == c.c.customer_pk, m.c.target_group == GROUP)
    )
    rows = 0
    with engine_for(url).connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=10_000).execute(stmt)
        for part in result.partitions(10_000):
            rows += len(part)
    return rows


def _select(url: str) -> int:
    import sqlalchemy as sa

    from cheetah_assets.customers.engines import engine_for
    from cheetah_assets.customers.freeze import pg_freeze_settings
    from cheetah_assets.customers.freeze_sql import field_texts, insert_statement, selection
    from cheetah_assets.customers.identifiers import ensure_sql_function
    from cheetah_assets.customers.recipients import reflect_customers
    from cheetah_assets.customers.sqlite_norm import sqlite_text_is_utf8

    engine = engine_for(url)
    ensure_sql_function(engine)
    customers = reflect_customers(engine, "customers")
    texts = field_texts(customers, list(FIELDS.values()), engine.dialect)
    chosen = selection(customers, target_group=GROUP, identifier_column="email", field_exprs=texts,
                       dialect=engine.dialect.name, field_names=list(FIELDS))
    utf8 = sqlite_text_is_utf8(engine)
    rows = insert_statement("BENCH-select", chosen.kept, TEMPLATES, list(FIELDS), engine.dialect.name,
                            sqlite_utf8=utf8).select
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":  # as the freeze's transaction does
            pg_freeze_settings(conn)
        for stmt in chosen.setup:  # SQLite: the members' table (a write, but not of the list)
            conn.execute(stmt)
        conn.execute(chosen.counts).one()
        for stmt in chosen.prune:
            conn.execute(stmt)
        # Every column's length summed, so that no database skips computing one (a bare count(*)
        # lets both planners drop the template hash and the attrs JSON); a sum of lengths costs
        # less than max(), whose text comparisons would be counted against the freeze.
        sub = rows.subquery()
        row = conn.execute(sa.select(sa.func.count(), *[sa.func.sum(sa.func.length(c)) for c in sub.c])).one()
        return int(row[0])


def _freeze(url: str, tag: str, in_database: bool = True) -> int:
    from cheetah_assets.customers.queries import freeze_recipient_list
    from cheetah_assets.customers.engines import engine_for

    result = freeze_recipient_list(
        engine_for(url),
        campaign_id=f"BENCH-{tag}",
        send_date=SEND_DATE,
        target_group=GROUP,
        identifier_column="email",
        fields=FIELDS,
        template_ids=TEMPLATES,
        in_database=in_database,
    )
    return result.row_count


def child(approach: str, url: str, measure: str, tag: str) -> None:
    import pandas  # noqa: F401 - imports are not what is measured
    import sqlalchemy  # noqa: F401

    import cheetah_assets.customers.queries  # noqa: F401
    import cheetah_assets.customers.resource  # noqa: F401 - imports dagster: not part of the measure

    rss_before = _rss_now_kib()
    if measure == "tracemalloc":
        import tracemalloc

        tracemalloc.start()
        traced_before = tracemalloc.get_traced_memory()[0]
    started = time.perf_counter()
    if approach == "naive":
        rows = _naive(url)
    elif approach == "raw":
        rows = _raw(url)
    elif approach == "select":
        rows = _select(url)
    else:
        rows = _freeze(url, f"{approach}-{tag}", in_database=approach == "freeze")
    seconds = time.perf_counter() - started
    out = {"rows": rows, "seconds": seconds}
    if measure == "tracemalloc":
        out["traced_peak_mib"] = (tracemalloc.get_traced_memory()[1] - traced_before) / 2**20
    else:
        peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        out["rss_peak_mib"] = peak_kib / 1024
        out["rss_growth_mib"] = (peak_kib - rss_before) / 1024
    print(json.dumps(out))


def _run_child(approach: str, url: str, measure: str, tag: str) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", approach, "--url", url, "--measure", measure,
           "--tag", tag]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"{approach}/{measure} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--backends", default="sqlite,postgresql", help="comma-separated: sqlite, postgresql")
    parser.add_argument("--no-tracemalloc", action="store_true", help="skip the (slow) tracemalloc runs")
    parser.add_argument(
        "--keep", metavar="DIR", help="seed into DIR/bench.db and keep it (reused if present)"
    )
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of each approach (its median time is the one compared; default 3)")
    parser.add_argument("--child", choices=APPROACHES, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--measure", default="rss", help=argparse.SUPPRESS)
    parser.add_argument("--tag", default="x", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.url, args.measure, args.tag)
        return 0

    from bench.machine import speed_line

    print(speed_line(), flush=True)
    results = {}
    for backend in args.backends.split(","):
        with _database(backend, args) as url:
            results[backend] = _measure(backend, url, args)
    print()
    print(speed_line(), "(at the end)")
    failed = False
    for backend, r in results.items():
        if r is None:
            failed = True
            continue
        raw, stream, freeze = r["raw"]["seconds"], r["stream"]["seconds"], r["freeze"]["seconds"]
        select = r["select"]["seconds"]
        print(f"SUMMARY {backend}: {r['freeze']['rows']:,} recipients; freeze {freeze:.2f}s = "
              f"{freeze / raw:.2f}x the raw scan ({raw:.2f}s; goal <= 2x), "
              f"{stream / freeze:.1f}x faster than the streamed freeze ({stream:.2f}s; goal >= 10x), "
              f"{r['naive']['seconds'] / freeze:.1f}x faster than the naive read ({r['naive']['seconds']:.2f}s); "
              f"its statements without the write alone take {select:.2f}s = {select / raw:.2f}x the raw scan, "
              f"the write {max(freeze - select, 0.0):.2f}s")
    return 1 if failed else 0


@contextmanager
def _database(backend: str, args):
    """A seeded database of ``backend`` (reused when --keep holds one), and its URL."""
    from cheetah_assets.customers.engines import dispose_engine, engine_for

    if backend == "sqlite":
        tmp = None
        if args.keep:
            os.makedirs(args.keep, exist_ok=True)
            path = os.path.join(args.keep, "bench.db")
        else:
            tmp = tempfile.TemporaryDirectory(prefix="bench_freeze_")
            path = os.path.join(tmp.name, "bench.db")
        url = f"sqlite:///{path}"
        try:
            if not os.path.exists(path):
                _seed(engine_for(url, create=True), args.customers, path)
                dispose_engine(url)
            print(f"database file: {os.path.getsize(path) / 2**20:.0f} MiB", flush=True)
            yield url
        finally:
            if tmp is not None:
                tmp.cleanup()
        return

    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool

    from cheetah_assets.customers.engines import with_shipped_driver

    server = with_shipped_driver(sa.make_url(os.environ.get("CHEETAH_TEST_PG_URL") or "postgresql://postgres@127.0.0.1:5432/test"))
    admin = sa.create_engine(server, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    url = server.set(database=PG_DATABASE).render_as_string(hide_password=False)
    with admin.connect() as conn:
        exists = conn.exec_driver_sql(f"SELECT 1 FROM pg_database WHERE datname = '{PG_DATABASE}'").scalar()
        if exists and not args.keep:
            conn.exec_driver_sql(f"DROP DATABASE {PG_DATABASE}")
            exists = None
        if not exists:
            conn.exec_driver_sql(f"CREATE DATABASE {PG_DATABASE} ENCODING 'UTF8' TEMPLATE template0")
    try:
        if not exists:
            _seed(engine_for(url), args.customers, f"PostgreSQL database {PG_DATABASE}")
            dispose_engine(url)
            with sa.create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT").connect() as conn:
                conn.exec_driver_sql("VACUUM ANALYZE")
        yield url
    finally:
        dispose_engine(url)
        if not args.keep:
            with admin.connect() as conn:
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {PG_DATABASE} WITH (FORCE)")
        admin.dispose()


def _seed(engine, customers: int, where: str) -> None:
    from cheetah_assets.customers.seed import seed_demo

    print(f"seeding {customers:,} customers into {where} ...", flush=True)
    summary = seed_demo(engine, customers=customers, days=1)
    print(f"  seeded in {summary.seconds:.1f}s ({summary.customers / summary.seconds:,.0f} customers/s)", flush=True)


def _same_list(url: str) -> str | None:
    """None if the streamed and the in-database freeze wrote the same list, else what differs."""
    import sqlalchemy as sa

    from cheetah_assets.customers.engines import dispose_engine, engine_for
    from cheetah_assets.customers.queries import list_key

    a, b = (list_key(f"BENCH-{approach}-rss", SEND_DATE) for approach in ("stream", "freeze"))
    engine = engine_for(url)
    same_attrs = "json(s.attrs) = json(f.attrs)" if engine.dialect.name == "sqlite" else (
        "CAST(s.attrs AS jsonb) = CAST(f.attrs AS jsonb)"
    )
    with engine.connect() as conn:
        n = {k: conn.execute(sa.text("SELECT count(*) FROM cheetah_recipient WHERE list_key = :k"), {"k": k}).scalar()
             for k in (a, b)}
        same = conn.execute(sa.text(
            "SELECT count(*) FROM cheetah_recipient s JOIN cheetah_recipient f ON f.identifier = s.identifier "
            f"WHERE s.list_key = :a AND f.list_key = :b AND s.template_id = f.template_id AND {same_attrs}"
        ), {"a": a, "b": b}).scalar()
    dispose_engine(url)
    if not (n[a] == n[b] == same):
        return f"stream wrote {n[a]:,} rows, freeze {n[b]:,}, identical {same:,}"
    return None


def _measure(backend: str, url: str, args) -> dict | None:
    print(f"--- {backend}", flush=True)
    results = {}
    for approach in APPROACHES:
        runs = [_run_child(approach, url, "rss", "rss" if i == 0 else f"rss{i}") for i in range(args.repeat)]
        r = dict(runs[0])  # rows, and the lists compared below, from the first run
        r["seconds"] = statistics.median(x["seconds"] for x in runs)
        r["all_seconds"] = [x["seconds"] for x in runs]
        r["rss_peak_mib"] = max(x["rss_peak_mib"] for x in runs)
        r["rss_growth_mib"] = max(x["rss_growth_mib"] for x in runs)
        if len({x["rows"] for x in runs}) != 1:
            print(f"MISMATCH: {approach} selected {[x['rows'] for x in runs]} in its runs")
            return None
        if not args.no_tracemalloc:
            r.update({k: v for k, v in _run_child(approach, url, "tracemalloc", "tm").items()
                      if k == "traced_peak_mib"})
        results[approach] = r
        times = "" if args.repeat == 1 else f" (median of {', '.join(f'{x:.2f}' for x in r['all_seconds'])})"
        line = (f"{approach:>7}: {r['rows']:,} rows in {r['seconds']:.2f}s{times}, "
                f"peak RSS {r['rss_peak_mib']:.0f} MiB (+{r['rss_growth_mib']:.0f} MiB over imports)")
        if "traced_peak_mib" in r:
            line += f", peak Python allocation (tracemalloc) {r['traced_peak_mib']:.1f} MiB"
        print(line, flush=True)

    picked = {a: results[a]["rows"] for a in ("naive", "stream", "freeze", "select")}
    if len(set(picked.values())) != 1:
        print(f"MISMATCH: recipients selected {picked}")
        return None
    differs = _same_list(url)
    if differs:
        print(f"MISMATCH between the streamed and the in-database list: {differs}")
        return None
    freeze, raw = results["freeze"], results["raw"]
    print("same list written by the stream and the freeze (identifiers, templates, attrs)")
    print(f"time ratio freeze / raw scan:      {freeze['seconds'] / raw['seconds']:.2f}x")
    print(f"time ratio stream / freeze:        {results['stream']['seconds'] / freeze['seconds']:.1f}x")
    print(f"time ratio naive / freeze:         {results['naive']['seconds'] / freeze['seconds']:.1f}x")
    print(f"time ratio select / raw scan:      {results['select']['seconds'] / raw['seconds']:.2f}x "
          "(the freeze's statements, nothing written)")
    print(f"peak RSS growth ratio naive / freeze: "
          f"{results['naive']['rss_growth_mib'] / max(freeze['rss_growth_mib'], 0.1):.1f}x")
    print(f"(raw: {raw['rows']:,} member rows scanned; the naive run only selects; the stream and the "
          "freeze also write the list to cheetah_recipient)")
    return results


if __name__ == "__main__":
    sys.exit(main())
