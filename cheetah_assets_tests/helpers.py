"""Test helpers: run the day's cycle for real, and check exactly-once against the simulator."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections import Counter
from dataclasses import dataclass, field

import dagster as dg
import sqlalchemy as sa

from cheetah_assets.cheetah.contract import id_from_db, same_id
from cheetah_assets.customers import schema, seed
from cheetah_assets.customers.engines import dispose_engine, engine_for
from cheetah_assets.customers.identifiers import normalise_identifier
from cheetah_assets.customers.resource import CustomerDatabaseResource
from cheetah_assets.customers.schema import import_rejection, recipient, send_ledger, suppression
from cheetah_assets.sending.assets import SEND_ASSETS, SEND_CHECKS

from .pg import fresh_postgres_database

#: (campaign id, name, template ids, send time UTC) for :func:`demo_database`: A to two templates
#: at 09:00 and B to one at 10:30 (the exactly-once and fail-closed tests).
TWO_CAMPAIGNS = [("A", "Campaign A", "1001,1003", "09:00"), ("B", "Campaign B", "1002", "10:30")]
#: One campaign, X, to template 1002 at 11:00 (the cancellation and change-after-handover tests).
CAMPAIGN_X = [("X", "Campaign X", "1002", "11:00")]


def demo_database(url: str, sim, day: dt.date, *, customers: int, campaigns=(), alter: str | None = None) -> sa.Engine:
    """A customer database at ``url``: ``customers`` demo customers, the customers table changed
    by the SQL ``alter`` if given, then the day's ``campaigns`` to all customers, each
    (campaign id, name, template ids, send time UTC)."""
    engine = CustomerDatabaseResource(url=url).get_engine(create=True)
    seed.seed_demo(engine, customers=customers, days=0, today=day, now=sim.admin.now())
    if alter is not None:
        with engine.begin() as conn:
            conn.execute(sa.text(alter))
    for campaign_id, name, template_ids, send_time in campaigns:
        seed.add_campaign(
            engine, campaign_id=campaign_id, name=name, send_date=day, send_time=send_time, time_zone="UTC",
            template_ids=template_ids, target_group="all_customers",
        )
    return engine


@contextlib.contextmanager
def demo_tables_engine(backend: str, tmp_path_factory, name: str):
    """An engine on a new database holding the demo tables and the integration's tables (with,
    on PostgreSQL, the ``cheetah_norm`` function): a SQLite file under a fresh ``name`` folder
    (``backend == "sqlite"``) or a fresh PostgreSQL database, disposed of afterwards."""
    with contextlib.ExitStack() as cleanup:
        if backend == "sqlite":
            url = f"sqlite:///{tmp_path_factory.mktemp(name) / 'customers.db'}"
            engine = engine_for(url, create=True)
            cleanup.callback(dispose_engine, url)
        else:
            url = cleanup.enter_context(fresh_postgres_database())
            engine = engine_for(url)
        schema.create_demo_tables(engine)
        CustomerDatabaseResource(url=url).ensure_tables()
        yield engine


def run_cycle(resources: dict, day: dt.date, instance, *, send_late: bool = False, raise_on_error: bool = False,
              concurrency: int | None = None, tags: dict | None = None, release_sends: list[str] | None = None):
    """Materialize the day's cycle (the assets of ``daily_campaign_cycle`` and their checks);
    ``concurrency``: how many campaigns ``campaign_sends`` sends at a time (default: its own);
    ``release_sends``: the send keys its run config releases (handed over in another account)."""
    # The console logger at WARNING: the event log keeps everything, the test output stays readable.
    config: dict = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    ops: dict = {}
    if send_late:
        ops["scheduled_campaigns"] = {"config": {"send_late": True}}
    sends = {**({"concurrency": concurrency} if concurrency is not None else {}),
             **({"release_sends": release_sends} if release_sends is not None else {})}
    if sends:
        ops["campaign_sends"] = {"config": sends}
    if ops:
        config["ops"] = ops
    return dg.materialize(
        [*SEND_ASSETS, *SEND_CHECKS],
        partition_key=day.isoformat(),
        resources=resources,
        instance=instance,
        run_config=config,
        raise_on_error=raise_on_error,
        tags=tags,
    )


def until_done(resources, day, instance, attempts=6):
    """Run the cycle the way an operator would: again after each failure, until it succeeds."""
    results = []
    for _ in range(attempts):
        result = run_cycle(resources, day, instance)
        results.append(result)
        if result.success:
            return results
    raise AssertionError(f"the day did not complete in {attempts} runs")


def assert_exactly_once(sim, engine, sends=3):
    rows = ledger_rows(engine)
    assert [r["state"] for r in rows] == ["APPROVED"] * sends, [(r["send_key"], r["state"], r["error"]) for r in rows]
    sim.admin.advance(dt.timedelta(days=1))
    audit = audit_sends(engine, sim.admin.sent())
    assert audit.ok, audit
    assert audit.campaigns_checked == sends


def ledger_rows(engine) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(send_ledger).order_by(send_ledger.c.send_key)).mappings()]


def frozen(engine, list_key: str, template_id: str) -> dict[str, dict]:
    """The frozen recipients of a template, by the identifier sent (the customer's own value)."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(sa.func.coalesce(recipient.c.address, recipient.c.identifier).label("sent"), recipient.c.attrs)
            .where(recipient.c.list_key == list_key, recipient.c.template_id == template_id)
        ).all()
    return {r.sent: json.loads(r.attrs) for r in rows}


def rejected(engine, key: str) -> set[str]:
    with engine.connect() as conn:
        return set(
            conn.execute(sa.select(import_rejection.c.identifier).where(import_rejection.c.send_key == key)).scalars()
        )


@dataclass
class Audit:
    campaigns_checked: int = 0
    duplicates: int = 0
    lost_recipients: int = 0
    extra_recipients: int = 0
    #: Recipients mailed who must not have been: anyone suppressed (whatever the spelling), and
    #: every recipient of a campaign that went out although the ledger did not create it.
    wrongly_mailed: int = 0
    wrong: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.duplicates or self.lost_recipients or self.extra_recipients or self.wrongly_mailed
                    or self.wrong)


def suppressed_identifiers(engine) -> set[str]:
    """The suppression list, normalised (customers/identifiers.py); empty without the table."""
    if not sa.inspect(engine).has_table(suppression.name):
        return set()
    with engine.connect() as conn:
        return {normalise_identifier(i) for i in conn.execute(sa.select(suppression.c.identifier)).scalars() if i}


def wrongly_mailed(engine, sent: dict) -> tuple[int, list[str]]:
    """How many recipients went out that must not have, and why: suppressed identifiers (compared
    after normalisation), and recipients of campaigns the ledger did not create (a name it does not
    hold, or a Cheetah campaign id other than the one it recorded for that name)."""
    suppressed = suppressed_identifiers(engine)
    created = {r["cheetah_name"]: r["camp_id"] for r in ledger_rows(engine)}
    count, why = 0, []
    for c in sent["campaigns"]:
        recipients = c.get("recipients", [])
        hit = [r["identifier"] for r in recipients if normalise_identifier(r["identifier"]) in suppressed]
        if hit:
            count += len(hit)
            why.append(f"{c['name']}: mailed {len(hit)} suppressed ({', '.join(map(repr, hit[:3]))})")
        ours = created.get(c["name"])
        if c["name"] not in created or ours is None or not same_id(id_from_db(ours), c["campId"]):
            count += max(1, len(recipients) - len(hit))
            why.append(f"{c['name']}: campaign {c['campId']} went out, but the ledger did not create it")
    return count, why


def audit_sends(engine, sent: dict, *, identifier_field: str = "EMAIL_ADDR") -> Audit:
    """Compare what the simulator actually sent with the ledger and the frozen lists.

    For every APPROVED send: exactly one campaign of its name went out, once, to exactly the
    frozen recipients of its template less those Cheetah rejected (with a recorded reason), with
    the frozen field values, the right template and the planned time. Nothing else went out.
    """
    audit = Audit()
    audit.wrongly_mailed, why = wrongly_mailed(engine, sent)
    audit.wrong.extend(why)
    campaigns = sent["campaigns"]
    by_name = Counter(c["name"] for c in campaigns)
    out = {c["name"]: c for c in campaigns}
    rows = ledger_rows(engine)
    names = {r["cheetah_name"] for r in rows}
    for name, n in by_name.items():
        if n > 1:
            audit.duplicates += n - 1
        if name not in names:
            audit.wrong.append(f"{name}: sent, but not in the ledger")
    for c in campaigns:
        if c.get("sendCount", 1) > 1:
            audit.duplicates += c["sendCount"] - 1
    for r in rows:
        if r["state"] != "APPROVED":
            if r["cheetah_name"] in out:
                audit.wrong.append(f"{r['cheetah_name']}: sent while the ledger says {r['state']}")
            continue
        audit.campaigns_checked += 1
        c = out.get(r["cheetah_name"])
        if c is None:
            audit.wrong.append(f"{r['cheetah_name']}: APPROVED but never sent")
            expected = set(frozen(engine, r["list_key"], r["template_id"])) - rejected(engine, r["send_key"])
            audit.lost_recipients += len(expected)
            continue
        if str(c["templateObjId"]) != r["template_id"]:
            audit.wrong.append(f"{r['cheetah_name']}: template {c['templateObjId']} != {r['template_id']}")
        send_at = r["send_at"].replace(tzinfo=dt.timezone.utc) if r["send_at"].tzinfo is None else r["send_at"]
        start = dt.datetime.fromisoformat(c["startTime"].replace("Z", "+00:00"))
        if start.tzinfo is None:
            start = start.replace(tzinfo=dt.timezone.utc)
        if start != send_at:
            audit.wrong.append(f"{r['cheetah_name']}: start {start} != planned {send_at}")
        expected = frozen(engine, r["list_key"], r["template_id"])
        rej = rejected(engine, r["send_key"])
        got = {rcp["identifier"]: rcp.get("fields", {}) for rcp in c["recipients"]}
        want = set(expected) - rej
        audit.lost_recipients += len(want - set(got))
        audit.extra_recipients += len(set(got) - want)
        for ident in want & set(got):
            for fname, value in expected[ident].items():
                if (got[ident].get(fname) or "") != (value or ""):
                    audit.wrong.append(f"{r['cheetah_name']}: {ident} {fname}={got[ident].get(fname)!r} != {value!r}")
                    break
    return audit


def _run_day_in_process(sim_url: str, db_url: str, now_iso: str, day_iso: str, queue, barrier) -> None:
    """One whole run of the day's cycle in its own process (own instance, own connections)."""
    from cheetah_assets.cheetah.resource import CheetahMessagingResource
    from cheetah_assets.clock import ClockResource
    from cheetah_assets.customers.resource import CustomerDatabaseResource

    from .conftest import DEMO_CREDENTIALS

    resources = {
        "cheetah": CheetahMessagingResource(
            endpoint=sim_url, **DEMO_CREDENTIALS, backoff_factor=0.01, import_poll_interval_seconds=0.01
        ),
        "customer_db": CustomerDatabaseResource(url=db_url),
        "clock": ClockResource(fixed_now=now_iso),
    }
    with dg.DagsterInstance.ephemeral() as instance:
        # Imports and instance set-up take seconds: the runs start only once every process is
        # ready, so they really overlap (a broken barrier fails the process, and the test).
        barrier.wait(timeout=180)
        queue.put(run_cycle(resources, dt.date.fromisoformat(day_iso), instance).success)


def run_days_at_once(sim, db_url: str, now: dt.datetime, day: dt.date, runs: int = 2) -> list[bool]:
    """Start ``runs`` runs of the same day at the same moment, each in its own process, as two
    Dagster run workers would be; return whether each succeeded."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    barrier = ctx.Barrier(runs)
    procs = [
        ctx.Process(target=_run_day_in_process, args=(sim.url, db_url, now.isoformat(), day.isoformat(), queue, barrier))
        for _ in range(runs)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=240)
        assert p.exitcode == 0, f"a run process ended with {p.exitcode}"
    return sorted(queue.get(timeout=5) for _ in procs)


def failure_messages(result) -> list[str]:
    """What the UI shows first for each failed step: its ``Failure`` description, or the error."""
    out = []
    for event in result.all_events:
        if event.is_step_failure:
            data = event.step_failure_data
            out.append(data.user_failure_data.description if data.user_failure_data else data.error.message)
    return out


def failure_texts(result) -> list[str]:
    """Each failed step's description and error messages, causes included, as one line each."""
    out = []
    for event in result.all_events:
        if event.is_step_failure:
            data = event.step_failure_data
            parts = [data.user_failure_data.description] if data.user_failure_data and data.user_failure_data.description else []
            error = data.error
            while error is not None:
                parts.append(error.message.strip())
                error = error.cause
            out.append(f"{event.step_key}: " + " | ".join(parts))
    return out


# ------------------------------------------------------------------------------------------------
# the dagster CLI, as an operator types it
# ------------------------------------------------------------------------------------------------
def cli_env(sim, db_url: str, tmp_path) -> dict:
    """The environment of a deployment pointed at the simulator, with a fresh ``DAGSTER_HOME``
    whose instance launches runs as they are submitted. (A deployment queues them and its daemon
    launches them: the same runs, dequeued by Dagster's own machinery, which the ``dagster dev``
    test exercises.)"""
    import os

    from .conftest import production_env

    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(
        "run_coordinator:\n  module: dagster.core.run_coordinator\n  class: DefaultRunCoordinator\n"
    )
    return {**os.environ, **production_env(sim, db_url), "DAGSTER_HOME": str(home)}


def dagster_cli(env: dict, *args: str, cwd=None) -> str:
    """Run the ``dagster`` command of this environment; its output, or a failed assertion."""
    import subprocess
    import sys
    from pathlib import Path

    exe = str(Path(sys.executable).with_name("dagster"))
    done = subprocess.run([exe, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def wait_for_runs(instance, count: int, timeout: float = 240.0) -> list:
    """The instance's runs, once there are ``count`` and all have finished."""
    import time

    finished = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}
    deadline = time.monotonic() + timeout
    while True:
        runs = instance.get_runs()
        if len(runs) >= count and all(r.status in finished for r in runs):
            return runs
        assert time.monotonic() < deadline, [(r.tags.get("dagster/partition"), r.status) for r in runs]
        time.sleep(0.5)


def create_tables_at_once(engine, create: str, rounds: int = 12, threads: int = 4) -> None:
    """Drop the integration tables (``create="integration tables"``) or cheetah_campaign_seen
    (``"campaign_seen"``), then create them from ``threads`` threads at the same moment, ``rounds``
    times: no creator may fail, and the tables must be there."""
    import threading

    from cheetah_assets.customers import schema
    from cheetah_assets.sending import seen

    if create == "integration tables":
        make, tables = (lambda: schema.create_integration_tables(engine)), list(schema.INTEGRATION_TABLES)
    else:
        make, tables = (lambda: seen.ensure_table(engine)), [seen.campaign_seen]
    for _ in range(rounds):
        schema.metadata.drop_all(engine, tables=tables)
        barrier, errors = threading.Barrier(threads), []

        def create_now():
            barrier.wait()
            try:
                make()
            except Exception as exc:  # noqa: BLE001 - a failing creator is what is tested
                errors.append(exc)

        workers = [threading.Thread(target=create_now) for _ in range(threads)]
        for t in workers:
            t.start()
        for t in workers:
            t.join()
        assert not errors, errors[0]
    assert set(sa.inspect(engine).get_table_names()) >= {t.name for t in tables}
