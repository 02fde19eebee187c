"""The columns of the metric path's tables in the Dagster UI (``tables.table``; each table written
as ``tables.columns`` reads it: name | kind | description). Rates are ``percent`` columns: shown as
``"12.3%"``; the same rates go alongside as float metadata for Dagster's plots."""

from __future__ import annotations

from ..tables import columns
from .analysis import OPTIMOVE_METRICS, RATES

#: The columns several tables share (named alone in a table below).
SHARED = columns("""
    campaign | string | Cheetah campaign name (the partition key)
    name     | string | Optimove campaign name
    day      | int    | snapshot day
""")
RATE_COLUMNS = [(k, "percent", f"{num} / {den}") for k, (num, den) in RATES.items()]
COUNT_COLUMNS = [(m, "int", m) for m in OPTIMOVE_METRICS]

#: The campaigns table of each analysis (newest send first): latest counts and rates.
CAMPAIGN_COLUMNS = [
    *columns("""
        campaign
        name
        send_date     | string | Optimove send date
        status        | string | in progress (day k of 7), final, or provisional (a day taken early)
        days_reported | int    | snapshot days stored (of 7)
        latest_day    | int    | the latest snapshot day
    """, SHARED),
    *((m, "int", f"{m}, as of the latest day") for m in OPTIMOVE_METRICS),
    *RATE_COLUMNS,
    *columns("""
        restated    | bool | a count was lower on a day than on the previous reported day
        provisional | bool | a snapshot was taken before its day came (allow_early)
        late        | bool | a snapshot was taken after its day's grace (a catch-up): counts of when taken
    """),
]
#: One row per Optimove campaign and send date: its templates' Cheetah campaigns added up.
ROLLUP_COLUMNS = [
    *columns("""
        campaign_id | string | Optimove campaign id
        name
        send_date   | string | Optimove send date
        templates   | string | its Cheetah templates (one Cheetah campaign each)
        status      | string | in progress (the day all its templates reached) or final
    """, SHARED),
    *((m, "int", f"{m}, its templates' latest counts added up") for m in OPTIMOVE_METRICS),
    *RATE_COLUMNS,
    *columns("""
        restated    | bool   | a template's count was lower on a day than on the previous one
    """),
]
#: The A/B comparison: one row per Optimove campaign and send date sent with several templates,
#: each template's rates side by side (kept out of the roll-up, whose rows it would widen).
AB_COLUMNS = columns("""
    campaign_id | string | Optimove campaign id
    name
    send_date   | string | Optimove send date
    open_rates  | string | each template's open rate (Unique Opens / Delivered): "1001 22.7% / 1003 26.4%"
    click_rates | string | each template's click rate (Unique Clicks / Delivered), in the same order
""", SHARED)
#: One row per campaign and day: the seven-day curves as numbers.
CURVE_COLUMNS = [
    *columns("""
        campaign
        day
        as_of | datetime | Cheetah's report time
    """, SHARED),
    *COUNT_COLUMNS,
    *RATE_COLUMNS,
    *columns("""
        restated    | string | counts lower than on the previous reported day
        provisional | bool   | taken before its day came (allow_early)
        late        | bool   | taken after its day's grace (a catch-up): the counts of when it was taken
    """),
]
#: Restated counts (a snapshot's, and those the check lists).
RESTATEMENT_COLUMNS = columns("""
    campaign
    day
    metric       | string | Optimove name (Cheetah name)
    previous_day | int    | the previous reported day
    was          | int    | the count on the previous reported day
    now          | int    | the count on this day
""", SHARED)
#: The impossible snapshots the check lists.
IMPOSSIBLE_COLUMNS = columns("""
    campaign
    day
    problem | string | what cannot be true
""", SHARED)
#: Overdue snapshots (the snapshots_on_time check).
OVERDUE_COLUMNS = columns("""
    campaign
    day
    due_at     | datetime | when its day came
    overdue_by | string   | time past the due time
""", SHARED)
#: The snapshots a batch run could not take (``take_due_snapshots``' failure).
FAILED_COLUMNS = columns("""
    partition | string | the partition: <campaign> and day_k
    attempt   | int    | which attempt this was (the request sensor tries again up to its limit)
    retried   | bool   | request_metric_snapshots_sensor asks for it again once its back-off has passed
    reason    | string | why it could not be taken, and what to do
""")
