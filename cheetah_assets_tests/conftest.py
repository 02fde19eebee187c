"""Shared fixtures: a real simulator over HTTP, a real SQLite customer database, real resources.

Loading ``cheetah_assets.definitions`` has no side effects and reads no setting until a run
starts, so nothing needs pinning here. Tests build their own resources; tests of the production
definitions in processes of their own get an environment from :func:`production_env`.
"""

from __future__ import annotations

import datetime as dt

import pytest

from cheetah_assets.cheetah.resource import CheetahMessagingResource
from cheetah_assets.cheetah.settings import demo_account
from cheetah_assets.clock import ClockResource
from cheetah_assets.customers.resource import CustomerDatabaseResource
from cheetah_assets.simulator.server import SimulatorServer

#: The simulator's demo account, as the resources take it (the settings' own demo values).
DEMO_CREDENTIALS = demo_account()


def pytest_terminal_summary(terminalreporter):
    """Print the summary lines tests recorded (``record_property("summary", …)``), such as the fault
    suite's: under pytest-xdist a worker's own output never reaches the terminal."""
    for status in ("passed", "failed"):
        for report in terminalreporter.getreports(status):
            for name, value in getattr(report, "user_properties", []):
                if name == "summary":
                    terminalreporter.write_line(str(value))


def pytest_collection_modifyitems(items):
    """The longest tests first (``@pytest.mark.slow(seconds=…)``, longest first; stable otherwise),
    so that on pytest-xdist workers (``--dist load``, one test handed out at a time) they start at
    once, side by side, and the short ones fill in around them instead of one long test
    finishing alone at the end."""

    def weight(item) -> float:
        marker = item.get_closest_marker("slow")
        return -float(marker.kwargs.get("seconds", 30)) if marker else 0.0

    items.sort(key=weight)


@pytest.fixture(autouse=True)
def no_stale_defs_state_storage():
    """Each test starts with no current defs-state storage. Dagster keeps one in a context
    variable; one left behind by an earlier test's (closed) instance makes the next in-process
    ``materialize`` fail with "Attempted to resolve undefined DagsterInstance weakref", depending
    on which tests ran before on the same worker."""
    from dagster._core.storage.defs_state.base import set_defs_state_storage

    with set_defs_state_storage(None):
        yield


@pytest.fixture(scope="session")
def sim_server():
    with SimulatorServer(seed="demo") as server:
        yield server


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory) -> tuple[str, str, str]:
    """A test CA and a certificate it issued for 127.0.0.1 and localhost: (chain, key, CA bundle)."""
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    folder = tmp_path_factory.mktemp("tls")
    chain, key, bundle = folder / "chain.pem", folder / "key.pem", folder / "ca.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(chain))
    cert.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(bundle))
    return str(chain), str(key), str(bundle)


@pytest.fixture(scope="session")
def tls_sim_server(tls_files):
    with SimulatorServer(seed="demo", tls=tls_files) as server:
        yield server


def _demo_at_six(server):
    """``server`` reset to the demo account, its clock pinned to 06:00 UTC today and its rate limit
    off (see :func:`sim`); its faults cleared afterwards."""
    today = dt.datetime.now(dt.timezone.utc).date()
    start = dt.datetime.combine(today, dt.time(6, 0), tzinfo=dt.timezone.utc)
    server.admin.reset(seed="demo", now=start, rate_limit=0)
    yield server
    server.admin.clear_faults()


@pytest.fixture
def tls_sim(tls_sim_server):
    """The simulator over https:// (certificate from a test CA), reset like :func:`sim`: what a
    deployment's https-only settings can reach, with ``REQUESTS_CA_BUNDLE`` naming the test CA."""
    yield from _demo_at_six(tls_sim_server)


@pytest.fixture
def sim(sim_server):
    """The simulator, reset to the demo account, its clock pinned to 06:00 UTC today.

    Today is the newest daily partition, and 06:00 leaves the rest of the day for send times.
    The account's rate limit is off: with the tests' near-zero poll and backoff intervals a run
    bursts past 20 requests a second, and every one-second ``Retry-After`` wait would be test
    time spent sleeping. 429s are injected as faults where a test wants them, and the tests that
    are about the rate limit (and one full day, ``test_send_path``) turn it back on."""
    yield from _demo_at_six(sim_server)


@pytest.fixture
def day(sim) -> dt.date:
    """The simulator's date: today, the newest daily partition (its clock stands at 06:00 UTC)."""
    return sim.admin.now().date()


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
    processes of their own.

    For the https simulator (:func:`tls_sim`) it is a deployment's: every ``CHEETAH_*`` variable,
    ``CUSTOMER_DB_URL``, and ``REQUESTS_CA_BUNDLE`` naming the test CA (certificate checks stay
    on). For the plain-HTTP one it is the demo switch with the simulator's port, the only way a
    deployment's code reaches a plain-HTTP simulator."""
    if sim.tls:
        from cheetah_assets.cheetah.resource import ENV_VARS

        values = {**DEMO_CREDENTIALS, "endpoint": sim.url}
        return {
            **{var: values[field] for field, var in ENV_VARS.items()},
            "CUSTOMER_DB_URL": db_url,
            "REQUESTS_CA_BUNDLE": sim.tls[2],
        }
    return {"CHEETAH_DEMO": "1", "CHEETAH_SIM_PORT": str(sim.port), "CUSTOMER_DB_URL": db_url}
