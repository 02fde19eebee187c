"""The simulator's state file (``--state PATH``): every confirmed change survives a ``kill -9``
and a restart on the same file, the clock included."""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import time
from types import SimpleNamespace

from cheetah_assets.cheetah.contract import CAMPAIGN_PATH, IMPORT_PATH
from cheetah_assets.simulator.admin import SimulatorAdmin
from cheetah_assets_tests.test_simulator import Api, T0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(path, port: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "cheetah_assets.simulator", "--port", str(port), "--state", str(path),
         "--now", T0.isoformat(), "--rate-limit", "0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read().decode()
            time.sleep(0.1)


def test_state_and_clock_survive_kill_9_and_restart(tmp_path):
    path, port = tmp_path / "simulator.db", _free_port()
    proc = _start(path, port)
    try:
        sim = SimpleNamespace(url=f"http://127.0.0.1:{port}")
        admin = SimulatorAdmin(sim.url)
        admin.add_account(consumerKey="bu2-key", folder={"id": 4343, "name": "Other BU", "parentId": 1}, templates=[])
        api = Api(sim)
        list_id = api.make_list(3)
        sent_id = api.approved("Sent one", list_id, T0 + dt.timedelta(hours=1))
        waiting_id = api.approved("Waiting one", list_id, T0 + dt.timedelta(days=2))
        admin.advance(dt.timedelta(hours=2))  # the first goes out
        before = {
            "now": admin.now(),
            "sent": admin.sent(),
            "lists": admin.lists(),
            "waiting": api.get(CAMPAIGN_PATH, id=waiting_id).json(),
            "import": api.get(IMPORT_PATH, id=1).json(),
        }
        api.http.close()
        admin.close()
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # no shutdown hook runs
        proc.wait()

    proc = _start(path, port)  # --now is ignored: the file holds a clock
    try:
        admin = SimulatorAdmin(sim.url)
        assert admin.now() == before["now"] == T0 + dt.timedelta(hours=2)
        assert admin.sent() == before["sent"] and [c["campId"] for c in before["sent"]["campaigns"]] == [sent_id]
        assert admin.lists() == before["lists"]
        api = Api(sim)
        assert api.get(CAMPAIGN_PATH, id=waiting_id).json() == before["waiting"]
        assert api.get(IMPORT_PATH, id=1).json() == before["import"]
        assert api.call("GET", CAMPAIGN_PATH, params={"id": 1}, headers={}).status_code in (200, 404)
        # the other account survived: its key gets a token
        r = api.http.post(sim.url + "/token", data={"grant_type": "password", "username": "bu2-key",
                                                    "password": "x", "client_id": "y"}, timeout=5)
        assert r.status_code != 500
        # and the world goes on from there: the waiting campaign is sent when its time comes, once
        admin.advance(dt.timedelta(days=2))
        assert sorted(c["campId"] for c in admin.sent(recipients=False)["campaigns"]) == sorted([sent_id, waiting_id])
        assert admin.sent()["duplicates"] == 0
        api.http.close()
        admin.close()
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


def test_without_a_state_path_the_simulator_writes_nothing(tmp_path):
    from cheetah_assets.simulator.server import SimulatorServer

    with SimulatorServer(now=T0) as server:
        assert server.store is None
    assert list(tmp_path.iterdir()) == []
