"""The code location's resources.

A deployment configures everything through environment variables, read with Dagster's
``EnvVar`` (so values never appear in run config); the demo is selected explicitly with
``CHEETAH_DEMO=1``. Both modes, and what happens when a deployment is half-configured, are
described in :mod:`cheetah_assets.configuration`.

=========================  ==================================================================
variable                   meaning
=========================  ==================================================================
CHEETAH_ENDPOINT           API endpoint URL (https:// only)
CHEETAH_CUST_ID            Cust_ID assigned to the account
CHEETAH_FOLDER_ID          Folder ID of the "Optimove" folder
CHEETAH_PROP_MAP_ID        PROP_MAP_ID (the Data Map)
CHEETAH_CONSUMER_KEY       Consumer Key
CHEETAH_CONSUMER_SECRET    Consumer Secret
CHEETAH_CLIENT_ID          Client Identifier
CUSTOMER_DB_URL            SQLAlchemy URL of the customer database
CHEETAH_TEST_ADDRESS       optional: the address the send-path set-up check imports (never mailed)
CHEETAH_DEMO               1 selects the demo (simulator on loopback, demo database); unset otherwise
CHEETAH_ALERT_*            optional alert channels: see ``automation/alerts.py``
=========================  ==================================================================
"""

from __future__ import annotations

from typing import Mapping

from .automation.alerts import AlertsResource
from .clock import ClockResource
from .configuration import mode_resources


def build_resources(env: Mapping[str, str] | None = None) -> dict:
    """The resources for ``env`` (default: the process environment). No side effects."""
    return {**mode_resources(env), "clock": ClockResource(), "alerts": AlertsResource.from_env(env)}
