"""The code location itself: a snapshot of its definitions, validation, and the demo commands.

The snapshot (``__snapshots__/test_definitions/``, syrupy) makes every change to the graph a
visible diff in review: an asset renamed, a dependency dropped, a schedule moved. After an
intended change, regenerate it with
``./run test cheetah_assets_tests/test_definitions.py --snapshot-update``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
from syrupy.extensions.json import JSONSnapshotExtension

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def snapshot_json(snapshot):
    return snapshot.use_extension(JSONSnapshotExtension)


def _summary(defs: dg.Definitions) -> dict:
    graph = defs.resolve_asset_graph()
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        pdef = node.partitions_def
        assets[key.to_user_string()] = {
            "group": node.group_name,
            "deps": sorted(p.to_user_string() for p in node.parent_keys),
            "partitions": type(pdef).__name__ if pdef else None,
            "kinds": sorted(node.kinds),
            "owners": sorted(node.owners),
            "has_description": bool(node.description),
        }
    checks = {
        f"{k.asset_key.to_user_string()}:{k.name}": {"blocking": graph.get_check_spec(k).blocking}
        for k in sorted(graph.asset_check_keys, key=lambda k: (k.asset_key.to_user_string(), k.name))
    }
    repo = defs.get_repository_def()
    return {
        "assets": assets,
        "checks": checks,
        "jobs": sorted(j.name for j in repo.get_all_jobs() if not j.name.startswith("__")),
        "schedules": {s.name: {"cron": s.cron_schedule, "job": s.job_name} for s in repo.schedule_defs},
        "sensors": sorted(s.name for s in repo.sensor_defs),
        "resources": sorted(repo.get_top_level_resources()),
    }


def test_definitions_match_the_snapshot(snapshot_json):
    from cheetah_assets.definitions import defs

    summary = _summary(defs)
    assert summary == snapshot_json
    assert all(a["has_description"] and a["owners"] and a["kinds"] for a in summary["assets"].values())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _embedded_env(tmp_path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHEETAH_", "CUSTOMER_DB_URL"))}
    env.update(
        CHEETAH_DEMO_DIR=str(tmp_path / "demo"),
        CHEETAH_SIM_PORT=str(_free_port()),
        CHEETAH_DEMO_CUSTOMERS="300",
        DAGSTER_HOME=str(tmp_path / "home"),
    )
    (tmp_path / "home").mkdir()
    return env


def test_dagster_validates_the_workspace_with_nothing_configured(tmp_path):
    """The code location loads with no setting at all (a deployment not yet configured: its runs
    would refuse to start), and loading it writes nothing."""
    dagster = Path(sys.executable).with_name("dagster")
    proc = subprocess.run(
        [str(dagster), "definitions", "validate", "-w", str(ROOT / "workspace.yaml")],
        cwd=tmp_path, env=_embedded_env(tmp_path), capture_output=True, text=True, timeout=180,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not (tmp_path / "demo").exists()  # nothing seeded, nothing started


def test_the_daily_schedules_target_the_day_of_their_tick():
    import datetime as dt

    from cheetah_assets.definitions import defs

    repo = defs.get_repository_def()
    tick = dt.datetime(2026, 11, 23, 0, 15, tzinfo=dt.timezone.utc)
    for name in ("daily_campaign_cycle_schedule", "template_catalog_schedule"):
        schedule = repo.get_schedule_def(name)
        with dg.DagsterInstance.ephemeral() as instance:
            ctx = dg.build_schedule_context(
                instance=instance, scheduled_execution_time=tick, repository_def=repo
            )
            (request,) = schedule.evaluate_tick(ctx).run_requests
        assert request.partition_key == "2026-11-23", name


ASSET_NODES = "{ assetNodes { assetKey { path } } }"


@pytest.mark.slow(seconds=25)
def test_dagster_dev_shows_the_graph_and_runs_the_day_on_the_embedded_defaults(tmp_path):
    """``./run dev`` as a newcomer meets it: ``cheetah-dev`` (the simulator, the seeded demo
    database, and ``dagster dev`` with ``CHEETAH_DEMO=1``) shows every asset, and a run of the daily cycle submitted through the webserver's
    GraphQL API (what the Materialize button does) goes through the daemon's queue and succeeds
    against the embedded simulator and demo database."""
    import datetime as dt
    import signal
    import time

    import requests
    import sqlalchemy as sa
    from dagster_graphql import DagsterGraphQLClient

    from cheetah_assets.customers.resource import CustomerDatabaseResource
    from cheetah_assets.customers.schema import campaign_schedule, send_ledger

    env = _embedded_env(tmp_path)
    port = _free_port()
    with open(tmp_path / "dev.log", "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cheetah_assets.dev", "-h", "127.0.0.1", "-p", str(port)],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:

        def graphql(query: str) -> dict:
            reply = requests.post(f"http://127.0.0.1:{port}/graphql", json={"query": query}, timeout=30)
            reply.raise_for_status()
            return reply.json()["data"]

        deadline = time.monotonic() + 240
        assets: set[str] = set()
        while True:  # the webserver comes up, then the code location loads
            assert proc.poll() is None, (tmp_path / "dev.log").read_text()[-5000:]
            try:
                assets = {"/".join(n["assetKey"]["path"]) for n in graphql(ASSET_NODES)["assetNodes"]}
            except (requests.RequestException, KeyError, TypeError):
                assets = set()
            if assets or time.monotonic() > deadline:
                break
            time.sleep(1)
        from cheetah_assets.definitions import defs

        expected = set(_summary(defs)["assets"])
        assert assets == expected, (tmp_path / "dev.log").read_text()[-5000:]

        # The first day with campaigns in the seeded schedule (cheetah-dev seeded it).
        engine = CustomerDatabaseResource(url=f"sqlite:///{tmp_path / 'demo' / 'customers.db'}").get_engine()
        today = dt.datetime.now(dt.timezone.utc).date()
        with engine.connect() as conn:
            day = conn.execute(
                sa.select(sa.func.min(campaign_schedule.c.send_date)).where(campaign_schedule.c.send_date >= today)
            ).scalar()
        day = day if isinstance(day, dt.date) else dt.date.fromisoformat(str(day))

        client = DagsterGraphQLClient("127.0.0.1", port_number=port)
        run_id = client.submit_job_execution("daily_campaign_cycle", tags={"dagster/partition": day.isoformat()})
        while True:
            status = client.get_run_status(run_id)
            if status in (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED):
                break
            assert time.monotonic() < deadline + 240, (status, (tmp_path / "dev.log").read_text()[-5000:])
            time.sleep(1)
        assert status == dg.DagsterRunStatus.SUCCESS, (tmp_path / "dev.log").read_text()[-8000:]
        with engine.connect() as conn:
            states = [s for (s,) in conn.execute(sa.select(send_ledger.c.state).where(send_ledger.c.send_date == day))]
        assert "APPROVED" in states and set(states) <= {"APPROVED", "EMPTY"}, states  # nothing stopped half-way
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
