"""The clock the send and metric paths read "now" from, and the send path's timing settings.

Production leaves ``fixed_now`` unset: the real UTC clock. Tests and the demo pin it to the
simulator's clock, so that "has the send time passed?" and "has day k come?" are asked of the
same time the simulator sends and reports by.

``lead_time_minutes`` and ``account_time_zone`` come from ``CHEETAH_LEAD_TIME_MINUTES`` and
``CHEETAH_ACCOUNT_TIME_ZONE`` (:mod:`cheetah_assets.resources`, both modes). Left unset (a bare
``ClockResource()``), there is no lead time: every campaign of the day is prepared when the day
is planned, as tests of the send path expect.
"""

from __future__ import annotations

import datetime as dt

import dagster as dg
from pydantic import Field

from .timeutil import parse_iso


class ClockResource(dg.ConfigurableResource):
    """Where "now" comes from (UTC)."""

    fixed_now: str | None = Field(
        default=None,
        description="ISO-8601 instant to use as now (tests and the demo); unset means the real UTC clock.",
    )

    lead_time_minutes: int | None = Field(
        default=None,
        description="Prepare each campaign this many minutes before its send time; unset: at once.",
    )
    account_time_zone: str = Field(default="UTC", description="The IANA zone whose days are the send path's partitions.")

    def lead_time(self) -> dt.timedelta | None:
        return None if self.lead_time_minutes is None else dt.timedelta(minutes=self.lead_time_minutes)

    def now(self) -> dt.datetime:
        if not self.fixed_now:
            return dt.datetime.now(dt.timezone.utc)
        return parse_iso(self.fixed_now)
