"""Serving the simulator: :class:`SimulatorServer` (uvicorn on loopback in a background thread,
for tests and the embedded demo) and :func:`main`, the ``cheetah-sim`` command."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import threading
from pathlib import Path
from typing import Any

import requests
import uvicorn

from ..timeutil import parse_iso
from .admin import SimulatorAdmin
from .app import build_app
from .persist import StateFile, persisting
from .state import SimState


def _base_protocol() -> type[asyncio.Protocol]:
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

        return HttpToolsProtocol
    except ImportError:  # httptools not installed: the pure-Python parser
        from uvicorn.protocols.http.h11_impl import H11Protocol

        return H11Protocol


def _registering_protocol(registry: dict[tuple, asyncio.Transport]) -> type[asyncio.Protocol]:
    """A uvicorn HTTP protocol class that records each connection's transport in ``registry``
    under the client address (``scope["client"]``), so the app can drop a connection."""
    base: Any = _base_protocol()

    class RegisteringProtocol(base):
        def connection_made(self, transport):  # type: ignore[override]
            super().connection_made(transport)
            if self.client:
                registry[tuple(self.client)] = transport

        def connection_lost(self, exc):  # type: ignore[override]
            if self.client:
                registry.pop(tuple(self.client), None)
            super().connection_lost(exc)

    return RegisteringProtocol


class SimulatorServer:
    """The simulator served by uvicorn.

    ``with SimulatorServer(seed="demo") as sim:`` starts it on ``host`` (default 127.0.0.1) and
    ``port`` (default 0: an ephemeral port) in a daemon thread and stops it on exit. ``sim.url``
    is the base URL, ``sim.admin`` a :class:`SimulatorAdmin`, ``sim.state`` the
    :class:`SimState` itself. ``now``, ``rate_limit`` and ``token_ttl`` configure the initial
    reset (clock start and the demo account's limits). ``live_clock=True`` lets the simulated
    clock run with real time (the embedded demo); by default it is frozen unless moved.
    ``string_ids=True`` serves the string-id variant (:mod:`.variants`) after every reset that
    does not say otherwise.
    """

    def __init__(self, seed: str = "demo", *, host: str = "127.0.0.1", port: int = 0,
                 now: dt.datetime | None = None, rate_limit: int | None = None,
                 token_ttl: int | None = None, live_clock: bool = False, string_ids: bool = False,
                 startup_timeout: float = 10.0, tls: tuple[str, str, str] | None = None,
                 state_path: str | Path | None = None):
        self.state = SimState(seed, now, rate_limit=rate_limit, token_ttl=token_ttl, live_clock=live_clock,
                              string_ids=string_ids, rows_path=state_path)
        #: ``state_path``: the world and clock live in that SQLite file (:mod:`.persist`), restored
        #: from it when it holds one (``now``/``seed`` then apply only to a new file).
        self.store = StateFile(state_path) if state_path is not None else None
        #: True when the state was restored from ``state_path`` (not a new world).
        self.restored = self.store is not None and self.store.load(self.state)
        if self.store is not None and not self.restored:
            self.store.save(self.state)
        self.host = host
        self.port = port
        #: (certificate chain, private key, CA bundle) files: serve https:// (tests of a deployment's
        #: https-only settings); the CA bundle is what clients verify the certificate with.
        self.tls = tls
        self._startup_timeout = startup_timeout
        self._transports: dict[tuple, asyncio.Transport] = {}
        app = build_app(self.state, lambda scope: self._transports.get(tuple(scope.get("client") or ())))
        if self.store is not None:
            app = persisting(app, self.state, self.store)
        self._server = uvicorn.Server(uvicorn.Config(
            app,
            host=host,
            port=port,
            http=_registering_protocol(self._transports),
            lifespan="off",
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=2,
            # Longer than any pause between a test's admin calls: uvicorn's default (5 s) closed idle
            # keep-alive connections just as the admin client reused one ("connection reset by peer").
            timeout_keep_alive=300,
            ssl_certfile=tls[0] if tls else None,
            ssl_keyfile=tls[1] if tls else None,
        ))
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._admin: SimulatorAdmin | None = None

    # ---------------------------------------------------------------------------------- life cycle
    def start(self) -> "SimulatorServer":
        """Start serving in a daemon thread; returns once the port is bound (``RuntimeError`` if
        the server failed to start)."""
        if self._thread is not None:
            raise RuntimeError("The simulator is already running.")
        self._thread = threading.Thread(target=self._run, name="cheetah-simulator", daemon=True)
        self._thread.start()
        deadline = threading.Event()
        waited = 0.0
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError(f"The simulator failed to start on {self.host}:{self.port}: {self._error!r}")
            if waited >= self._startup_timeout:
                self.stop()
                raise RuntimeError(f"The simulator did not start within {self._startup_timeout} s.")
            deadline.wait(0.01)
            waited += 0.01
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    def _run(self) -> None:
        try:
            self._server.run()
        except BaseException as exc:  # reported by start()
            self._error = exc

    def stop(self) -> None:
        """Stop the server and wait (up to a few seconds) for its thread to end."""
        if self._admin is not None:
            self._admin.close()
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted (Ctrl-C): the CLI's mode."""
        self._server.run()

    def __enter__(self) -> "SimulatorServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ------------------------------------------------------------------------------------- access
    @property
    def url(self) -> str:
        """``http://HOST:PORT`` (``https://`` with ``tls``; the real port once started)."""
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    @property
    def admin(self) -> SimulatorAdmin:
        """A :class:`SimulatorAdmin` for this server."""
        if self._admin is None:
            session = None
            if self.tls:
                session = requests.Session()
                session.trust_env = False  # REQUESTS_CA_BUNDLE would override the CA given here
                session.verify = self.tls[2]
            self._admin = SimulatorAdmin(self.url, session=session)
        return self._admin

    def __repr__(self) -> str:
        return f"SimulatorServer(url={self.url!r}, seed={self.state.seed!r})"


def main(argv: list[str] | None = None) -> None:
    """``cheetah-sim --port 8765 --seed demo [--host 127.0.0.1] [--now ISO] [--rate-limit N] [--live-clock]
    [--string-ids] [--state PATH]``."""
    parser = argparse.ArgumentParser(prog="cheetah-sim", description="Serve the Cheetah Messaging simulator.")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port (default: 8765; 0 = any free port)")
    parser.add_argument("--seed", default="demo", help="seed of the demo account and metric curves (default: demo)")
    parser.add_argument("--now", default=None, type=parse_iso,
                        help="start the simulated clock at this ISO time (default: now)")
    parser.add_argument("--rate-limit", type=int, default=None,
                        help="requests/s of the demo account (default: 20; 0 = unlimited)")
    parser.add_argument("--live-clock", action="store_true",
                        help="let the simulated clock run with real time (default: frozen unless moved)")
    parser.add_argument("--string-ids", action="store_true",
                        help="serve ids and counts as strings, with extra fields and another key order, as a "
                             "second implementation of the contract may (default: numbers, as documented)")
    parser.add_argument("--state", default=None,
                        help="keep the state and clock in this SQLite file, restored on restart (default: in memory)")
    args = parser.parse_args(argv)
    server = SimulatorServer(args.seed, host=args.host, port=args.port, now=args.now, rate_limit=args.rate_limit,
                             live_clock=args.live_clock, string_ids=args.string_ids, state_path=args.state)
    variant = ", string ids" if args.string_ids else ""
    print(f"Cheetah Messaging simulator on http://{args.host}:{args.port} (seed {args.seed!r}{variant}); "
          "Ctrl-C stops it.", flush=True)
    server.serve_forever()
