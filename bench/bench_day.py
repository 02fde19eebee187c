"""Benchmark: a whole day, N campaigns over M customers, prepared and handed over to Cheetah
Messaging (the simulator), against the raw limit and against today's sequential sends.

    python bench/bench_day.py                                   # 10 campaigns x 20,000 customers, SQLite
    python bench/bench_day.py --campaigns 200 --customers 1000000 --backend sqlite
    python bench/bench_day.py --campaigns 200 --customers 5000000 --backend postgresql
    python bench/bench_day.py --campaigns 200 --customers 5000000 --backend postgresql --audience split

Seeds M demo customers (``cheetah_assets.customers.seed``, as bench_freeze.py does) into a temporary
SQLite file or a PostgreSQL database of its own (``cheetah_bench_day`` on CHEETAH_TEST_PG_URL,
dropped afterwards), and N campaigns, each with one template (every fifth with two). With
``--audience all`` (the default) every campaign goes to all M customers (N x M recipients); with
``--audience split`` the customers are split into N target groups of M/N (customer_pk mod N), one
per campaign, so the day mails the whole base once (about M recipients), as an account's daily
segments do. The simulator runs in a process of its own (``cheetah-sim``), restarted for each run, its
rate limit off. Then, each in a fresh process:

(raw)        the raw limit: for each campaign, one SQL scan of its recipients' identifier and
             Data Map fields, written as CSV and Base64-encoded in blocks, thrown away;
(parallel)   the day as Dagster runs it: ``materialize`` of the send path's four assets (catalog,
             plan, freeze, sends) for the day, ``campaign_sends`` at --concurrency (default 4);
(sequential) the same at concurrency 1: today's approach before parallel sends.

For each run it prints the time of each stage: freeze (wall), then, summed over the send
workers, list read + CSV build, Base64 body build, import upload, the simulator's processing of
the imports (polled; the simulator's own work, shown apart) and create/launch/approve; the sends'
wall time; recipients per second; the peak RSS of the pipeline process and of the simulator
process (VmHWM, each measured alone); the CPU seconds (user + system) of the pipeline process and of
the simulator process over the day; and the ratios of the day against the raw limit (wall time;
and the pipeline's own CPU, the simulator's excluded, against the raw limit's CPU) and of the
parallel day against the sequential one.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import csv
import datetime as dt
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

PG_DATABASE = "cheetah_bench_day"
FIELDS = ["first_name", "last_name", "fav_dept", "city"]
TEMPLATES = ["1001", "1002", "1003", "1004"]
INTEGRATION_TABLES = ["import_rejection", "send_ledger", "recipient", "recipient_list", "campaign_plan", "template_catalog"]


def _cpu_seconds(pid: int | str = "self") -> float:
    """User + system CPU seconds a process has used so far (its threads included)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _hwm_kib(pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))


# ------------------------------------------------------------------------------------ children
def _group(n: int, audience: str) -> str:
    return "all_customers" if audience == "all" else f"segment_{n:04d}"


def _raw(url: str, campaigns: int, audience: str) -> dict:
    """SQL scan + CSV + Base64 of every campaign's recipients, in blocks."""
    import sqlalchemy as sa

    from cheetah_assets.customers import schema
    from cheetah_assets.customers.engines import engine_for

    c, m = schema.customers, schema.target_group_members
    rows = 0
    cpu_started = _cpu_seconds()
    started = time.perf_counter()
    with engine_for(url).connect() as conn:
        for n in range(campaigns):
            stmt = sa.select(c.c.email, *[c.c[col] for col in FIELDS]).join(
                m, sa.and_(m.c.customer_pk == c.c.customer_pk, m.c.target_group == _group(n, audience)))
            buf = io.StringIO()
            writer = csv.writer(buf, lineterminator="\r\n")
            result = conn.execution_options(stream_results=True, yield_per=10_000).execute(stmt)
            for part in result.partitions(10_000):
                writer.writerows(part)
                rows += len(part)
                data = buf.getvalue().encode("utf-8")
                base64.b64encode(data)
                buf.seek(0)
                buf.truncate()
    return {"seconds": time.perf_counter() - started, "rows": rows, "rss_mib": _hwm_kib() / 1024,
            "cpu": _cpu_seconds() - cpu_started}


class _Timer:
    """Summed wall time per stage over every thread (wrappers around the send path's functions)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.sums: dict[str, float] = {}

    def add(self, stage: str, seconds: float) -> None:
        with self.lock:
            self.sums[stage] = self.sums.get(stage, 0.0) + seconds

    def wrap(self, owner, name: str, stage: str) -> None:
        original = getattr(owner, name)

        def timed(*args, **kwargs):
            t = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.add(stage, time.perf_counter() - t)

        setattr(owner, name, timed)

    def wrap_iter(self, owner, name: str, stage: str) -> None:
        original = getattr(owner, name)
        timer = self

        def timed(*args, **kwargs):
            it = iter(original(*args, **kwargs))
            while True:
                t = time.perf_counter()
                try:
                    item = next(it)
                except StopIteration:
                    timer.add(stage, time.perf_counter() - t)
                    return
                timer.add(stage, time.perf_counter() - t)
                yield item

        setattr(owner, name, timed)


def _day(url: str, sim_url: str, day: str, concurrency: int) -> dict:
    """The day through Dagster, in this process, with the send path's stages timed."""
    import dagster as dg

    from cheetah_assets.cheetah import client as client_mod
    from cheetah_assets.cheetah.client import CheetahClient
    from cheetah_assets.cheetah.resource import CheetahMessagingResource
    from cheetah_assets.cheetah.settings import demo_account
    from cheetah_assets.clock import ClockResource
    from cheetah_assets.customers import queries
    from cheetah_assets.customers.resource import CustomerDatabaseResource
    from cheetah_assets.sending import importing
    from cheetah_assets.sending.assets import SEND_ASSETS

    timer = _Timer()
    timer.wrap(queries, "freeze_recipient_list", "freeze")
    timer.wrap_iter(importing, "import_parts", "list read + CSV build")
    local = threading.local()
    original_body, original_start = client_mod.write_import_body, CheetahClient.start_import

    def write_import_body(*args, **kwargs):
        t = time.perf_counter()
        try:
            return original_body(*args, **kwargs)
        finally:
            spent = time.perf_counter() - t
            timer.add("Base64 body build", spent)
            local.body = getattr(local, "body", 0.0) + spent

    def start_import(self, **kwargs):  # the upload: the call less the body build inside it
        local.body, t = 0.0, time.perf_counter()
        try:
            return original_start(self, **kwargs)
        finally:
            timer.add("import upload", time.perf_counter() - t - local.body)

    client_mod.write_import_body = write_import_body
    CheetahClient.start_import = start_import
    timer.wrap(CheetahClient, "wait_for_import", "simulator import processing")
    for name in ("create_campaign", "launch_campaign", "approve_campaign", "get_campaign", "find_campaign"):
        timer.wrap(CheetahClient, name, "create/launch/approve")

    resources = {
        "cheetah": CheetahMessagingResource(endpoint=sim_url, **demo_account(), timeout_seconds=120.0, max_retries=4,
                                            backoff_factor=0.05, import_poll_interval_seconds=0.05,
                                            import_timeout_seconds=3600.0),
        "customer_db": CustomerDatabaseResource(url=url),
        "clock": ClockResource(fixed_now=f"{day}T06:00:00+00:00"),
    }
    config = {"loggers": {"console": {"config": {"log_level": "WARNING"}}},
              "ops": {"campaign_sends": {"config": {"concurrency": concurrency}}}}
    started, cpu_started = time.perf_counter(), _cpu_seconds()
    with dg.instance_for_test() as instance:
        prepared = dg.materialize(SEND_ASSETS[:3], partition_key=day, resources=resources, instance=instance,
                                  run_config={"loggers": config["loggers"]})
        assert prepared.success
        prepare_wall = time.perf_counter() - started
        t = time.perf_counter()
        sent = dg.materialize([SEND_ASSETS[3]], partition_key=day, resources=resources, instance=instance,
                              run_config=config, selection=[SEND_ASSETS[3].key])
        send_wall = time.perf_counter() - t
        assert sent.success, "the sends did not complete"
        md = sent.asset_materializations_for_node("campaign_sends")[0].metadata
    return {
        "prepare_wall": prepare_wall, "send_wall": send_wall, "wall": time.perf_counter() - started,
        "stages": timer.sums, "approved": md["approved"].value, "recipients": md["recipients_accepted"].value,
        "rss_mib": _hwm_kib() / 1024, "cpu": _cpu_seconds() - cpu_started,
    }


def child(argv: list[str]) -> None:
    kind, url = argv[0], argv[1]
    out = _raw(url, int(argv[2]), argv[3]) if kind == "raw" else _day(url, argv[2], argv[3], int(argv[4]))
    print("RESULT " + json.dumps(out), flush=True)


def _run_child(*args: str) -> dict:
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", *args], capture_output=True,
                          text=True, cwd=ROOT)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise SystemExit(f"the {args[0]} child failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")


# ------------------------------------------------------------------------------------ parent
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _simulator(day: dt.date):
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cheetah_assets.simulator", "--port", str(port), "--rate-limit", "0",
         "--now", f"{day.isoformat()}T06:00:00+00:00"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    import requests

    for _ in range(200):
        try:
            requests.get(url + "/_sim/clock", timeout=1)
            break
        except requests.RequestException:
            time.sleep(0.1)
    state = {"url": url, "rss_mib": 0.0, "cpu": 0.0}
    cpu_started = _cpu_seconds(proc.pid)
    try:
        yield state
    finally:
        state["rss_mib"] = _hwm_kib(proc.pid) / 1024
        state["cpu"] = _cpu_seconds(proc.pid) - cpu_started
        proc.terminate()
        proc.wait(timeout=30)


def _seed(url: str, customers: int, campaigns: int, day: dt.date, audience: str) -> None:
    from cheetah_assets.customers import seed
    from cheetah_assets.customers.engines import dispose_engine, engine_for

    engine = engine_for(url, create=url.startswith("sqlite"))
    started = time.perf_counter()
    seed.seed_demo(engine, customers=customers, days=0, today=day,
                   now=dt.datetime.combine(day, dt.time(6), tzinfo=dt.timezone.utc))
    if audience == "split":  # one target group per campaign, each customer in exactly one
        import sqlalchemy as sa

        with engine.begin() as conn:
            conn.execute(sa.text(
                "INSERT INTO target_group_members (target_group, customer_pk) "
                "SELECT 'segment_' || substr('000' || CAST(customer_pk % :n AS TEXT), -4, 4), customer_pk "
                "FROM customers" if engine.dialect.name == "sqlite" else
                "INSERT INTO target_group_members (target_group, customer_pk) "
                "SELECT 'segment_' || lpad((customer_pk % :n)::text, 4, '0'), customer_pk FROM customers"
            ), {"n": campaigns})
            if engine.dialect.name == "postgresql":
                conn.exec_driver_sql("ANALYZE")
    for n in range(campaigns):
        templates = TEMPLATES[n % 4] + ("," + TEMPLATES[(n + 1) % 4] if n % 5 == 4 else "")
        minute = 9 * 60 + n % (14 * 60)  # 09:00 onwards, one a minute
        seed.add_campaign(engine, campaign_id=f"D{n:04d}", name=f"Day campaign {n}", send_date=day,
                          send_time=f"{minute // 60:02d}:{minute % 60:02d}", time_zone="UTC",
                          template_ids=templates, target_group=_group(n, audience))
    dispose_engine(url)
    print(f"seeded {customers:,} customers and {campaigns} campaigns in {time.perf_counter() - started:.1f}s",
          flush=True)


def _clear(url: str) -> None:
    """Forget the day's integration state (the next run starts afresh over the same customers)."""
    import sqlalchemy as sa

    from cheetah_assets.customers.engines import dispose_engine, engine_for

    with engine_for(url).begin() as conn:
        for table in INTEGRATION_TABLES:
            conn.execute(sa.text(f"DELETE FROM cheetah_{table}"))
    dispose_engine(url)


@contextlib.contextmanager
def _database(backend: str):
    if backend == "sqlite":
        tmp = tempfile.mkdtemp(prefix="bench_day_")
        try:
            yield f"sqlite:///{os.path.join(tmp, 'day.db')}"
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return
    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool

    from cheetah_assets.customers.engines import dispose_engine, with_shipped_driver

    server = with_shipped_driver(sa.make_url(os.environ.get("CHEETAH_TEST_PG_URL") or "postgresql://postgres@127.0.0.1:5432/test"))
    admin = sa.create_engine(server, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    url = server.set(database=PG_DATABASE).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {PG_DATABASE} WITH (FORCE)")
        conn.exec_driver_sql(f"CREATE DATABASE {PG_DATABASE} ENCODING 'UTF8' TEMPLATE template0")
    try:
        yield url
    finally:
        dispose_engine(url)
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {PG_DATABASE} WITH (FORCE)")
        admin.dispose()


def _report(label: str, r: dict, sim_rss: float) -> None:
    rows = r["recipients"]
    print(f"{label}: {r['approved']} sends approved, {rows:,} recipients; freeze {r['stages'].get('freeze', 0):.1f}s, "
          f"prepare (catalog + plan + freeze) {r['prepare_wall']:.1f}s wall, sends {r['send_wall']:.1f}s wall, "
          f"day {r['wall']:.1f}s ({rows / r['wall']:,.0f} recipients/s)")
    for stage in ("list read + CSV build", "Base64 body build", "import upload", "simulator import processing",
                  "create/launch/approve"):
        print(f"    {stage:<28} {r['stages'].get(stage, 0.0):8.1f}s (summed over the send workers)")
    print(f"    CPU: pipeline {r['cpu']:.1f} s, simulator {r['sim_cpu']:.1f} s (user + system, over the day)")
    print(f"    peak RSS: pipeline {r['rss_mib']:.0f} MiB, simulator {sim_rss:.0f} MiB")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--campaigns", type=int, default=10)
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--audience", choices=["all", "split"], default="all",
                        help="all: every campaign to every customer; split: one segment of M/N customers each")
    parser.add_argument("--no-sequential", action="store_true", help="skip today's sequential run (no ratio)")
    args = parser.parse_args(argv)
    day = dt.datetime.now(dt.timezone.utc).date()
    print(f"bench_day: {args.campaigns} campaigns x {args.customers:,} customers on {args.backend}, "
          f"audience {args.audience}, concurrency {args.concurrency}, {os.cpu_count()} cores", flush=True)
    from bench.machine import speed_line

    print(speed_line(), flush=True)
    with _database(args.backend) as url:
        _seed(url, args.customers, args.campaigns, day, args.audience)
        raw = _run_child("raw", url, str(args.campaigns), args.audience)
        print(f"raw limit (SQL scan + CSV + Base64, {raw['rows']:,} rows): {raw['seconds']:.1f}s "
              f"({raw['rows'] / raw['seconds']:,.0f} rows/s), peak RSS {raw['rss_mib']:.0f} MiB", flush=True)
        runs = [("parallel", args.concurrency)] + ([] if args.no_sequential else [("sequential", 1)])
        results = {}
        for label, concurrency in runs:
            _clear(url)
            with _simulator(day) as sim:
                r = _run_child("day", url, sim["url"], day.isoformat(), str(concurrency))
            r["sim_cpu"] = sim["cpu"]
            results[label] = (r, sim["rss_mib"])
            _report(f"{label} (concurrency {concurrency})", r, sim["rss_mib"])
    par, sim_rss = results["parallel"]
    print(speed_line(), "(at the end)")
    print(f"summary: {args.campaigns} campaigns x {args.customers:,} customers ({args.backend}, audience "
          f"{args.audience}, {par['recipients']:,} recipients): day {par['wall']:.1f}s "
          f"({'within' if par['wall'] <= 600 else 'OVER'} the 10-minute goal) "
          f"= {par['wall'] / raw['seconds']:.1f}x the raw limit ({raw['seconds']:.1f}s); the pipeline's own CPU "
          f"(the simulator's excluded) {par['cpu']:.1f}s = {par['cpu'] / raw['cpu']:.1f}x the raw limit's CPU "
          f"({raw['cpu']:.1f}s; the simulator used {par['sim_cpu']:.1f}s)"
          + (f"; speed-up over sequential sends (sequential time / parallel time): day "
             f"{results['sequential'][0]['wall'] / par['wall']:.2f}x ({results['sequential'][0]['wall']:.1f}s), "
             f"sends alone {results['sequential'][0]['send_wall'] / par['send_wall']:.2f}x"
             if "sequential" in results else "")
          + f"; peak RSS pipeline {max(r['rss_mib'] for r, _ in results.values()):.0f} MiB, "
          f"simulator {max(s for _, s in results.values()):.0f} MiB")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2:])
    else:
        sys.exit(main())
