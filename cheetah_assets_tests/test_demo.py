"""``./run demo`` writes to the demo folder's persistent Dagster instance (the one ``./run dev``
opens), keeps that history on a second run, and never the environment's ``DAGSTER_HOME``."""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import sys

import dagster as dg

from cheetah_assets.dev import demo_environment


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _demo(tmp_path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHEETAH_", "CUSTOMER_DB_URL"))}
    env.update(
        CHEETAH_DEMO_DIR=str(tmp_path / "demo"), CHEETAH_SIM_PORT=str(_free_port()),
        DAGSTER_HOME=str(tmp_path / "users_home"),
    )
    proc = subprocess.run(
        [sys.executable, "-m", "cheetah_assets.demo", "--customers", "300", *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def _history(home):
    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs()
        failed = [r.run_id for r in runs if r.status == dg.DagsterRunStatus.FAILURE]
        snapshots = instance.get_materialized_partitions(dg.AssetKey("campaign_metric_snapshots"))
        analysis = instance.get_latest_materialization_event(dg.AssetKey("campaign_analysis"))
        return {r.run_id for r in runs}, failed, snapshots, analysis


def test_the_demo_writes_its_runs_to_the_persistent_instance_and_keeps_them(tmp_path):
    home = tmp_path / "demo" / "dagster_home"
    out = _demo(tmp_path)
    assert str(home) in out
    runs, failed, snapshots, analysis = _history(home)
    # the day's cycle, one snapshot run per sent campaign, and the analysis
    assert len(runs) >= 3, runs
    assert not failed
    assert snapshots and all(str(k).endswith("day_1") or "day_1" in str(k) for k in snapshots), snapshots
    assert analysis is not None
    assert not (tmp_path / "users_home").exists()  # the environment's DAGSTER_HOME is never touched
    # the simulator's world is in the demo folder for ./run dev: what it sent, and its clock
    from cheetah_assets.simulator.server import SimulatorServer

    with SimulatorServer(state_path=tmp_path / "demo" / "simulator.db") as sim:
        assert sim.restored and sim.admin.sent(recipients=False)["campaigns"]
        day = dt.datetime.combine(dt.datetime.now(dt.timezone.utc).date(), dt.time(6), tzinfo=dt.timezone.utc)
        assert sim.admin.now() >= day + dt.timedelta(days=1)  # the demo moved it to day 1 of the metrics

    _demo(tmp_path)  # again, without --fresh: the first run's history is still there
    runs2, failed2, snapshots2, _ = _history(home)
    assert runs <= runs2 and len(runs2) > len(runs)
    assert snapshots <= snapshots2

    _demo(tmp_path, "--fresh")  # --fresh starts over
    runs3, _, _, _ = _history(home)
    assert not (runs & runs3)


def test_dev_opens_the_demo_instance_whatever_dagster_home_says(tmp_path):
    env = demo_environment({"DAGSTER_HOME": "/somewhere/else", "PATH": "/bin"}, 4000, tmp_path)
    assert env["DAGSTER_HOME"] == str(tmp_path / "dagster_home")
