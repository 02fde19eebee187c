"""The send path's daily partitions: days in the account time zone, existing ahead of time.

Read at definitions load from ``CHEETAH_ACCOUNT_TIME_ZONE``, ``CHEETAH_LEAD_TIME_MINUTES`` and
``CHEETAH_PARTITION_START`` (reading the environment is not a side effect). A campaign's partition
is its own ``send_date``; a campaign on D can be due as early as D-2 in the account zone
(:func:`.timing.days_ahead`), so the partitions reach that far past today (Dagster's
``end_offset=1`` is today's partition, each more is one day further).
"""

from __future__ import annotations

import datetime as dt

import dagster as dg

from ..configuration import account_time_zone, lead_time_minutes, partition_start
from .timing import days_ahead


def build_daily_partitions(env=None) -> dg.DailyPartitionsDefinition:
    lead = dt.timedelta(minutes=lead_time_minutes(env))
    return dg.DailyPartitionsDefinition(
        start_date=partition_start(env), end_offset=1 + days_ahead(lead), timezone=account_time_zone(env)
    )


daily_partitions = build_daily_partitions()
