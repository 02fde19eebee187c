"""``campaign_status``: each planned send in one row, plan -> list -> send -> metrics (the rows
come from :mod:`.status`). Unpartitioned and cheap (a few bounded queries); it runs with the
analysis (``campaign_analysis_job``), so it is refreshed whenever a snapshot arrives, a snapshot
becomes overdue, or the day's cycle sends (``campaign_analysis_sensor``).

Two tables, row for row in the same order, so that the main one fits the UI without wrapping
each row over several lines: ``campaigns`` (ten short columns, no free text: units and
vocabularies are in the column descriptions, "Show schema") and ``details`` (the campaign id, the
stage, the ledger's own state, the Cheetah name and the note saying why, for the same rows)."""


from collections import Counter

import dagster as dg
from pydantic import Field

from ..clock import ClockResource
from ..customers.resource import CustomerDatabaseResource
from ..tables import columns, table
from .checks import prepared_engine
from .keys import ANALYSIS, GROUP, OWNERS, SENDS
from .status import STATUS_DAYS, status_rows

#: The main table: one row per planned send (campaign x template x day), newest first.
STATUS_COLUMNS = columns("""
    send_date  | string   | Optimove send date (the send path's partition)
    name       | string   | Optimove campaign name (its id: details.campaign, same row)
    template   | string   | Cheetah template objId; "(i/n)": template i of the n an A/B campaign splits its list between
    time       | string   | Execution time in UTC: HH:MM on the send date, MM-DD HH:MM when the UTC day differs
    state      | string   | Where the send is now: the plan's READY, WAITING, INVALID, CANCELLED, MISSED or OVERDUE (its time passed before it was handed over) until it is handed over, then the ledger's IMPORTING, IMPORTED, CREATED, LAUNCHED, APPROVED (not out yet), EMPTY, MISSED or CANCELLED; SENT once an approved send's time has passed. Why: details.note
    recipients | int      | This template's own recipients in the frozen list (an A/B campaign's rows add up to its list; empty: no list yet)
    metrics    | string   | The metric week: goes out at, day k of 7 taken, overdue days, final or provisional
    delivered  | int      | Delivered (Cheetah Received), latest snapshot
    opened     | percent  | Unique Opens / Delivered, latest snapshot
    clicked    | percent  | Unique Clicks / Delivered, latest snapshot
""")
#: The same rows' details, in the same order.
DETAIL_COLUMNS = columns("""
    send_date    | string | Optimove send date
    campaign     | string | Optimove campaign id
    template     | string | Cheetah template objId, as in campaigns
    stage        | string | planned, invalid, cancelled, missed, list frozen, sending, empty, approved, measuring, overdue, provisional or final (counted in by_stage)
    ledger       | string | The send ledger's own state (– when the send has no ledger row)
    cheetah_name | string | The campaign's name in Cheetah Messaging (the metric partition key)
    days_taken   | int    | Metric snapshot days stored (of 7)
    note         | string | Why it is not READY, or the send's last error
""")


class StatusConfig(dg.Config):
    days: int = Field(default=STATUS_DAYS, ge=1, le=366, description="How many days back the view reaches.")


@dg.asset(
    group_name=GROUP,
    owners=OWNERS,
    kinds={"sql"},
    deps=[dg.AssetDep(SENDS, partition_mapping=dg.AllPartitionMapping()), ANALYSIS],
    description=(
        "Each planned send (campaign x template) of the last two weeks in one row, newest first: where "
        "it is now (state: the plan's status until it is handed over, then the send ledger's; SENT once "
        "it has gone out), its template's own recipients (an A/B campaign's rows add up to its list), "
        "and its metric week (days taken, overdue, final or provisional; latest delivered count, open "
        "and click rates). Table details holds, row for row, the campaign id, stage, Cheetah name and note."
    ),
)
def campaign_status(
    config: StatusConfig, customer_db: CustomerDatabaseResource, clock: ClockResource
) -> dg.MaterializeResult:
    rows = status_rows(prepared_engine(customer_db), clock.now(), days=config.days)
    stages = Counter(r["stage"] for r in rows)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": dg.MetadataValue.int(len(rows)),
            "campaigns": table(STATUS_COLUMNS, rows, limit=500),
            "details": table(DETAIL_COLUMNS, rows, limit=500),
            "by_stage": dg.MetadataValue.json(dict(sorted(stages.items()))),
            "overdue": dg.MetadataValue.int(stages["overdue"]),
        }
    )
