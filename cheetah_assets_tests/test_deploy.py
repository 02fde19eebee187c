"""Production as a data platform team runs it, from the files in ``deploy/`` (docs/deploy.md).

* The instance configuration (``deploy/dagster.yaml``): PostgreSQL storage, the run queue and its
  limits, the API pool, run retries off for the send path and on elsewhere.
* The topology: ``dagster code-server start``, ``dagster-daemon run`` and ``dagster-webserver``
  as three processes on PostgreSQL, in deployment mode against the https simulator; a day driven
  through the webserver's GraphQL API; the queue holding back a second launch of the same day; a
  code server restarted in the middle of the day.
* What cannot run here (no Docker, no Kubernetes): the Dockerfile parsed, the Helm values checked
  against a JSON schema written from the chart's documented keys (``helm_values_schema.json``).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import time
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
import yaml

from cheetah_assets.customers import seed
from cheetah_assets.customers.resource import CustomerDatabaseResource
from cheetah_assets.customers.schema import metric_snapshot
from cheetah_assets.metrics import snapshots as S

from .conftest import make_resources, production_env
from .deploy_checks import dockerfile_problems, helm_values_problems
from .helpers import audit_sends, ledger_rows, run_cycle
from .topology import DEPLOY, Topology, free_port, wait_for

DAY = dt.timedelta(days=1)
#: Jobs an automatic run retry may re-launch: they only read Cheetah Messaging or the database,
#: or write idempotently. Every other job (the send path, and any job added later until it is
#: listed here) must carry dagster/max_retries "0": fail closed.
SAFE_TO_RETRY = {"template_catalog_job", "metric_snapshot_job", "metric_snapshot_batch_job", "campaign_analysis_job"}


def instance_yaml() -> dict:
    return yaml.safe_load((DEPLOY / "dagster.yaml").read_text())


def instance_on(home: Path, pg_url: str, monkeypatch) -> dg.DagsterInstance:
    shutil.copy(DEPLOY / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_PG_URL", pg_url)
    return dg.DagsterInstance.from_config(str(home))


# ------------------------------------------------------------------------------------------------
# The instance configuration
@pytest.mark.postgres
def test_the_instance_config_loads_on_postgres_with_the_queue_limits_and_retries(tmp_path, monkeypatch):
    from .pg import fresh_postgres_database

    with fresh_postgres_database("cheetah_instance") as url:
        instance = instance_on(tmp_path, url, monkeypatch)
        try:
            assert type(instance.run_storage).__name__ == "PostgresRunStorage"
            assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
            assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
            assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
            queue = instance.get_concurrency_config().run_queue_config
            assert {"key": "dagster/partition", "value": {"applyLimitPerUniqueValue": True}, "limit": 1} in queue.tag_concurrency_limits
            assert 1 <= queue.max_concurrent_runs <= 50
            # A run dequeued while the code server restarts goes back to the queue.
            assert queue.max_user_code_failure_retries >= 1
            assert instance.get_concurrency_config().pool_config.default_pool_limit >= 1
            assert instance.run_retries_enabled and instance.run_retries_max_retries >= 1
            assert not instance.run_retries_retry_on_asset_or_op_failure  # op failures: the ops' own policies
            assert instance.run_monitoring_enabled
            # A run whose worker vanished cannot hold its day's place in the queue for ever.
            assert 3600 <= instance.run_monitoring_max_runtime_seconds <= 6 * 3600
        finally:
            instance.dispose()


def test_send_path_jobs_are_never_retried_automatically():
    """Fail closed: only jobs known to be safe may be re-launched by run retries; every other
    job carries dagster/max_retries 0, so an automatic retry never races a send."""
    from cheetah_assets.definitions import defs

    repo = defs.get_repository_def()
    jobs = {j.name: j for j in repo.get_all_jobs() if not j.name.startswith("__")}
    assert SAFE_TO_RETRY <= set(jobs)
    for name, job in jobs.items():
        retries = job.tags.get("dagster/max_retries")
        if name in SAFE_TO_RETRY:
            assert retries is None or int(retries) >= 1, name
        else:
            assert retries == "0", f"{name} may be retried automatically (tags {job.tags})"
    assert jobs["daily_campaign_cycle"].tags["dagster/max_retries"] == "0"
    assert jobs["cancel_campaign_job"].tags["dagster/max_retries"] == "0"


def test_the_workspace_points_at_a_grpc_code_server_only():
    workspace = yaml.safe_load((DEPLOY / "workspace.yaml").read_text())
    (entry,) = workspace["load_from"]
    assert set(entry) == {"grpc_server"}
    server = entry["grpc_server"]
    assert server["location_name"] == "cheetah_assets"
    assert server["host"] == {"env": "CHEETAH_CODE_SERVER_HOST"} and server["port"] == {"env": "CHEETAH_CODE_SERVER_PORT"}


# ------------------------------------------------------------------------------------------------
# What cannot run here: the image and the Kubernetes values
def dockerfile() -> str:
    return (DEPLOY / "Dockerfile").read_text()


def test_the_dockerfile_is_pinned_unprivileged_and_starts_the_code_server():
    assert dockerfile_problems(dockerfile()) == []
    entry = json.loads([line for line in dockerfile().splitlines() if line.startswith("ENTRYPOINT")][0].split(None, 1)[1])
    assert entry[entry.index("--location-name") + 1] == "cheetah_assets"


@pytest.mark.parametrize(
    "old, new, problem",
    [
        ("FROM python:3.11.14-slim-bookworm", "FROM python:3.11-slim", "pinned to an exact release"),
        ("FROM python:3.11.14-slim-bookworm", "FROM python:latest", "pinned to an exact release"),
        ("USER 10001:10001", "USER root", "non-root user"),
        ("USER 10001:10001", "USER 10001:10001\nRUN pip install requests", "after the last USER"),
        ("RUN pip install --no-cache-dir . \\", "RUN pip install --no-cache-dir requests \\", "not installed"),
        ("COPY cheetah_assets ./cheetah_assets", "COPY cheetah_assets_tests ./cheetah_assets_tests", "stay out of the image"),
        ("COPY cheetah_assets ./cheetah_assets", "COPY cheetah ./cheetah_assets", "no such path"),
        ('ENTRYPOINT ["dagster", "code-server", "start"', 'ENTRYPOINT ["dagster", "dev"', "code-server start"),
        ("EXPOSE 4000", "EXPOSE 4000\nENV CHEETAH_CONSUMER_SECRET=s3cret", "baked into the image"),
    ],
)
def test_the_dockerfile_check_catches_a_broken_image(old, new, problem):
    text = dockerfile()
    assert old in text
    problems = dockerfile_problems(text.replace(old, new))
    assert any(problem in p for p in problems), problems


def test_the_dockerfile_check_wants_an_exec_form_entrypoint():
    (line,) = [line for line in dockerfile().splitlines() if line.startswith("ENTRYPOINT")]
    problems = dockerfile_problems(dockerfile().replace(line, "ENTRYPOINT dagster code-server start -m cheetah_assets.definitions"))
    assert any("exec form" in p for p in problems), problems


def helm_values() -> dict:
    return yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())


def test_the_helm_values_match_the_charts_documented_schema():
    assert helm_values_problems(helm_values()) == []


@pytest.mark.parametrize(
    "path, value, problem",
    [
        (("runLauncher", "type"), "K8SRunLauncher", "is not one of"),
        (("dagsterDaemon", "runRetry"), {"enabled": True}, "Additional properties"),
        (("dagsterDaemon", "runRetries", "maxRetries"), -1, "less than the minimum"),
        (("concurrency", "runs", "tagConcurrencyLimits"), [{"key": "dagster/partition"}], "'limit' is a required property"),
        (("dagster-user-deployments", "deployments"), [{"name": "x", "image": {"repository": "r", "tag": "1"}}], "'port' is a required property"),
        (("runLauncher", "config", "k8sRunLauncher", "envSecrets"), ["cheetah-messaging"], "is not of type 'object'"),
        (("postgresql", "postgresqlHost"), "", "should be non-empty"),
    ],
)
def test_the_helm_values_check_catches_a_wrong_key_or_value(path, value, problem):
    values = helm_values()
    node = values
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    problems = helm_values_problems(values)
    assert any(problem in p for p in problems), problems


def test_the_helm_values_take_every_setting_from_kubernetes_secrets():
    from cheetah_assets.configuration import REQUIRED_VARIABLES

    values = helm_values()
    text = (DEPLOY / "helm" / "values.yaml").read_text()
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    assert deployment["codeServerArgs"][deployment["codeServerArgs"].index("-m") + 1] == "cheetah_assets.definitions"
    assert deployment["podSecurityContext"]["runAsNonRoot"] is True
    secrets = {s["name"] for s in deployment["envSecrets"]}
    launcher = values["runLauncher"]
    assert launcher["type"] == "K8sRunLauncher"
    assert {s["name"] for s in launcher["config"]["k8sRunLauncher"]["envSecrets"]} == secrets
    # No setting's value is written in the values file: only the secrets' names.
    for name in REQUIRED_VARIABLES:
        assert not re.search(rf"^\s*{name}\s*:", text, re.M), name
    assert "postgresqlPassword" not in values["postgresql"]
    assert values["generatePostgresqlPasswordSecret"] is False and values["global"]["postgresqlSecretName"]
    # The instance the chart renders has the same queue limits and retries as deploy/dagster.yaml.
    ours = instance_yaml()
    runs = values["concurrency"]["runs"]
    assert values["concurrency"]["enabled"] is True
    assert runs["maxConcurrentRuns"] == ours["concurrency"]["runs"]["max_concurrent_runs"]
    assert runs["tagConcurrencyLimits"] == ours["concurrency"]["runs"]["tag_concurrency_limits"]
    assert values["concurrency"]["pools"]["defaultLimit"] == ours["concurrency"]["pools"]["default_limit"]
    daemon = values["dagsterDaemon"]
    coordinator = daemon["runCoordinator"]
    assert coordinator["enabled"] and coordinator["type"] == "CustomRunCoordinator"
    custom = coordinator["config"]["customRunCoordinator"]
    assert (custom["module"], custom["class"]) == (ours["run_coordinator"]["module"], ours["run_coordinator"]["class"])
    for key in ("max_user_code_failure_retries", "user_code_failure_retry_delay"):
        assert custom["config"][key] == ours["run_coordinator"]["config"][key], key
    assert daemon["runRetries"] == {
        "enabled": True, "maxRetries": ours["run_retries"]["max_retries"], "retryOnAssetOrOpFailure": False,
    }
    assert daemon["runMonitoring"]["enabled"] is True


# ------------------------------------------------------------------------------------------------
# The topology
RUNS = """query Runs($f: RunsFilter) { runsOrError(filter: $f) { __typename
  ... on Runs { results { runId status jobName tags { key value } } } ... on PythonError { message } } }"""
LAUNCH = """mutation Launch($p: ExecutionParams!) { launchRun(executionParams: $p) { __typename
  ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
  ... on RunConfigValidationInvalid { errors { message } } } }"""
REEXECUTE = """mutation Re($id: String!) { launchRunReexecution(reexecutionParams: {parentRunId: $id, strategy: FROM_FAILURE})
  { __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }"""
WORKSPACE = """{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus
  locationOrLoadError { __typename ... on PythonError { message } } } } } }"""
STEPS = """query Steps($id: ID!) { runOrError(runId: $id) { __typename ... on Run { stepStats { stepKey status } } } }"""
RELOAD = """mutation { reloadRepositoryLocation(repositoryLocationName: "cheetah_assets") { __typename
  ... on WorkspaceLocationEntry { loadStatus locationOrLoadError { __typename } } } }"""
TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}


def runs(top: Topology, **filters) -> list[dict]:
    data = top.graphql(RUNS, {"f": filters})["runsOrError"]
    assert data["__typename"] == "Runs", data
    return data["results"]


def status(top: Topology, run_id: str) -> str:
    (run,) = runs(top, runIds=[run_id])
    return run["status"]


def launch_day(top: Topology, day: dt.date) -> str:
    params = {
        "selector": {"repositoryLocationName": "cheetah_assets", "repositoryName": "__repository__", "jobName": "daily_campaign_cycle"},
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": day.isoformat()}]},
        # No run config: the code location's executor runs the steps in the run's own process
        # (definitions.py), as every run launched in production does.
        "runConfigData": {},
    }
    reply = top.graphql(LAUNCH, {"p": params})["launchRun"]
    assert reply["__typename"] == "LaunchRunSuccess", reply
    return reply["run"]["runId"]


def steps(top: Topology, run_id: str) -> list[str]:
    """The steps a run started (none for a run that failed at launch)."""
    data = top.graphql(STEPS, {"id": run_id})["runOrError"]
    assert data["__typename"] == "Run", data
    return [s["stepKey"] for s in data["stepStats"]]


def reload_location(top: Topology) -> bool:
    data = top.graphql_or_none(RELOAD)
    entry = (data or {}).get("reloadRepositoryLocation") or {}
    return entry.get("loadStatus") == "LOADED" and entry["locationOrLoadError"]["__typename"] == "RepositoryLocation"


SENSOR = """query S($s: SensorSelector!) { sensorOrError(sensorSelector: $s) { __typename ... on Sensor { id } } }"""
STOP_SENSOR = """mutation Stop($id: String!) { stopSensor(id: $id) { __typename
  ... on StopSensorMutationResult { instigationState { status } } ... on PythonError { message } } }"""


START_SENSOR = """mutation Start($s: SensorSelector!) { startSensor(sensorSelector: $s) { __typename
  ... on Sensor { sensorState { status } } ... on PythonError { message } } }"""


def sensor_selector(name: str) -> dict:
    return {"repositoryLocationName": "cheetah_assets", "repositoryName": "__repository__", "sensorName": name}


def stop_sensor(top: Topology, name: str) -> str:
    """Stop a sensor through the UI's API (its Stop button); the instigation status it then has."""
    sensor = top.graphql(SENSOR, {"s": sensor_selector(name)})["sensorOrError"]
    assert sensor["__typename"] == "Sensor", sensor
    reply = top.graphql(STOP_SENSOR, {"id": sensor["id"]})["stopSensor"]
    assert reply["__typename"] == "StopSensorMutationResult", reply
    return reply["instigationState"]["status"]


def start_sensor(top: Topology, name: str) -> str:
    """Start a sensor through the UI's API (its Start button); the instigation status it then has."""
    reply = top.graphql(START_SENSOR, {"s": sensor_selector(name)})["startSensor"]
    assert reply["__typename"] == "Sensor", reply
    return reply["sensorState"]["status"]


def location_loaded(top: Topology) -> bool:
    data = top.graphql_or_none(WORKSPACE)
    entries = (data or {}).get("workspaceOrError", {}).get("locationEntries") or []
    return any(e["name"] == "cheetah_assets" and e["loadStatus"] == "LOADED"
               and e["locationOrLoadError"]["__typename"] == "RepositoryLocation" for e in entries)


@pytest.mark.slow(seconds=60)
@pytest.mark.postgres
def test_the_production_topology_runs_a_day_queues_a_second_launch_and_survives_a_code_server_restart(
    tls_sim, tmp_path, monkeypatch
):
    from .pg import fresh_postgres_database

    sim = tls_sim
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    today = now.date()
    past, tomorrow = today - 3 * DAY, today + DAY
    home, logs = tmp_path / "dagster_home", tmp_path / "logs"
    home.mkdir()
    logs.mkdir()
    with fresh_postgres_database("cheetah_instance") as instance_url, fresh_postgres_database("cheetah_customers") as db_url:
        engine = CustomerDatabaseResource(url=db_url).get_engine()
        S.prepare_database(engine)
        # History: three days ago the deployment sent PAST1 (in process, on the same instance,
        # the clocks pinned to that morning); the sensors will find it sent and due for metrics.
        morning = dt.datetime.combine(past, dt.time(6, 0), tzinfo=dt.timezone.utc)
        sim.admin.reset(seed="demo", now=morning, rate_limit=0)
        seed.seed_demo(engine, customers=200, days=0, today=past, now=morning)
        seed.add_campaign(engine, campaign_id="PAST1", name="Three days ago", send_date=past, send_time="09:00",
                          time_zone="UTC", template_ids="1004", target_group="all_customers")
        for cid, at in (("DAY1", "09:00"), ("DAY2", "10:30")):
            seed.add_campaign(engine, campaign_id=cid, name=f"Tomorrow {cid}", send_date=tomorrow, send_time=at,
                              time_zone="UTC", template_ids="1004", target_group="all_customers")
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", sim.tls[2])
        instance = instance_on(home, instance_url, monkeypatch)
        try:
            assert run_cycle(make_resources(sim, db_url), past, instance).success
        finally:
            instance.dispose()
        (past_row,) = [r for r in ledger_rows(engine) if r["state"] == "APPROVED"]
        sim.admin.set_now(now)  # the simulator's clock at the real time: PAST1 went out at 09:00 three days ago

        env = {k: v for k, v in os.environ.items() if not k.startswith(("CHEETAH_", "DAGSTER_"))}
        env.update(production_env(sim, db_url))  # deployment mode: every CHEETAH_* setting, https only
        env.update({
            "DAGSTER_HOME": str(home), "DAGSTER_PG_URL": instance_url,
            "CHEETAH_CODE_SERVER_HOST": "127.0.0.1", "CHEETAH_CODE_SERVER_PORT": str(free_port()),
            # Tomorrow's campaigns are due now (a 50-hour lead time), so the launches below hand
            # them over; the preparation sensor is stopped before the daemon starts (this test
            # drives tomorrow's cycle by hand, as an operator would).
            "CHEETAH_LEAD_TIME_MINUTES": "3000",
        })
        assert "CHEETAH_DEMO" not in env and env["CHEETAH_ENDPOINT"].startswith("https://")
        top = Topology(home, env, logs)
        try:
            for name in ("code-server", "webserver"):
                top.start(name)
            wait_for("the webserver to load the code location from the code server",
                     lambda: top.check_alive() or location_loaded(top), 240, explain=top.tails)
            assert stop_sensor(top, "campaign_preparation_sensor") == "STOPPED"
            # The snapshot requests start once the registration sensor has run: the daemon
            # evaluates its sensors in a random order, each at most once a minute, so a request
            # tick just before the registration would leave the day's snapshots a minute later.
            assert stop_sensor(top, "request_metric_snapshots_sensor") == "STOPPED"
            top.start("daemon")

            # 1. The sensors, in the daemon: PAST1 registered, its due metric snapshots requested
            #    (all of them in one batch run) and taken by the run the queue launched.
            name = past_row["cheetah_name"]
            probe = instance_on(home, instance_url, monkeypatch)
            try:
                wait_for("the registration sensor to register PAST1",
                         lambda: top.check_alive() or name in probe.get_dynamic_partitions("cheetah_campaigns"),
                         240, explain=top.tails)
            finally:
                probe.dispose()
            assert start_sensor(top, "request_metric_snapshots_sensor") == "RUNNING"

            def snapshot_runs():
                top.check_alive()
                found = runs(top, pipelineName="metric_snapshot_batch_job")
                done = [r for r in found if r["status"] in TERMINAL]
                return found if found and len(done) == len(found) else None

            found = wait_for("the metric snapshot runs the sensors request", snapshot_runs, 300, every=2, explain=top.tails)
            assert {r["status"] for r in found} == {"SUCCESS"}, (found, top.tails())
            tags = [{t["key"]: t["value"] for t in r["tags"]} for r in found]
            assert all(t.get("dagster/sensor_name") == "request_metric_snapshots_sensor" for t in tags)
            with engine.connect() as conn:
                days = sorted(conn.execute(
                    sa.select(metric_snapshot.c.day).where(metric_snapshot.c.cheetah_name == name)
                ).scalars())
            assert days[:2] == [1, 2] and set(days) <= {1, 2, 3}, days
            # Days 1 and 2 (and 3 after 09:00 UTC) came due before the campaign was registered: one run took them.
            assert int(tags[-1]["cheetah/snapshots"]) >= 2 and sum(int(t["cheetah/snapshots"]) for t in tags) == len(days)

            # 2. Two launches of tomorrow's cycle: the second waits in the queue while the first runs.
            #    Cheetah answers the first campaign creation slowly, so the first run is still
            #    sending when the code server is stopped.
            sim.admin.add_fault(kind="delay", method="POST", path="/services2/api/EmailCampaign", delay=15, times=1)
            first = launch_day(top, tomorrow)
            wait_for("the first run to start", lambda: status(top, first) in {"STARTED", *TERMINAL}, 120, explain=top.tails)
            second = launch_day(top, tomorrow)
            seen = set()
            for _ in range(4):  # several dequeue intervals (2 s): the second stays queued
                seen.add((status(top, first), status(top, second)))
                time.sleep(2)
            assert seen == {("STARTED", "QUEUED")}, seen

            # 3. The code server restarts in the middle of the first run's send.
            wait_for("the first run to reach Cheetah's campaign creation",
                     lambda: any(f["seen"] >= 1 for f in sim.admin.faults()), 180, explain=top.tails)
            top.stop("code-server")
            top.start("code-server")
            wait_for("the first run to end", lambda: status(top, first) in TERMINAL, 240, every=2, explain=top.tails)
            # The operator reloads the code location (the UI's Reload button), as after any deploy.
            wait_for("the code location to load again", lambda: reload_location(top), 240, every=3, explain=top.tails)
            wait_for("the queued run to end", lambda: status(top, second) in TERMINAL, 300, every=2, explain=top.tails)
            first_status, second_status = status(top, first), status(top, second)
            assert first_status in {"SUCCESS", "FAILURE"}, first_status  # finished, or failed cleanly: never stuck
            # The queued run either ran once the server was back, or was dequeued into the stopping
            # server, which refuses new runs: then it failed at launch, before any step.
            assert second_status == "SUCCESS" or steps(top, second) == [], (second_status, steps(top, second), top.tails())
            # The send path is never retried automatically: no run was launched from either.
            day_runs = runs(top, pipelineName="daily_campaign_cycle")
            assert {r["runId"] for r in day_runs} == {first, second}, day_runs
            # 4. The operator re-executes the interrupted run from failure: the day completes.
            if first_status == "FAILURE":
                reply = top.graphql(REEXECUTE, {"id": first})["launchRunReexecution"]
                assert reply["__typename"] == "LaunchRunSuccess", reply
                again = reply["run"]["runId"]
                wait_for("the re-execution", lambda: status(top, again) in TERMINAL, 300, every=2, explain=top.tails)
                assert status(top, again) == "SUCCESS", top.tails()
        finally:
            top.close()

        rows = [r for r in ledger_rows(engine) if r["send_date"] == tomorrow]
        assert len(rows) == 2 and {r["state"] for r in rows} == {"APPROVED"}, rows
        sim.admin.set_now(dt.datetime.combine(tomorrow, dt.time(23, 0), tzinfo=dt.timezone.utc))
        audit = audit_sends(engine, sim.admin.sent())
        assert audit.duplicates == 0 and not audit.wrong, audit
        assert audit.campaigns_checked == 3
