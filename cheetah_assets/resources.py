"""The code location's resources.

A deployment configures everything through environment variables, read with Dagster's
``EnvVar`` (so values never appear in run config); the demo is selected explicitly with
``CHEETAH_DEMO=1``. Both modes, and what happens when a deployment is half-configured, are
described in :mod:`cheetah_assets.configuration`.

The variables, one home: the Cheetah account's come from the settings model
(``cheetah/settings.py``: ``ENV_VARS``); ``CUSTOMER_DB_URL`` and ``CHEETAH_DEMO`` from
:mod:`cheetah_assets.configuration`; ``CHEETAH_TEST_ADDRESS`` from ``cheetah/resource.py``;
``CHEETAH_ALERT_*`` from ``automation/alerts.py``. The README's table lists a deployment's, and
``test_settings.py`` checks it against the model.
"""

from __future__ import annotations

from typing import Mapping

from .automation.alerts import AlertsResource
from .clock import ClockResource
from .configuration import account_time_zone, lead_time_minutes, mode_resources


def build_resources(env: Mapping[str, str] | None = None) -> dict:
    """The resources for ``env`` (default: the process environment). No side effects."""
    return {**mode_resources(env), "clock": ClockResource(lead_time_minutes=lead_time_minutes(env), account_time_zone=account_time_zone(env)), "alerts": AlertsResource.from_env(env)}
