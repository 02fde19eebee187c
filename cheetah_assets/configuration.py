"""Which account and database the code location works on: a deployment's, or the demo's.

There are exactly two modes, and the environment chooses between them explicitly:

* **Deployment** (the default). Every setting comes from its environment variable through
  Dagster's ``EnvVar``, so no value appears in run config. All of them are required
  (:data:`REQUIRED_VARIABLES`), and ``CHEETAH_ENDPOINT`` must be ``https://``. If any is missing,
  the code location still loads (its lineage can be browsed), but every run is refused by its
  executor before any resource or step starts (:func:`mode_executor`), and every resource refuses
  to start (sensors, in-process runs), each with one message naming *every* missing setting: no
  run, sensor or schedule reads the database or calls Cheetah Messaging. Nothing falls back to a
  default.
* **Demo** (``CHEETAH_DEMO=1``, which ``./run demo`` and ``./run dev`` set). The Cheetah side is
  the simulator's demo account on ``http://127.0.0.1:$CHEETAH_SIM_PORT`` (8765 by default), with
  the simulator's demo credentials. The ``CHEETAH_*`` account variables are never read in this
  mode, so real credentials can never be sent to a simulator. The customer database is
  ``$CUSTOMER_DB_URL`` if set, else the demo SQLite file ``$CHEETAH_DEMO_DIR/customers.db``.

In both modes, three optional settings time the send path (read at definitions load; each bad
value is a one-sentence :class:`ConfigurationError` naming its variable): ``CHEETAH_ACCOUNT_TIME_ZONE``
(IANA, default UTC: the business day of the partitions and schedules), ``CHEETAH_LEAD_TIME_MINUTES``
(default 120: how long before its send time a campaign is prepared) and ``CHEETAH_PARTITION_START``
(default 2026-11-01: the first daily partition).

Reading this module has no side effects: nothing is started, seeded or written. The demo's
simulator and database are started and seeded by the demo and dev commands (``embedded.py``).
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Mapping

import dagster as dg

from .cheetah.errors import ConfigurationError
from .cheetah.resource import CheetahMessagingResource
from .cheetah.settings import ENV_VARS, demo_account, setting_problems
from .customers.resource import CustomerDatabaseResource
from .timeutil import zone
from .sending.timing import DEFAULT_LEAD, MAX_LEAD

#: The one switch that selects the demo: ``1`` (or true/yes/on) for the demo, unset or ``0`` otherwise.
DEMO_SWITCH = "CHEETAH_DEMO"
SIM_PORT_VARIABLE = "CHEETAH_SIM_PORT"
DEMO_DIR_VARIABLE = "CHEETAH_DEMO_DIR"
CUSTOMER_DB_VARIABLE = "CUSTOMER_DB_URL"
DEFAULT_SIM_PORT = 8765

#: The simulator's demo account (``simulator/``'s seed "demo"), from the settings' own demo values.
#: Not secrets: they open nothing real.
DEMO_ACCOUNT: dict[str, str] = demo_account()

#: The demo's send-path set-up check imports this address (the simulator mails nobody anyway).
DEMO_TEST_ADDRESS = "setup-check@demo.example"

#: Every variable a deployment must set, in the order messages name them.
REQUIRED_VARIABLES: tuple[str, ...] = (*ENV_VARS.values(), CUSTOMER_DB_VARIABLE)

#: The send path's timing (both modes; see the README's "Times, zones and the lead time").
ACCOUNT_ZONE_VARIABLE = "CHEETAH_ACCOUNT_TIME_ZONE"
LEAD_TIME_VARIABLE = "CHEETAH_LEAD_TIME_MINUTES"
PARTITION_START_VARIABLE = "CHEETAH_PARTITION_START"
DEFAULT_ACCOUNT_ZONE = "UTC"
DEFAULT_PARTITION_START = "2026-11-01"

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})


def demo_requested(env: Mapping[str, str] | None = None) -> bool:
    """True when ``CHEETAH_DEMO`` asks for the demo; a value that is neither yes nor no is an error."""
    raw = (os.environ if env is None else env).get(DEMO_SWITCH, "").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ConfigurationError(f"{DEMO_SWITCH} must be 1 (the demo) or 0 (a deployment), got {raw!r}.")


def demo_port(env: Mapping[str, str] | None = None) -> int:
    raw = (os.environ if env is None else env).get(SIM_PORT_VARIABLE, "").strip()
    if not raw:
        return DEFAULT_SIM_PORT
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ConfigurationError(f"{SIM_PORT_VARIABLE} must be a port number, got {raw!r}.")
    return int(raw)


def demo_dir(env: Mapping[str, str] | None = None) -> Path:
    raw = (os.environ if env is None else env).get(DEMO_DIR_VARIABLE, "").strip()
    return Path(raw) if raw else Path.cwd() / ".cheetah_demo"


def demo_db_url(env: Mapping[str, str] | None = None) -> str:
    """The demo's customer database: ``$CUSTOMER_DB_URL`` if set, else the demo SQLite file."""
    env = os.environ if env is None else env
    return env.get(CUSTOMER_DB_VARIABLE, "").strip() or f"sqlite:///{(demo_dir(env) / 'customers.db').resolve()}"


def account_time_zone(env: Mapping[str, str] | None = None) -> str:
    """``CHEETAH_ACCOUNT_TIME_ZONE``: the IANA zone whose days are the send path's partitions."""
    raw = (os.environ if env is None else env).get(ACCOUNT_ZONE_VARIABLE, "").strip()
    if not raw:
        return DEFAULT_ACCOUNT_ZONE
    try:
        zone(raw)
    except ValueError:
        raise ConfigurationError(
            f"{ACCOUNT_ZONE_VARIABLE} must be an IANA time zone name such as Europe/Paris, got {raw!r}."
        ) from None
    return raw


def lead_time_minutes(env: Mapping[str, str] | None = None) -> int:
    """``CHEETAH_LEAD_TIME_MINUTES``: how long before its send time a campaign is prepared."""
    raw = (os.environ if env is None else env).get(LEAD_TIME_VARIABLE, "").strip()
    if not raw:
        return int(DEFAULT_LEAD.total_seconds() // 60)
    most = int(MAX_LEAD.total_seconds() // 60)
    if not raw.isdigit() or not 0 < int(raw) <= most:
        raise ConfigurationError(f"{LEAD_TIME_VARIABLE} must be a whole number of minutes from 1 to {most}, got {raw!r}.")
    return int(raw)


def partition_start(env: Mapping[str, str] | None = None) -> str:
    """``CHEETAH_PARTITION_START``: the first day of the send path's daily partitions (ISO date)."""
    raw = (os.environ if env is None else env).get(PARTITION_START_VARIABLE, "").strip()
    if not raw:
        return DEFAULT_PARTITION_START
    try:
        return dt.date.fromisoformat(raw).isoformat()
    except ValueError:
        raise ConfigurationError(f"{PARTITION_START_VARIABLE} must be a date such as 2026-11-01, got {raw!r}.") from None


def missing_variables(env: Mapping[str, str] | None = None) -> list[str]:
    """The required variables that are unset or blank, in :data:`REQUIRED_VARIABLES` order."""
    env = os.environ if env is None else env
    return [name for name in REQUIRED_VARIABLES if not env.get(name, "").strip()]


def configuration_problems(env: Mapping[str, str] | None = None) -> list[str]:
    """Everything wrong with a deployment's environment that can be told without a network call:
    the variables not set, then every malformed value, all at once (none counts as configured)."""
    env = os.environ if env is None else env
    problems = []
    missing = missing_variables(env)
    if missing:
        problems.append(f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set")
    endpoint = env.get(ENV_VARS["endpoint"], "").strip()
    if endpoint and not endpoint.lower().startswith("https://"):
        problems.append(
            f"{ENV_VARS['endpoint']} must be an https:// URL (plain http:// is only for the simulator, "
            f"which {DEMO_SWITCH}=1 selects with its own demo credentials)"
        )
    # Every malformed value, each on its own (a plain-http endpoint is said above, once).
    given = {field: env.get(var, "") for field, var in ENV_VARS.items() if env.get(var, "").strip()}
    if not endpoint.lower().startswith("https://"):
        given.pop("endpoint", None)
    problems += [problem.rstrip(".") for problem in setting_problems(given, require_https=True)]
    return problems


def not_configured_message(problems: list[str]) -> str:
    return (
        "cheetah_assets is not configured, so it did nothing (no database read, no call to Cheetah "
        f"Messaging): {'; '.join(problems)}. Set them as the README's section 'The demo, and real "
        f"configuration' says, or set {DEMO_SWITCH}=1 to run the demo on the simulator."
    )


def _refuse_to_start(self, *args, **kwargs):
    """Every entry point of a stand-in resource: the message names what is missing."""
    raise ConfigurationError(self.not_configured)


class UnconfiguredCheetah(CheetahMessagingResource):
    """Stands in for the Cheetah resource of a half-configured deployment: it refuses to start."""

    not_configured: str
    setup_for_execution = settings = get_client = _refuse_to_start


class UnconfiguredCustomerDatabase(CustomerDatabaseResource):
    """Stands in for the customer database of a half-configured deployment: it refuses to start."""

    not_configured: str
    setup_for_execution = get_engine = ensure_tables = _refuse_to_start


class _RefusingExecutor(dg.Executor):
    """The executor of every run in a half-configured deployment: it refuses the run with the one
    message before any resource or step starts. Dagster prints that as the run's failure with a
    two-frame stack; a resource refusing prints the message twice (the resource's failure, then
    the run's) among about 50 lines of Dagster's own frames (``dagster asset materialize``)."""

    def __init__(self, in_process: dg.Executor, message: str):
        self._in_process, self._message = in_process, message

    @property
    def retries(self):
        return self._in_process.retries

    def execute(self, plan_context, execution_plan):
        raise ConfigurationError(self._message)


def refusing_executor(message: str) -> dg.ExecutorDefinition:
    """``in_process_executor``'s name and config, refusing every run with ``message``."""

    @dg.executor(name=dg.in_process_executor.name, config_schema=dg.in_process_executor.config_schema)
    def in_process(init_context):
        return _RefusingExecutor(dg.in_process_executor.executor_creation_fn(init_context), message)

    return in_process


def mode_executor(env: Mapping[str, str] | None = None) -> dg.ExecutorDefinition:
    """The code location's executor: ``in_process_executor``, or in a half-configured deployment
    one that refuses every run with the message that names every problem."""
    problems = [] if demo_requested(env) else configuration_problems(env)
    return refusing_executor(not_configured_message(problems)) if problems else dg.in_process_executor


def deployment_resources(env: Mapping[str, str] | None = None) -> dict:
    """The Cheetah and customer-database resources of a deployment, every value an ``EnvVar``;
    stand-ins that refuse to start (naming every problem) when the environment is incomplete."""
    problems = configuration_problems(env)
    if problems:
        message = not_configured_message(problems)
        blank = {field: "" for field in ENV_VARS}
        return {
            "cheetah": UnconfiguredCheetah(**blank, not_configured=message),
            "customer_db": UnconfiguredCustomerDatabase(url="", not_configured=message),
        }
    return {
        "cheetah": CheetahMessagingResource.from_env(),
        "customer_db": CustomerDatabaseResource(url=dg.EnvVar(CUSTOMER_DB_VARIABLE)),
    }


def demo_resources(env: Mapping[str, str] | None = None, **cheetah_overrides) -> dict:
    """The resources of the demo: the simulator's demo account on loopback, the demo database.

    ``CHEETAH_CONSUMER_KEY`` and the other account variables are not read: whatever they hold
    stays on this side."""
    cheetah = CheetahMessagingResource(
        endpoint=f"http://127.0.0.1:{demo_port(env)}", **DEMO_ACCOUNT,
        # Paced just under the simulator's 20 requests a second: parallel sends without 429 waits.
        **{"test_address": DEMO_TEST_ADDRESS, "max_requests_per_second": 18.0, **cheetah_overrides},
    )
    return {"cheetah": cheetah, "customer_db": CustomerDatabaseResource(url=demo_db_url(env))}


def mode_resources(env: Mapping[str, str] | None = None) -> dict:
    """The demo's resources when ``CHEETAH_DEMO`` asks for them, else the deployment's."""
    return demo_resources(env) if demo_requested(env) else deployment_resources(env)
