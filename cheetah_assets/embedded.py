"""The demo's moving parts: the simulator on loopback and the seeded demo database.

Only the demo and dev commands (``demo.py``, ``dev.py``) import this module; the code location
never does, so loading the definitions starts and seeds nothing. Which settings the demo uses is
``configuration.py``'s business (``CHEETAH_DEMO=1``).
"""

from __future__ import annotations

import datetime as dt
import socket
import threading

import sqlalchemy as sa

from .configuration import DEFAULT_SIM_PORT
from .customers.resource import CustomerDatabaseResource
from .customers.seed import seed_demo
from .simulator.server import SimulatorServer

DEMO_CUSTOMERS = 20_000

_lock = threading.Lock()
_server: SimulatorServer | None = None


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def free_port(preferred: int = DEFAULT_SIM_PORT) -> int:
    """``preferred`` if nothing listens there, else any free port."""
    if not listening(preferred):
        return preferred
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_simulator(port: int = DEFAULT_SIM_PORT, *, live_clock: bool = True, now: dt.datetime | None = None,
                    state_path=None):
    """Start the demo simulator in this process on ``port`` unless something already listens there.
    ``state_path``: its state and clock live in that SQLite file (restored if it holds them; ``now``
    then only moves the clock forward, never back)."""
    global _server
    with _lock:
        if _server is not None or listening(port):
            return _server
        _server = SimulatorServer(seed="demo", port=port, live_clock=live_clock, state_path=state_path)
        _server.start()
        if now is not None and (not _server.restored or _server.admin.now() < now):
            _server.admin.set_now(now)
        return _server


def ensure_seeded(url: str, *, customers: int = DEMO_CUSTOMERS, today=None, now=None, past_days: int = 0) -> bool:
    """Seed the demo customer database if it has no customers table (campaigns on 3 days from
    ``today``, and on ``past_days`` days before it); True if it seeded."""
    engine = CustomerDatabaseResource(url=url).get_engine(create=True)
    if sa.inspect(engine).has_table("customers"):
        return False
    seed_demo(engine, customers=customers, days=3, today=today, now=now, past_days=past_days)
    return True
