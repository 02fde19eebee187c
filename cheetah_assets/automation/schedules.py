"""Daily schedules, built from the partitioned jobs (each tick targets that day's partition)."""

from __future__ import annotations

import dagster as dg

from .jobs import daily_campaign_cycle_job, template_catalog_job

#: Optimove retrieves the list of available templates once a day (seed guide).
template_catalog_schedule = dg.build_schedule_from_partitioned_job(
    template_catalog_job,
    name="template_catalog_schedule",
    hour_of_day=0,
    minute_of_hour=5,
    description="Fetch the template catalog at 00:05 UTC, for the Optimove UI's template picker.",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)

#: The day's sends are prepared early, with their execution times: Cheetah sends each at its time.
daily_campaign_cycle_schedule = dg.build_schedule_from_partitioned_job(
    daily_campaign_cycle_job,
    name="daily_campaign_cycle_schedule",
    hour_of_day=0,
    minute_of_hour=15,
    description=(
        "Prepare and hand over the day's campaigns at 00:15 UTC. A campaign whose send time is earlier "
        "than the run is reported MISSED, never sent late, unless a backfill is run with send_late."
    ),
    default_status=dg.DefaultScheduleStatus.RUNNING,
)

SCHEDULES = [template_catalog_schedule, daily_campaign_cycle_schedule]
