"""Daily schedules in the account time zone (``CHEETAH_ACCOUNT_TIME_ZONE``), each targeting the
partition of its tick's day in that zone.

The campaigns themselves are prepared by ``campaign_preparation_sensor`` (a lead time before each
send time); the 00:15 cycle is a daily safety net that plans the day (and prepares whatever is
already due), so a day's plan and checks exist even on a day the sensor had nothing to do.
"""

from __future__ import annotations

import dagster as dg

from ..configuration import account_time_zone
from ..sending.timing import business_day
from .jobs import daily_campaign_cycle_job, template_catalog_job

ACCOUNT_ZONE = account_time_zone()


def _today(context: dg.ScheduleEvaluationContext) -> str:
    return business_day(context.scheduled_execution_time, ACCOUNT_ZONE).isoformat()


@dg.schedule(
    job=template_catalog_job,
    cron_schedule="5 0 * * *",
    execution_timezone=ACCOUNT_ZONE,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Fetch the template catalog at 00:05 in the account time zone, for the Optimove UI's template picker.",
)
def template_catalog_schedule(context: dg.ScheduleEvaluationContext):
    #: Optimove retrieves the list of available templates once a day (seed guide).
    day = _today(context)
    return dg.RunRequest(run_key=f"catalog-{day}", partition_key=day)


@dg.schedule(
    job=daily_campaign_cycle_job,
    cron_schedule="15 0 * * *",
    execution_timezone=ACCOUNT_ZONE,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description=(
        "Daily safety net at 00:15 in the account time zone: plan the day (campaigns not yet due are "
        "WAITING; campaign_preparation_sensor prepares each a lead time before its send time). A "
        "campaign first seen after its send time is reported MISSED, never sent late, unless a "
        "backfill is run with send_late."
    ),
)
def daily_campaign_cycle_schedule(context: dg.ScheduleEvaluationContext):
    day = _today(context)
    return dg.RunRequest(run_key=f"cycle-{day}", partition_key=day)


SCHEDULES = [template_catalog_schedule, daily_campaign_cycle_schedule]
