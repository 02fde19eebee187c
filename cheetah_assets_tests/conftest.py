"""Shared fixtures: a real simulator over HTTP, a real SQLite customer database, real resources.

Loading ``cheetah_assets.definitions`` has no side effects and reads no setting until a run
starts, so nothing needs pinning here. Tests build their own resources; tests of the production
definitions in processes of their own get an environment from :func:`production_env`.
"""

from __future__ import annotations

import datetime as dt

import pytest

from cheetah_assets.cheetah.resource import CheetahMessagingResource
from cheetah_assets.clock import ClockResource
from cheetah_assets.customers.resource import CustomerDatabaseResource
from cheetah_assets.configuration import DEMO_ACCOUNT
from cheetah_assets.simulator import SimulatorServer

#: The simulator's demo account, as the resources take it.
DEMO_CREDENTIALS = dict(DEMO_ACCOUNT)


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
    """The environment that points the production definitions at the simulator, for tests in
    processes of their own: the demo switch (the only way to reach a plain-HTTP simulator) with
    the simulator's port, and the test's database."""
    return {"CHEETAH_DEMO": "1", "CHEETAH_SIM_PORT": str(sim.port), "CUSTOMER_DB_URL": db_url}
