"""The code location's resources, from environment variables (Dagster ``EnvVar``).

With no ``CHEETAH_ENDPOINT`` set, the embedded defaults apply (see ``embedded.py``): a demo
SQLite customer database and the Cheetah Messaging simulator on loopback. Setting the variables
below points the same code at a real database and a real Cheetah Messaging account:

=========================  ==================================================================
variable                   meaning
=========================  ==================================================================
CHEETAH_ENDPOINT           API endpoint URL (https://…; plain http only to loopback)
CHEETAH_CUST_ID            Cust_ID assigned to the account
CHEETAH_FOLDER_ID          Folder ID of the "Optimove" folder
CHEETAH_PROP_MAP_ID        PROP_MAP_ID (the Data Map)
CHEETAH_CONSUMER_KEY       Consumer Key
CHEETAH_CONSUMER_SECRET    Consumer Secret
CHEETAH_CLIENT_ID          Client Identifier
CUSTOMER_DB_URL            SQLAlchemy URL of the customer database
=========================  ==================================================================
"""

from __future__ import annotations

import os

import dagster as dg

from .cheetah.resource import CheetahMessagingResource
from .clock import ClockResource
from .customers.resource import CustomerDatabaseResource


def embedded() -> bool:
    """True when no real endpoint is configured: the demo defaults are used."""
    return not os.environ.get("CHEETAH_ENDPOINT")


def build_resources() -> dict:
    if embedded():
        from .embedded import use_embedded_defaults  # the one production-path import of the simulator

        use_embedded_defaults()
    return {
        "cheetah": CheetahMessagingResource.from_env(),
        "customer_db": CustomerDatabaseResource(url=dg.EnvVar("CUSTOMER_DB_URL")),
        "clock": ClockResource(),
    }
