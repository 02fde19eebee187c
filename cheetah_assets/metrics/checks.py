"""The metric path's asset checks, all on ``campaign_analysis`` (run with it):

* ``metrics_are_possible`` (ERROR) and ``no_restated_metrics`` (WARN): scans of the snapshots,
  each named for what passing means (so "Failed" reads right: impossible counts, or restated ones);
* ``snapshots_on_time`` (ERROR): no snapshot day past due plus :data:`~.due.SNAPSHOT_GRACE`
  without a materialization. :func:`overdue_now` is also what the overdue-snapshot alert asks,
  so the check and the alert always agree. ``campaign_analysis_sensor`` re-runs the analysis
  (and so this check) when the set of overdue snapshots changes, even with no new snapshot.
"""


import datetime as dt
from typing import Sequence

import dagster as dg
from sqlalchemy.engine import Engine

from ..clock import ClockResource
from ..customers.resource import CustomerDatabaseResource
from ..tables import Column, table
from .analysis import Impossible, Restatement, find_impossible, find_restatements
from .columns import IMPOSSIBLE_COLUMNS, OVERDUE_COLUMNS, RESTATEMENT_COLUMNS
from .due import SNAPSHOT_GRACE, DueSnapshot, overdue_snapshots
from .keys import ANALYSIS, CAMPAIGN_PARTITIONS, SNAPSHOTS
from .snapshots import prepare_database


def prepared_engine(customer_db: CustomerDatabaseResource) -> Engine:
    """The customer database's engine, its metric tables and ledger indexes created if missing."""
    engine = customer_db.get_engine()
    prepare_database(engine)
    return engine


def overdue_now(instance: dg.DagsterInstance, engine: Engine, now: dt.datetime) -> list[DueSnapshot]:
    """The snapshot partitions overdue at ``now`` (registered, past due plus the grace, not
    materialized), oldest due first: what the check fails on and the alert reports."""
    return overdue_snapshots(
        engine,
        now,
        registered=lambda names: instance.get_existing_dynamic_partitions(CAMPAIGN_PARTITIONS, names),
        materialized=lambda keys: materialized_among(instance, keys),
    )


#: Partition keys per materialization query of :func:`materialized_among`.
_KEYS_PER_QUERY = 200


def materialized_among(instance: dg.DagsterInstance, keys: Sequence[str]) -> set[str]:
    """Which of the snapshot partitions ``keys`` have a materialization: one query per
    :data:`_KEYS_PER_QUERY` keys (paged), never the whole history of the asset."""
    found: set[str] = set()
    for start in range(0, len(keys), _KEYS_PER_QUERY):
        flt = dg.AssetRecordsFilter(asset_key=SNAPSHOTS, asset_partitions=list(keys[start : start + _KEYS_PER_QUERY]))
        cursor = None
        while True:
            page = instance.fetch_materializations(flt, limit=1000, cursor=cursor)
            found.update(r.partition_key for r in page.records if r.partition_key is not None)
            if not page.has_more:
                break
            cursor = page.cursor
    return found


def _overdue_by(delta: dt.timedelta) -> str:
    hours = int(delta.total_seconds() // 3600)
    return f"{hours // 24} d {hours % 24} h" if hours >= 24 else f"{hours} h {int(delta.total_seconds() // 60) % 60} min"


def _scan_result(
    found: Sequence[Restatement | Impossible],
    severity: dg.AssetCheckSeverity,
    description: str,
    *,
    count_key: str,
    table_key: str,
    columns: Sequence[Column],
) -> dg.AssetCheckResult:
    """A data-quality scan's check result: passed when it found nothing; the findings as a table."""
    return dg.AssetCheckResult(
        passed=not found,
        severity=severity,
        description=description,
        metadata={
            count_key: dg.MetadataValue.int(len(found)),
            table_key: table(columns, (f.record() for f in found), limit=100),
        },
    )


@dg.asset_check(
    asset=ANALYSIS,
    description=(
        "Every snapshot's counts are possible: none negative, and Received, Unique Opens, Unique Clicks "
        "and Unique Unsubscribes (counts of distinct recipients) never above Sent. Fails listing each "
        "campaign and day that breaks it."
    ),
)
def metrics_are_possible(customer_db: CustomerDatabaseResource) -> dg.AssetCheckResult:
    bad = find_impossible(prepared_engine(customer_db))
    if bad:
        first = bad[0]
        summary = f"{len(bad)} snapshots have impossible counts, first: {first.cheetah_name} day {first.day}: {'; '.join(first.problems)}"
    else:
        summary = "every snapshot's counts are possible"
    return _scan_result(
        bad, dg.AssetCheckSeverity.ERROR, summary, count_key="impossible_snapshots", table_key="problems", columns=IMPOSSIBLE_COLUMNS
    )


@dg.asset_check(
    asset=ANALYSIS,
    description=(
        "Passes when no metric count was restated downwards. Otherwise it fails as a warning (WARN), "
        "listing every campaign, day and metric whose count is lower than on the previous reported day: "
        "Cheetah restates counts downwards for up to a week, so this is expected now and then, and the "
        "analysis keeps every day's count (restated: yes). Nothing to re-run."
    ),
)
def no_restated_metrics(customer_db: CustomerDatabaseResource) -> dg.AssetCheckResult:
    found = find_restatements(prepared_engine(customer_db))
    campaigns = len({r.cheetah_name for r in found})
    summary = f"{len(found)} restated counts in {campaigns} campaigns" if found else "no count was restated downwards"
    return _scan_result(
        found, dg.AssetCheckSeverity.WARN, summary, count_key="restated_counts", table_key="restatements", columns=RESTATEMENT_COLUMNS
    )


@dg.asset_check(
    asset=ANALYSIS,
    description=(
        f"Every sent campaign's snapshot day has been taken within {SNAPSHOT_GRACE.total_seconds() / 3600:g} h "
        "of its due time (send time + k days). Fails listing each overdue campaign and day: re-execute "
        "those partitions of campaign_metric_snapshots (and see why the sensor's run did not take them)."
    ),
)
def snapshots_on_time(
    context: dg.AssetCheckExecutionContext, customer_db: CustomerDatabaseResource, clock: ClockResource
) -> dg.AssetCheckResult:
    now = clock.now()
    overdue = overdue_now(context.instance, prepared_engine(customer_db), now)
    if overdue:
        first = overdue[0]
        summary = (
            f"{len(overdue)} snapshots overdue, oldest: {first.cheetah_name} {first.day_key} "
            f"(due {first.due_at:%Y-%m-%d %H:%M} UTC): re-execute those partitions of campaign_metric_snapshots."
        )
    else:
        summary = "every snapshot that is due has been taken"
    records = (
        {"campaign": d.cheetah_name, "day": d.day, "due_at": d.due_at, "overdue_by": _overdue_by(now - d.due_at)}
        for d in overdue
    )
    return dg.AssetCheckResult(
        passed=not overdue,
        severity=dg.AssetCheckSeverity.ERROR,
        description=summary,
        metadata={
            "overdue_snapshots": dg.MetadataValue.int(len(overdue)),
            "overdue": table(OVERDUE_COLUMNS, records, limit=100),
            "grace_hours": dg.MetadataValue.float(SNAPSHOT_GRACE.total_seconds() / 3600),
        },
    )


METRIC_CHECKS = [metrics_are_possible, no_restated_metrics, snapshots_on_time]
