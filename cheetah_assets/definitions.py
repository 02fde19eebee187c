"""The code location: ``cheetah_assets.definitions:defs``.

Every run executes its steps in the run's own process (``in_process_executor``). The send path's
steps are a chain that runs one after the other anyway, and the metric jobs have one or two steps:
a process per step would only load the code location again for each step (about 3 CPU-seconds
each), which is most of what a run costs. A run is still its own process under the run launcher,
and run monitoring still ends one whose process dies. In a half-configured deployment the
executor refuses every run instead, with one message naming what is missing
(``configuration.mode_executor``).
"""

from __future__ import annotations

import dagster as dg

from .automation.alert_sensors import ALERT_SENSORS
from .automation.jobs import ALL_JOBS
from .automation.metric_sensors import METRIC_SENSORS
from .automation.prepare_sensor import PREPARE_SENSORS
from .automation.schedules import SCHEDULES
from .automation.send_sensors import SEND_SENSORS
from .configuration import mode_executor
from .metrics.assets import METRIC_ASSETS, METRIC_CHECKS
from .resources import build_resources
from .sending.assets import SEND_ASSETS, SEND_CHECKS

defs = dg.Definitions(
    assets=[*SEND_ASSETS, *METRIC_ASSETS],
    asset_checks=[*SEND_CHECKS, *METRIC_CHECKS],
    jobs=ALL_JOBS,
    schedules=SCHEDULES,
    sensors=[*SEND_SENSORS, *PREPARE_SENSORS, *METRIC_SENSORS, *ALERT_SENSORS],
    resources=build_resources(),
    executor=mode_executor(),
)
