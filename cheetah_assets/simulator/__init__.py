"""The Cheetah Messaging simulator (docs/simulator.md): a stateful HTTP server implementing the
contract of ``../shared/cheetah-messaging-api.md`` plus a test-only ``/_sim`` admin surface.

``with SimulatorServer(seed="demo") as sim:`` -- ``sim.url``, ``sim.admin`` (a
:class:`~.admin.SimulatorAdmin`). Import each name from its module (this package re-exports
nothing, so importing a part of it never runs the rest):

* :mod:`.server` -- :class:`SimulatorServer` and :func:`main` (``cheetah-sim``);
* :mod:`.admin` -- :class:`SimulatorAdmin`, the client of the ``/_sim`` routes;
* :mod:`.app` -- the ASGI app: routes, faults, auth, the request log around them;
* :mod:`.state` -- the simulated world, one part per concern (see its docstring);
* :mod:`.bodies` -- request bodies read with pydantic;
* :mod:`.variants` -- the string-id variant;
* :mod:`.metrics` -- the metric curves (ground truth: :func:`~.metrics.metrics_at`).
"""
