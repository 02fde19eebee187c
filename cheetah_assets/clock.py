"""The clock the send and metric paths read "now" from.

Production leaves ``fixed_now`` unset: the real UTC clock. Tests and the demo pin it to the
simulator's clock, so that "has the send time passed?" and "has day k come?" are asked of the
same time the simulator sends and reports by.
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

    def now(self) -> dt.datetime:
        if not self.fixed_now:
            return dt.datetime.now(dt.timezone.utc)
        return parse_iso(self.fixed_now)
