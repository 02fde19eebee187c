"""The embedded defaults: everything on this machine, with no configuration at all.

This launcher is the only production-path module that imports the simulator. With no
``CHEETAH_ENDPOINT`` in the environment it

* points every setting at the demo account of the Cheetah Messaging simulator, and starts the
  simulator on ``127.0.0.1:8765`` in a background thread (unless one already answers there, for
  example the one started by ``dagster dev``'s code server, which the run workers then share);
* points ``CUSTOMER_DB_URL`` at ``.cheetah_demo/customers.db`` and seeds it with demo data if it
  has no customers table yet.

The simulator's clock runs with real time here, so campaigns go out at their send times while
``dagster dev`` is up. Its state lives in memory: restarting the code server starts a new account.
"""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

DEMO_PORT = int(os.environ.get("CHEETAH_SIM_PORT", "8765"))
DEMO_CUSTOMERS = int(os.environ.get("CHEETAH_DEMO_CUSTOMERS", "20000"))

DEMO_SETTINGS = {
    "CHEETAH_CUST_ID": "1234",
    "CHEETAH_FOLDER_ID": "4242",
    "CHEETAH_PROP_MAP_ID": "77",
    "CHEETAH_CONSUMER_KEY": "demo-consumer-key",
    "CHEETAH_CONSUMER_SECRET": "demo-consumer-secret",
    "CHEETAH_CLIENT_ID": "demo-client-id",
}

_lock = threading.Lock()
_server = None


def demo_dir() -> Path:
    return Path(os.environ.get("CHEETAH_DEMO_DIR", Path.cwd() / ".cheetah_demo"))


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def start_simulator(port: int = DEMO_PORT, *, live_clock: bool = True, now=None):
    """Start the demo simulator on ``port`` unless something already listens there."""
    global _server
    with _lock:
        if _server is not None or _listening(port):
            return _server
        from .simulator import SimulatorServer

        _server = SimulatorServer(seed="demo", port=port, live_clock=live_clock)
        _server.start()
        if now is not None:
            _server.admin.set_now(now)
        return _server


def use_embedded_defaults(*, port: int = DEMO_PORT, seed_customers: int | None = DEMO_CUSTOMERS) -> None:
    """Fill in every unset setting with the embedded defaults, start the simulator, and seed the
    database (unless ``seed_customers`` is None)."""
    os.environ.setdefault("CHEETAH_ENDPOINT", f"http://127.0.0.1:{port}")
    for name, value in DEMO_SETTINGS.items():
        os.environ.setdefault(name, value)
    if "CUSTOMER_DB_URL" not in os.environ:
        directory = demo_dir()
        directory.mkdir(parents=True, exist_ok=True)
        os.environ["CUSTOMER_DB_URL"] = f"sqlite:///{directory / 'customers.db'}"
    start_simulator(port)
    if seed_customers is not None:
        ensure_seeded(os.environ["CUSTOMER_DB_URL"], customers=seed_customers)


def ensure_seeded(url: str, *, customers: int = DEMO_CUSTOMERS, today=None, now=None) -> bool:
    """Seed the demo customer database if it has no customers table; True if it seeded."""
    import sqlalchemy as sa

    from .customers.resource import CustomerDatabaseResource
    from .customers.seed import seed_demo

    engine = CustomerDatabaseResource(url=url).get_engine()
    if sa.inspect(engine).has_table("customers"):
        return False
    seed_demo(engine, customers=customers, days=3, today=today, now=now)
    return True
