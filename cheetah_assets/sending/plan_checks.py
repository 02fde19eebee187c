"""The checks of the day's plan (``scheduled_campaigns``): invalid campaigns, and sends not made in time."""


import datetime as dt

import dagster as dg

from ..customers.resource import CustomerDatabaseResource
from ..tables import table
from . import plan
from .metadata_columns import INVALID_COLUMNS, MISSED_COLUMNS
from .partitions import daily_partitions

PLAN_ASSET = dg.AssetKey("scheduled_campaigns")


@dg.asset_check(
    asset=PLAN_ASSET,
    partitions_def=daily_partitions,
    description="Every campaign scheduled for the day is valid (an INVALID one is listed with its reason).",
)
def campaigns_valid(context: dg.AssetCheckExecutionContext, customer_db: CustomerDatabaseResource) -> dg.AssetCheckResult:
    rows = plan.load_plan(customer_db.get_engine(), dt.date.fromisoformat(context.partition_key))
    bad = [r for r in rows if r.status == plan.INVALID]
    return dg.AssetCheckResult(
        passed=not bad,
        severity=dg.AssetCheckSeverity.WARN,
        description=bad[0].reason if bad else f"{len(rows)} campaign sends planned",
        metadata={
            "invalid": table(
                INVALID_COLUMNS,
                [{"campaign": r.campaign_id, "name": r.campaign_name, "template": r.template_id, "reason": r.reason} for r in bad],
            )
        },
    )


@dg.asset_check(
    asset=PLAN_ASSET,
    partitions_def=daily_partitions,
    description=(
        "No campaign of the day was left unsent past its send time: MISSED (first seen after its send "
        "time) or OVERDUE (known in time, not handed over before it). Each is listed with what to do."
    ),
)
def no_missed_sends(context: dg.AssetCheckExecutionContext, customer_db: CustomerDatabaseResource) -> dg.AssetCheckResult:
    day = dt.date.fromisoformat(context.partition_key)
    bad = [r for r in plan.load_plan(customer_db.get_engine(), day) if r.status in (plan.MISSED, plan.OVERDUE)]
    if bad:
        names = ", ".join(f"{r.campaign_id} ({r.status})" for r in bad[:10]) + (" ..." if len(bad) > 10 else "")
        description = (
            f"{len(bad)} send(s) of {day} were not made at their time: {names}. Nothing was sent for them; "
            f"first: {bad[0].reason}"
        )
    else:
        description = f"no send of {day} was missed"
    return dg.AssetCheckResult(
        passed=not bad,
        severity=dg.AssetCheckSeverity.ERROR,
        description=description,
        metadata={
            "not sent in time": table(
                MISSED_COLUMNS,
                [
                    {"campaign": r.campaign_id, "name": r.campaign_name, "template": r.template_id,
                     "send at": r.send_at, "status": r.status, "reason": r.reason or ""}
                    for r in bad
                ],
            )
        },
    )
