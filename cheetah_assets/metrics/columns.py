"""The columns of the metric path's tables in the Dagster UI (``tables.table``: name, kind,
description). Rates are ``percent`` columns: shown as ``"12.3%"``; the same rates go alongside
as float metadata for Dagster's plots."""

from __future__ import annotations

from .analysis import OPTIMOVE_METRICS, RATES

CAMPAIGN = ("campaign", "string", "Cheetah campaign name (the partition key)")
NAME = ("name", "string", "Optimove campaign name")
DAY = ("day", "int", "snapshot day")
RATE_COLUMNS = [(k, "percent", f"{num} / {den}") for k, (num, den) in RATES.items()]
COUNT_COLUMNS = [(m, "int", m) for m in OPTIMOVE_METRICS]

#: The campaigns table of each analysis (newest send first): latest counts and rates.
CAMPAIGN_COLUMNS = [
    CAMPAIGN,
    NAME,
    ("send_date", "string", "Optimove send date"),
    ("status", "string", "in progress (day k of 7), final, or provisional (a day taken early)"),
    ("days_reported", "int", "snapshot days stored (of 7)"),
    ("latest_day", "int", "the latest snapshot day"),
    *((m, "int", f"{m}, as of the latest day") for m in OPTIMOVE_METRICS),
    *RATE_COLUMNS,
    ("restated", "bool", "a count was lower on a day than on the previous reported day"),
    ("provisional", "bool", "a snapshot was taken before its day came (allow_early)"),
]
#: One row per campaign and day: the seven-day curves as numbers.
CURVE_COLUMNS = [
    CAMPAIGN,
    DAY,
    ("as_of", "datetime", "Cheetah's report time"),
    *COUNT_COLUMNS,
    *RATE_COLUMNS,
    ("restated", "string", "counts lower than on the previous reported day"),
    ("provisional", "bool", "taken before its day came (allow_early)"),
]
#: Restated counts (a snapshot's, and those the check lists).
RESTATEMENT_COLUMNS = [
    CAMPAIGN,
    DAY,
    ("metric", "string", "Optimove name (Cheetah name)"),
    ("previous_day", "int", "the previous reported day"),
    ("was", "int", "the count on the previous reported day"),
    ("now", "int", "the count on this day"),
]
#: The impossible snapshots the check lists.
IMPOSSIBLE_COLUMNS = [CAMPAIGN, DAY, ("problem", "string", "what cannot be true")]
#: Overdue snapshots (the snapshots_on_time check).
OVERDUE_COLUMNS = [
    CAMPAIGN,
    DAY,
    ("due_at", "datetime", "when its day came"),
    ("overdue_by", "string", "time past the due time"),
]
