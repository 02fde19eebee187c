"""Shared fixtures: a real simulator over HTTP, a real SQLite customer database, real resources.

Importing ``cheetah_assets.definitions`` with no ``CHEETAH_ENDPOINT`` would start the embedded
defaults (simulator on port 8765, a demo database in the working directory). Tests build their
own resources instead, so the variables are pinned here to a harmless, unreachable endpoint; the
embedded mode has a test of its own (test_definitions.py) that runs in a subprocess.
"""

from __future__ import annotations

import datetime as dt
import os

import pytest

os.environ.setdefault("CHEETAH_ENDPOINT", "https://cheetah.invalid")
for _name, _value in {
    "CHEETAH_CUST_ID": "1234",
    "CHEETAH_FOLDER_ID": "4242",
    "CHEETAH_PROP_MAP_ID": "77",
    "CHEETAH_CONSUMER_KEY": "unused-key",
    "CHEETAH_CONSUMER_SECRET": "unused-secret",
    "CHEETAH_CLIENT_ID": "unused-client",
    "CUSTOMER_DB_URL": "sqlite:///:memory:",
}.items():
    os.environ.setdefault(_name, _value)

from cheetah_assets.cheetah.resource import CheetahMessagingResource  # noqa: E402
from cheetah_assets.clock import ClockResource  # noqa: E402
from cheetah_assets.customers.resource import CustomerDatabaseResource  # noqa: E402
from cheetah_assets.simulator import SimulatorServer  # noqa: E402

DEMO_CREDENTIALS = dict(
    cust_id="1234",
    folder_id="4242",
    prop_map_id="77",
    consumer_key="demo-consumer-key",
    consumer_secret="demo-consumer-secret",
    client_id="demo-client-id",
)


@pytest.fixture(scope="session")
def sim_server():
    with SimulatorServer(seed="demo") as server:
        yield server


@pytest.fixture
def sim(sim_server):
    """The simulator, reset to the demo account, its clock pinned to 06:00 UTC today.

    Today is the newest daily partition, and 06:00 leaves the rest of the day for send times.
    The account's rate limit is off: with the tests' near-zero poll and backoff intervals a run
    bursts past 20 requests a second, and every one-second ``Retry-After`` wait would be test
    time spent sleeping. 429s are injected as faults where a test wants them, and the tests that
    are about the rate limit (and one full day, ``test_send_path``) turn it back on."""
    today = dt.datetime.now(dt.timezone.utc).date()
    start = dt.datetime.combine(today, dt.time(6, 0), tzinfo=dt.timezone.utc)
    sim_server.admin.reset(seed="demo", now=start, rate_limit=0)
    yield sim_server
    sim_server.admin.clear_faults()


def cheetah_resource(sim, **overrides) -> CheetahMessagingResource:
    """The resource pointed at the simulator, with retries fast enough for tests."""
    config = dict(
        endpoint=sim.url,
        **DEMO_CREDENTIALS,
        timeout_seconds=5.0,
        max_retries=4,
        backoff_factor=0.01,
        import_poll_interval_seconds=0.01,
        import_timeout_seconds=30.0,
    )
    config.update(overrides)
    return CheetahMessagingResource(**config)


@pytest.fixture
def db_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'customers.db'}"


def make_resources(sim, db_url: str, now: dt.datetime | None = None, **cheetah_overrides) -> dict:
    return {
        "cheetah": cheetah_resource(sim, **cheetah_overrides),
        "customer_db": CustomerDatabaseResource(url=db_url),
        "clock": ClockResource(fixed_now=(now or sim.admin.now()).isoformat()),
    }


def production_env(sim, db_url: str) -> dict[str, str]:
    """The environment variables a deployment sets (``resources.py``), pointed at the simulator:
    for tests of the production definitions, in processes of their own."""
    from cheetah_assets.cheetah.resource import ENV_VARS

    return {
        **{var: (sim.url if name == "endpoint" else DEMO_CREDENTIALS[name]) for name, var in ENV_VARS.items()},
        "CUSTOMER_DB_URL": db_url,
    }
