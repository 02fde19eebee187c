"""``campaign_status``: each planned campaign in one row, plan -> list -> send -> metrics (the rows
come from :mod:`.status`). Unpartitioned and cheap (four bounded queries); it runs with the
analysis (``campaign_analysis_job``), so it is refreshed whenever a snapshot arrives, a snapshot
becomes overdue, or the day's cycle sends (``campaign_analysis_sensor``)."""


from collections import Counter

import dagster as dg
from pydantic import Field

from ..clock import ClockResource
from ..customers.resource import CustomerDatabaseResource
from ..tables import table
from .checks import prepared_engine
from .keys import ANALYSIS, GROUP, OWNERS, SENDS
from .status import STATUS_DAYS, status_rows

STATUS_COLUMNS = [
    ("send_date", "string", "Optimove send date"),
    ("stage", "string", "planned, invalid, cancelled, missed, list frozen, sending, empty, approved, measuring, overdue, provisional or final"),
    ("campaign", "string", "Optimove campaign id"),
    ("name", "string", "Optimove campaign name"),
    ("template", "string", "Cheetah template objId"),
    ("send at", "datetime", "Execution time (UTC)"),
    ("plan", "string", "The day's plan: READY, SENT, MISSED, INVALID or CANCELLED"),
    ("recipients", "int", "Rows in the frozen recipient list"),
    ("send", "string", "Send ledger state (APPROVED: handed to Cheetah and approved)"),
    ("metrics", "string", "The metric week: day k of 7 taken, overdue, final or provisional"),
    ("days taken", "int", "Metric snapshot days stored (of 7)"),
    ("delivered", "int", "Delivered, as of the latest snapshot"),
    ("open_rate", "percent", "Unique Opens / Delivered, as of the latest snapshot"),
    ("click_rate", "percent", "Unique Clicks / Delivered, as of the latest snapshot"),
    ("cheetah_name", "string", "The campaign's name in Cheetah Messaging (the metric partition key)"),
    ("note", "string", "Why it is not READY, or the send's last error"),
]


class StatusConfig(dg.Config):
    days: int = Field(default=STATUS_DAYS, ge=1, le=366, description="How many days back the view reaches.")


@dg.asset(
    group_name=GROUP,
    owners=OWNERS,
    kinds={"sql"},
    deps=[dg.AssetDep(SENDS, partition_mapping=dg.AllPartitionMapping()), ANALYSIS],
    description=(
        "Each planned campaign of the last two weeks in one row: its plan status, its frozen list, its "
        "send (ledger state) and its metric week (snapshot days taken, overdue, final or provisional; "
        "latest delivered count, open and click rates). Newest first."
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
            "by_stage": dg.MetadataValue.json(dict(sorted(stages.items()))),
            "overdue": dg.MetadataValue.int(stages["overdue"]),
        }
    )
