"""The customer database: schema, queries (frozen recipient lists), demo seed, Dagster resource.

``queries``, ``schema`` and ``seed`` do not import Dagster; the resource is imported lazily so
that ``cheetah-seed`` and plain SQL users stay light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .queries import (
    CustomerSchemaError,
    FreezeResult,
    ScheduledCampaign,
    count_recipients,
    freeze_recipient_list,
    get_frozen_list,
    is_list_locked,
    iter_recipient_chunks,
    list_key,
    load_schedule,
    missing_columns,
    parse_template_ids,
    recipient_preview,
    reflect_customers,
    set_campaign_status,
    template_for,
)
from .seed import SeedError, SeedSummary, add_campaign, add_customers, add_suppression, seed_demo

if TYPE_CHECKING:
    from .resource import CustomerDatabaseResource

__all__ = [
    "CustomerDatabaseResource",
    "CustomerSchemaError",
    "FreezeResult",
    "ScheduledCampaign",
    "SeedError",
    "SeedSummary",
    "add_campaign",
    "add_customers",
    "add_suppression",
    "count_recipients",
    "freeze_recipient_list",
    "get_frozen_list",
    "is_list_locked",
    "iter_recipient_chunks",
    "list_key",
    "load_schedule",
    "missing_columns",
    "parse_template_ids",
    "recipient_preview",
    "reflect_customers",
    "seed_demo",
    "set_campaign_status",
    "template_for",
]


def __getattr__(name: str):
    if name == "CustomerDatabaseResource":
        from .resource import CustomerDatabaseResource

        return CustomerDatabaseResource
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
