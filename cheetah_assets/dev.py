"""``cheetah-dev`` (``./run dev``): ``dagster dev`` on the demo, with nothing else to set up.

It seeds the demo database if it has none, starts the Cheetah Messaging simulator (clock running
with real time) in a process of its own, and runs ``dagster dev -w workspace.yaml`` with
``CHEETAH_DEMO=1`` pointed at them; the simulator stops when ``dagster dev`` does. Dagster's
instance is always the demo folder's ``dagster_home`` (the one ``./run demo`` writes its runs to),
never the environment's ``DAGSTER_HOME``. Extra arguments go to
``dagster dev`` (``./run dev -p 3001``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from . import configuration
from .embedded import DEMO_CUSTOMERS, ensure_seeded, free_port, listening

ACCOUNT_VARIABLES = (*configuration.REQUIRED_VARIABLES, "CHEETAH_TEST_ADDRESS")


def demo_environment(base: dict[str, str], port: int, directory: Path) -> dict[str, str]:
    """``base`` with the demo selected, and no deployment setting left in it to be confused with."""
    env = {k: v for k, v in base.items() if k not in ACCOUNT_VARIABLES}
    env.update(
        {
            configuration.DEMO_SWITCH: "1",
            configuration.SIM_PORT_VARIABLE: str(port),
            configuration.DEMO_DIR_VARIABLE: str(directory),
        }
    )
    env["DAGSTER_HOME"] = str(directory / "dagster_home")  # the demo's instance, as cheetah-demo's
    return env


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    directory = configuration.demo_dir().resolve()
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port(configuration.demo_port())
    env = demo_environment(dict(os.environ), port, directory)
    Path(env["DAGSTER_HOME"]).mkdir(parents=True, exist_ok=True)
    customers = int(os.environ.get("CHEETAH_DEMO_CUSTOMERS", DEMO_CUSTOMERS))
    if ensure_seeded(configuration.demo_db_url(env), customers=customers):
        print(f"Seeded {customers:,} demo customers in {directory}/customers.db.", flush=True)
    simulator = subprocess.Popen(
        [sys.executable, "-m", "cheetah_assets.simulator", "--port", str(port), "--live-clock",
         "--state", str(directory / "simulator.db")], env=env
    )
    try:
        deadline = time.monotonic() + 60
        while not listening(port):
            if simulator.poll() is not None or time.monotonic() > deadline:
                print(f"The Cheetah Messaging simulator did not start on port {port}.", file=sys.stderr)
                return 1
            time.sleep(0.2)
        dagster = Path(sys.executable).with_name("dagster")
        workspace = Path(__file__).resolve().parents[1] / "workspace.yaml"
        target = ["-w", str(workspace)] if workspace.exists() else ["-m", "cheetah_assets.definitions"]
        return subprocess.call([str(dagster), "dev", *target, *args], env=env)
    except KeyboardInterrupt:
        return 130
    finally:
        simulator.terminate()
        try:
            simulator.wait(timeout=10)
        except subprocess.TimeoutExpired:
            simulator.kill()


if __name__ == "__main__":
    sys.exit(main())
