"""Benchmark: freezing a recipient list in SQL (streamed) vs. loading the customers into pandas.

    python bench/bench_freeze.py                    # 1,000,000 customers
    python bench/bench_freeze.py --customers 200000 --no-tracemalloc

Seeds N demo customers into a temporary SQLite file, then measures, each in its own fresh
process (so one approach's memory cannot hide in the other's high-water mark):

(a) the naive baseline: ``pandas.read_sql`` of the whole customers table (plus the group's
    members and the suppression list), then filtering, suppression and de-duplication in pandas,
    and the template split. It does NOT write the list anywhere, which flatters it.
(b) :func:`cheetah_assets.customers.queries.freeze_recipient_list`: selection, suppression and
    de-duplication in SQL, streamed in chunks and written to ``cheetah_recipient``.

For each: wall time and peak RSS (growth over the process's RSS after imports), then, in a
second run, the peak Python allocation under tracemalloc (slower; skip with --no-tracemalloc).
Both must select the same number of recipients.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

FIELDS = {"FNAME": "first_name", "LNAME": "last_name", "FAV_DEPT": "fav_dept", "CITY": "city"}
TEMPLATES = ["1001", "1003"]
GROUP = "all_customers"
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


def _freeze(url: str, tag: str) -> int:
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
    rows = _naive(url) if approach == "naive" else _freeze(url, tag)
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
    parser.add_argument("--no-tracemalloc", action="store_true", help="skip the (slow) tracemalloc runs")
    parser.add_argument(
        "--keep", metavar="DIR", help="seed into DIR/bench.db and keep it (reused if present)"
    )
    parser.add_argument("--child", choices=("naive", "freeze"), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--measure", default="rss", help=argparse.SUPPRESS)
    parser.add_argument("--tag", default="x", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.url, args.measure, args.tag)
        return 0

    from cheetah_assets.customers.engines import dispose_engine, engine_for
    from cheetah_assets.customers.seed import seed_demo

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
            print(f"seeding {args.customers:,} customers into {path} ...", flush=True)
            summary = seed_demo(engine_for(url, create=True), customers=args.customers, days=1)
            print(f"  seeded in {summary.seconds:.1f}s "
                  f"({summary.customers / summary.seconds:,.0f} customers/s)", flush=True)
            dispose_engine(url)
        print(f"database file: {os.path.getsize(path) / 2**20:.0f} MiB", flush=True)

        results = {}
        for approach in ("naive", "freeze"):
            r = _run_child(approach, url, "rss", "rss")
            if not args.no_tracemalloc:
                r.update({k: v for k, v in _run_child(approach, url, "tracemalloc", "tm").items()
                          if k == "traced_peak_mib"})
            results[approach] = r
            line = (f"{approach:>7}: {r['rows']:,} recipients in {r['seconds']:.2f}s, "
                    f"peak RSS {r['rss_peak_mib']:.0f} MiB (+{r['rss_growth_mib']:.0f} MiB over imports)")
            if "traced_peak_mib" in r:
                line += f", peak Python allocation (tracemalloc) {r['traced_peak_mib']:.1f} MiB"
            print(line, flush=True)

        naive, freeze = results["naive"], results["freeze"]
        if naive["rows"] != freeze["rows"]:
            print(f"MISMATCH: naive selected {naive['rows']:,}, freeze {freeze['rows']:,}")
            return 1
        print(f"time ratio (naive / freeze):            {naive['seconds'] / freeze['seconds']:.2f}x")
        print(f"peak RSS growth ratio (naive / freeze): "
              f"{naive['rss_growth_mib'] / max(freeze['rss_growth_mib'], 0.1):.1f}x")
        if "traced_peak_mib" in naive and "traced_peak_mib" in freeze:
            print(f"peak Python allocation ratio:           "
                  f"{naive['traced_peak_mib'] / freeze['traced_peak_mib']:.1f}x")
        print("(the naive run only selects; the freeze also writes the list to cheetah_recipient)")
        return 0
    finally:
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":
    sys.exit(main())
