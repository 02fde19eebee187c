"""The Cheetah Messaging simulator (docs/simulator.md): a stateful HTTP server implementing the
contract of ``../shared/cheetah-messaging-api.md`` plus a test-only ``/_sim`` admin surface.

``with SimulatorServer(seed="demo") as sim:`` -- ``sim.url``, ``sim.admin`` (a
:class:`SimulatorAdmin`). Metric ground truth: :func:`cheetah_assets.simulator.metrics.metrics_at`.
"""

from .admin import SimulatorAdmin, SimulatorAdminError
from .server import SimulatorServer, main

__all__ = ["SimulatorServer", "SimulatorAdmin", "SimulatorAdminError", "main"]
