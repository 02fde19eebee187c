"""Fail closed on configuration (issue 8, item 1): the demo only when asked for, a
half-configured deployment does nothing and names everything missing, real credentials never
reach a simulator, and loading the definitions has no side effects."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from cheetah_assets import configuration
from cheetah_assets.cheetah.errors import ConfigurationError, InsecureEndpoint
from cheetah_assets.customers.schema import send_ledger
from cheetah_assets.customers.seed import seed_demo
from cheetah_assets.resources import build_resources

ROOT = Path(__file__).resolve().parents[1]

DEPLOYMENT = {
    "CHEETAH_ENDPOINT": "https://api.cheetah.example",
    "CHEETAH_CUST_ID": "900",
    "CHEETAH_FOLDER_ID": "901",
    "CHEETAH_PROP_MAP_ID": "902",
    "CHEETAH_CONSUMER_KEY": "REAL-KEY-7f3a",
    "CHEETAH_CONSUMER_SECRET": "REAL-SECRET-9c1d",
    "CHEETAH_CLIENT_ID": "REAL-CLIENT-55e0",
    "CUSTOMER_DB_URL": "sqlite:////data/customers.db",
}


def _clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any of the project's settings, plus ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CHEETAH_", "CUSTOMER_DB_URL", "DAGSTER_HOME", "OAUTHLIB_"))
    }
    env.update(extra)
    return env


class _Recorder(http.server.BaseHTTPRequestHandler):
    """A plain-HTTP listener that records every request it gets (what a stray simulator would see)."""

    seen: list[str] = []

    def _record(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
        type(self).seen.append(f"{self.command} {self.path} {body}")
        self.send_response(503)
        self.end_headers()

    do_GET = do_POST = do_PUT = do_DELETE = _record

    def log_message(self, *args):  # keep test output quiet
        pass


@pytest.fixture
def plain_http_listener():
    _Recorder.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], _Recorder.seen
    finally:
        server.shutdown()
        server.server_close()


RUN_THE_DAY = """
import json, sys
import dagster as dg
from cheetah_assets.definitions import defs
day = sys.argv[1]
with dg.DagsterInstance.ephemeral() as instance:
    result = defs.resolve_job_def("daily_campaign_cycle").execute_in_process(
        partition_key=day, instance=instance, raise_on_error=False,
        run_config={"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}},
    )
    failures = []
    for event in result.all_events:
        data = event.event_specific_data
        error = getattr(data, "error", None)
        texts = []
        while error is not None:
            texts.append(error.message)
            error = error.cause
        if texts:
            failures.append(event.event_type_value + ": " + " | ".join(texts))
    done = [e.step_key for e in result.all_events if e.event_type_value == "STEP_SUCCESS"]
    materialized = [e.step_key for e in result.all_events if e.event_type_value == "ASSET_MATERIALIZATION"]
print(json.dumps({"success": result.success, "failures": failures, "succeeded": done, "materialized": materialized}))
"""


def _run_the_day_in_a_deployment(env: dict, cwd: Path, day: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", RUN_THE_DAY, day], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_a_real_database_without_cheetah_settings_sends_nothing_and_names_every_missing_setting(
    tmp_path, plain_http_listener
):
    """Regression (issue 8.1): with CUSTOMER_DB_URL set and every CHEETAH_* setting missing, the run
    used to start the embedded simulator, report success and mark every send APPROVED; with
    credentials but no endpoint, the Consumer Secret went over plain HTTP to CHEETAH_SIM_PORT."""
    import datetime as dt

    port, seen = plain_http_listener
    db = tmp_path / "crm.db"
    engine = sa.create_engine(f"sqlite:///{db}")
    today = dt.datetime.now(dt.timezone.utc).date()
    seed_demo(engine, customers=200, days=2, today=today)
    engine.dispose()
    env = _clean_env(
        CUSTOMER_DB_URL=f"sqlite:///{db}",
        CHEETAH_SIM_PORT=str(port),
        CHEETAH_CONSUMER_KEY=DEPLOYMENT["CHEETAH_CONSUMER_KEY"],
        CHEETAH_CONSUMER_SECRET=DEPLOYMENT["CHEETAH_CONSUMER_SECRET"],
        CHEETAH_CLIENT_ID=DEPLOYMENT["CHEETAH_CLIENT_ID"],
    )
    outcome = _run_the_day_in_a_deployment(env, tmp_path, today.isoformat())

    assert not outcome["success"]
    assert outcome["succeeded"] == [] and outcome["materialized"] == [], outcome
    message = "\n".join(outcome["failures"])
    assert "RESOURCE_INIT_FAILURE" in message  # before any step
    for name in ("CHEETAH_ENDPOINT", "CHEETAH_CUST_ID", "CHEETAH_FOLDER_ID", "CHEETAH_PROP_MAP_ID"):
        assert name in message, message
    assert "CHEETAH_CONSUMER_SECRET" not in message.split("not set")[0]  # it is set: not named as missing
    assert "CHEETAH_DEMO=1" in message
    assert seen == []  # nothing, and no secret, went to whatever listens on CHEETAH_SIM_PORT
    assert not (tmp_path / ".cheetah_demo").exists()
    with sa.create_engine(f"sqlite:///{db}").connect() as conn:
        has_ledger = sa.inspect(conn).has_table(send_ledger.name)
        rows = conn.execute(sa.select(sa.func.count()).select_from(send_ledger)).scalar() if has_ledger else 0
    assert rows == 0


def test_the_missing_settings_stop_every_run_before_any_step(tmp_path):
    """In process: a half-configured deployment's resources refuse to start, so no asset of the
    daily cycle runs, and the one message names each missing setting."""
    from cheetah_assets.sending.assets import SEND_ASSETS, SEND_CHECKS

    env = {k: v for k, v in DEPLOYMENT.items() if k not in ("CHEETAH_FOLDER_ID", "CUSTOMER_DB_URL")}
    resources = build_resources(env)
    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize(
            [*SEND_ASSETS, *SEND_CHECKS], partition_key="2026-11-23", resources=resources,
            instance=instance, raise_on_error=False,
        )
    assert not result.success
    assert not result.get_asset_materialization_events()
    joined = "\n".join(_error_texts(result))
    assert "RESOURCE_INIT_FAILURE" in joined and not any(e.is_step_start for e in result.all_events)
    assert "CHEETAH_FOLDER_ID, CUSTOMER_DB_URL are not set" in joined, joined
    assert "REAL-SECRET" not in joined and "REAL-KEY" not in joined


def _error_texts(result) -> list[str]:
    """Every error the run's events carry (resource initialisation, steps, the run), causes included."""
    out = []
    for event in result.all_events:
        error = getattr(event.event_specific_data, "error", None)
        while error is not None:
            out.append(f"{event.event_type_value}: {error.message.strip()}")
            error = error.cause
    return out


HALF_CONFIGURED = {
    "only the endpoint": {"CHEETAH_ENDPOINT": DEPLOYMENT["CHEETAH_ENDPOINT"], "CHEETAH_CONSUMER_SECRET": DEPLOYMENT["CHEETAH_CONSUMER_SECRET"]},
    "no CUSTOMER_DB_URL": {k: v for k, v in DEPLOYMENT.items() if k != "CUSTOMER_DB_URL"},
}


@pytest.mark.parametrize("case", sorted(HALF_CONFIGURED))
def test_the_cli_on_a_half_configured_deployment_prints_the_message_not_a_traceback_wall(tmp_path, case):
    """Regression (UX review): ``dagster asset materialize`` printed 76 lines, the one message twice
    inside two Dagster stack traces (resource initialisation, then the run). The executor now
    refuses the run before any resource starts: the message, a two-frame stack, nothing else
    (the two lines above it are Dagster's CLI's own SupersessionWarning)."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = _clean_env(DAGSTER_HOME=str(home), PYTHONPATH=str(ROOT), **HALF_CONFIGURED[case])
    command = [str(Path(sys.executable).with_name("dagster")), "asset", "materialize", "-m", "cheetah_assets.definitions",
               "--select", "cheetah_template_catalog", "--partition", "2026-11-20"]
    proc = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    out = proc.stdout + proc.stderr
    lines = out.splitlines()
    assert proc.returncode == 1, out
    (message,) = [line for line in lines if "not configured" in line]
    assert message.startswith("cheetah_assets.cheetah.errors.ConfigurationError: cheetah_assets is not configured"), out
    missing = [name for name in configuration.REQUIRED_VARIABLES if name not in HALF_CONFIGURED[case]]
    assert f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set" in message
    assert len(lines) <= 16 and sum(line.lstrip().startswith("File ") for line in lines) <= 2, out
    assert "Traceback" not in out and "RESOURCE_INIT" not in out and "caused by" not in out, out
    assert "PreviewWarning" not in out and "BetaWarning" not in out, out  # filtered in cheetah_assets/__init__.py
    assert "REAL-" not in out  # no secret printed


def test_a_configured_deployment_and_the_demo_run_in_process():
    assert configuration.mode_executor(DEPLOYMENT) is dg.in_process_executor
    assert configuration.mode_executor({"CHEETAH_DEMO": "1"}) is dg.in_process_executor
    assert configuration.mode_executor({}) is not dg.in_process_executor


def test_sensors_of_a_half_configured_deployment_refuse_with_the_same_message():
    from cheetah_assets.automation.send_sensors import cancellation_sensor

    resources = build_resources({"CHEETAH_ENDPOINT": "https://api.cheetah.example"})
    with dg.DagsterInstance.ephemeral() as instance:
        ctx = dg.build_sensor_context(instance=instance, resources=resources)
        with pytest.raises(Exception) as err:
            cancellation_sensor(ctx)
    text = str(err.value) + str(err.value.__cause__ or "")
    assert "CUSTOMER_DB_URL" in text and "CHEETAH_CUST_ID" in text


@settings(max_examples=60, deadline=None)
@given(st.sets(st.sampled_from(configuration.REQUIRED_VARIABLES)))
def test_every_missing_variable_is_named_and_no_other(missing):
    env = {k: v for k, v in DEPLOYMENT.items() if k not in missing}
    problems = configuration.configuration_problems(env)
    if not missing:
        assert problems == []
        return
    (problem,) = problems
    named = set(problem.replace(" are not set", "").replace(" is not set", "").split(", "))
    assert named == set(missing)


@pytest.mark.parametrize("blank", ["", "   "])
def test_a_blank_variable_counts_as_missing(blank):
    env = {**DEPLOYMENT, "CHEETAH_CUST_ID": blank}
    assert configuration.missing_variables(env) == ["CHEETAH_CUST_ID"]


def test_a_complete_deployment_reads_every_value_through_envvar():
    resources = build_resources(DEPLOYMENT)
    cheetah = resources["cheetah"]
    assert type(cheetah).__name__ == "CheetahMessagingResource"
    assert cheetah.require_https is True
    # EnvVars, not values: nothing of the secret is in the resource's config
    assert "REAL-SECRET" not in repr(cheetah.__dict__) and "REAL-KEY" not in repr(cheetah.__dict__)


@pytest.mark.parametrize("endpoint", ["http://127.0.0.1:8765", "http://localhost:8765", "http://[::1]:9"])
def test_a_deployment_never_speaks_plain_http_not_even_to_loopback(endpoint):
    env = {**DEPLOYMENT, "CHEETAH_ENDPOINT": endpoint}
    (problem,) = configuration.configuration_problems(env)
    assert "https://" in problem and "CHEETAH_DEMO=1" in problem
    assert type(build_resources(env)["cheetah"]).__name__ == "UnconfiguredCheetah"
    # and the resource itself refuses it at run time, whatever the environment said at load time
    from cheetah_assets.cheetah.resource import CheetahMessagingResource

    raw = {f: DEPLOYMENT[v] for f, v in configuration.ENV_VARS.items() if f != "endpoint"}
    with pytest.raises(InsecureEndpoint):
        CheetahMessagingResource(endpoint=endpoint, require_https=True, **raw).settings()


def test_the_demo_is_used_only_when_asked_for_and_never_reads_real_credentials():
    assert type(build_resources({})["cheetah"]).__name__ == "UnconfiguredCheetah"
    env = {**DEPLOYMENT, "CHEETAH_DEMO": "1", "CHEETAH_SIM_PORT": "8799"}
    env.pop("CUSTOMER_DB_URL")
    cheetah = build_resources(env)["cheetah"]
    assert cheetah.endpoint == "http://127.0.0.1:8799"
    assert cheetah.consumer_secret == configuration.DEMO_ACCOUNT["consumer_secret"]
    assert cheetah.consumer_key == configuration.DEMO_ACCOUNT["consumer_key"]
    assert cheetah.client_id == configuration.DEMO_ACCOUNT["client_id"]
    assert "REAL" not in repr(cheetah.__dict__)


@pytest.mark.parametrize("value", ["maybe", "2", "demo"])
def test_an_unclear_demo_switch_is_refused(value):
    with pytest.raises(ConfigurationError, match="CHEETAH_DEMO"):
        build_resources({"CHEETAH_DEMO": value})


@pytest.mark.parametrize("value", ["0", "false", "no", ""])
def test_a_demo_switch_turned_off_means_a_deployment(value):
    assert type(build_resources({"CHEETAH_DEMO": value})["cheetah"]).__name__ == "UnconfiguredCheetah"


LOAD_AND_REPORT = """
import json, os, threading
before = dict(os.environ)
threads = threading.active_count()
from cheetah_assets.definitions import defs
defs.resolve_asset_graph()
print(json.dumps({"env_changed": dict(os.environ) != before, "threads": threading.active_count() - threads}))
"""


@pytest.mark.parametrize("mode", ["nothing set", "demo", "deployment"])
def test_loading_the_definitions_has_no_side_effects(tmp_path, mode):
    """Regression (issue 10.7, needed by 8.1): loading used to set os.environ, start a simulator
    thread and seed a database in the working directory."""
    extra = {"nothing set": {}, "demo": {"CHEETAH_DEMO": "1"}, "deployment": DEPLOYMENT}[mode]
    proc = subprocess.run(
        [sys.executable, "-c", LOAD_AND_REPORT], cwd=tmp_path, env=_clean_env(**extra),
        capture_output=True, text=True, timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report == {"env_changed": False, "threads": 0}
    assert list(tmp_path.iterdir()) == []  # no demo folder, no database, nothing written



def test_every_malformed_value_is_named_at_once_and_the_deployment_is_not_configured():
    """Two malformed values were named one at a time, and configuration_problems returned [] (the
    code location counted as configured)."""
    env = {**DEPLOYMENT, "CHEETAH_CUST_ID": "abc", "CHEETAH_FOLDER_ID": "xyz", "CHEETAH_PROP_MAP_ID": "-1",
           "CHEETAH_ENDPOINT": "https://api.cheetah.example/services2/api"}  # opaque Folder ID, PROP_MAP_ID: fine
    problems = configuration.configuration_problems(env)
    assert [p.split(" env ")[1].split(")")[0] for p in problems] == ["CHEETAH_ENDPOINT", "CHEETAH_CUST_ID"], problems
    assert "host only" in problems[0] and "'abc'" in problems[1]
    assert not any("REAL-" in p for p in problems)
    assert type(build_resources(env)["cheetah"]).__name__ == "UnconfiguredCheetah"
    env.pop("CHEETAH_CLIENT_ID")  # a missing variable too: everything in one list
    problems = configuration.configuration_problems(env)
    assert len(problems) == 3 and problems[0] == "CHEETAH_CLIENT_ID is not set"


def test_the_not_configured_message_names_a_readme_section_that_exists():
    """Regression (review of this stop): it sent people to "the README's 'Embedded defaults and real
    configuration'", a section that does not exist."""
    import re
    from pathlib import Path

    from cheetah_assets.configuration import not_configured_message

    (section,) = re.findall(r"README's section '([^']+)'", not_configured_message(["CHEETAH_CUST_ID is not set"]))
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    assert f"\n## {section}\n" in readme
