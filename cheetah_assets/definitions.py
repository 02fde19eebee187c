"""The code location: ``cheetah_assets.definitions:defs``."""

from __future__ import annotations

import dagster as dg

from .automation.alert_sensors import ALERT_SENSORS
from .automation.jobs import cancel_campaign_job, daily_campaign_cycle_job, template_catalog_job
from .automation.metric_sensors import METRIC_SENSORS
from .automation.schedules import SCHEDULES
from .automation.send_sensors import SEND_SENSORS
from .metrics.assets import METRIC_ASSETS, METRIC_CHECKS, METRIC_JOBS
from .resources import build_resources
from .sending.assets import SEND_ASSETS, SEND_CHECKS

defs = dg.Definitions(
    assets=[*SEND_ASSETS, *METRIC_ASSETS],
    asset_checks=[*SEND_CHECKS, *METRIC_CHECKS],
    jobs=[daily_campaign_cycle_job, template_catalog_job, cancel_campaign_job, *METRIC_JOBS],
    schedules=SCHEDULES,
    sensors=[*SEND_SENSORS, *METRIC_SENSORS, *ALERT_SENSORS],
    resources=build_resources(),
)
