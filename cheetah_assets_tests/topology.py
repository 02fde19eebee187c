"""The production topology on this machine, for ``test_deploy.py``: ``dagster code-server start``,
``dagster-daemon run`` and ``dagster-webserver`` as three processes of their own, on the
``deploy/`` files, with a small GraphQL client and bounded waits.

Every process runs in a session of its own, so that stopping one stops its children (run
workers) too; :meth:`Topology.close` stops whatever is still running, and is meant for
``finally``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, TypeVar

import requests

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
BIN = Path(sys.executable).parent
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, *, every: float = 1.0,
              explain: Callable[[], str] = lambda: "") -> T:
    """Call ``probe`` until it returns something truthy; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{explain()}")
        time.sleep(every)


class Topology:
    """Three Dagster services on ``home`` (a DAGSTER_HOME holding deploy/dagster.yaml)."""

    def __init__(self, home: Path, env: dict[str, str], logs: Path):
        self.home, self.env, self.logs = home, env, logs
        self.code_port, self.web_port = int(env["CHEETAH_CODE_SERVER_PORT"]), free_port()
        self.procs: dict[str, subprocess.Popen] = {}
        self.starts: dict[str, int] = {}

    # ------------------------------------------------------------------------------ processes
    def argv(self, name: str) -> list[str]:
        workspace = str(DEPLOY / "workspace.yaml")
        return {
            "code-server": [str(BIN / "dagster"), "code-server", "start", "-h", "127.0.0.1", "-p", str(self.code_port),
                            "-m", "cheetah_assets.definitions", "--location-name", "cheetah_assets"],
            "daemon": [str(BIN / "dagster-daemon"), "run", "-w", workspace],
            "webserver": [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(self.web_port), "-w", workspace],
        }[name]

    def start(self, name: str) -> None:
        self.starts[name] = self.starts.get(name, 0) + 1
        log = open(self.logs / f"{name}-{self.starts[name]}.log", "w")
        with log:
            self.procs[name] = subprocess.Popen(
                self.argv(name), cwd=self.home, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 60) -> None:
        proc = self.procs.pop(name, None)
        if proc is None:
            return
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        # Children that outlived the group leader (a run worker) go too.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def close(self) -> None:
        # Every process is asked to stop first, then each is waited for: they shut down side by side.
        for proc in self.procs.values():
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for name in list(self.procs):
            self.stop(name, timeout=30)

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            assert proc.poll() is None, f"{name} exited ({proc.returncode})\n{self.tail(name)}"

    def tail(self, name: str, chars: int = 4000) -> str:
        path = self.logs / f"{name}-{self.starts.get(name, 1)}.log"
        return f"--- {path.name}:\n" + (path.read_text(errors="replace")[-chars:] if path.exists() else "(none)")

    def tails(self) -> str:
        return "\n".join(self.tail(n) for n in ("code-server", "daemon", "webserver"))

    # -------------------------------------------------------------------------------- GraphQL
    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict:
        reply = requests.post(
            f"http://127.0.0.1:{self.web_port}/graphql", json={"query": query, "variables": variables or {}}, timeout=60
        )
        reply.raise_for_status()
        body = reply.json()
        assert not body.get("errors"), body["errors"]
        return body["data"]

    def graphql_or_none(self, query: str, variables: dict[str, Any] | None = None) -> dict | None:
        try:
            return self.graphql(query, variables)
        except (requests.RequestException, ValueError, AssertionError):
            return None
