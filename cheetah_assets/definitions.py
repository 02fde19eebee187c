"""The code location: ``cheetah_assets.definitions:defs``."""

from __future__ import annotations

import dagster as dg

from .automation.alert_sensors import ALERT_SENSORS
from .automation.jobs import ALL_JOBS
from .automation.metric_sensors import METRIC_SENSORS
from .automation.prepare_sensor import PREPARE_SENSORS
from .automation.schedules import SCHEDULES
from .automation.send_sensors import SEND_SENSORS
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
)
