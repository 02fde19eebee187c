"""The metric path as software-defined assets.

    campaign_metric_snapshots  (campaign x day_1..day_7)  ->  campaign_analysis  (+ two checks)

* ``campaign_metric_snapshots`` is partitioned two ways: by Cheetah campaign (a dynamic
  partition per sent campaign, keyed by its unique Cheetah name, registered by
  ``register_sent_campaigns_sensor``) and by snapshot day. Partition (name, day_k) is the
  campaign's report fetched once day k after the send has come; ``request_metric_snapshots_sensor``
  requests each one when it falls due. A backfill of one campaign's seven days, or of one day
  across campaigns, is a selection of partitions in the UI.
* ``campaign_analysis`` rolls every campaign's snapshots up (``campaign_analysis_sensor``
  requests it when a snapshot is newer than the last analysis).

The assets are thin: the work is in :mod:`.snapshots` and :mod:`.analysis` (plain functions),
and the results live in the customer database (tables ``cheetah_metric_snapshot`` and
``cheetah_campaign_analysis``), never in pickles.
"""


from typing import Sequence

import dagster as dg
from pydantic import Field

from ..cheetah.contract import METRIC_NAMES
from ..cheetah.errors import TRANSIENT, CheetahError, MetricsNotReady
from ..cheetah.resource import CheetahMessagingResource
from ..clock import ClockResource
from ..customers.resource import CustomerDatabaseResource
from ..tables import Column, table
from .analysis import (
    OPTIMOVE_METRICS,
    RATES,
    AnalysisResult,
    Impossible,
    Restatement,
    build_analysis,
    curves_markdown,
    find_impossible,
    find_restatements,
    rate,
)
from .snapshots import SNAPSHOT_DAYS, SnapshotError, day_key, day_number, prepare_database, take_snapshot

GROUP = "metrics"
OWNERS = ["team:marketing-ops"]
#: Concurrency pool of the steps that call the Cheetah report API. Unlimited unless the instance
#: sets a limit (``dagster instance concurrency set cheetah_reports 4``): worth doing when a
#: catch-up or a backfill launches hundreds of snapshot runs against a 20 requests/s account.
REPORTS_POOL = "cheetah_reports"

campaigns_partitions = dg.DynamicPartitionsDefinition(name="cheetah_campaigns")
snapshot_partitions = dg.MultiPartitionsDefinition(
    {"campaign": campaigns_partitions, "day": dg.StaticPartitionsDefinition(SNAPSHOT_DAYS)}
)


def snapshot_partition_key(cheetah_name: str, day: int) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({"campaign": cheetah_name, "day": day_key(day)})


def latest_storage_id(instance: dg.DagsterInstance, asset_key: dg.AssetKey) -> int | None:
    """Storage id of the asset's newest materialization (any partition), or None."""
    records = instance.fetch_materializations(asset_key, limit=1).records
    return records[0].storage_id if records else None


def _prepared_engine(customer_db: CustomerDatabaseResource):
    """The customer database's engine, its metric tables and ledger indexes created if missing."""
    engine = customer_db.get_engine()
    prepare_database(engine)
    return engine


def _optimove_label(cheetah_name: str) -> str:
    return f"{METRIC_NAMES[cheetah_name]} ({cheetah_name})"


# ------------------------------------------------------------------------------------------------
class SnapshotConfig(dg.Config):
    allow_early: bool = Field(
        default=False,
        description=(
            "Take the snapshot even though its day has not come yet (now < send time + k days). "
            "It then reports the counts so far under day k: meant for a deliberate check, never for the sensors."
        ),
    )


@dg.asset(
    partitions_def=snapshot_partitions,
    group_name=GROUP,
    owners=OWNERS,
    kinds={"cheetah", "sql"},
    # Lineage from the send path: every snapshot is of a campaign that campaign_sends handed over.
    deps=[dg.AssetDep("campaign_sends", partition_mapping=dg.AllPartitionMapping())],
    pool=REPORTS_POOL,
    retry_policy=dg.RetryPolicy(
        max_retries=3, delay=30, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
    ),
    description=(
        "A sent campaign's metrics in Cheetah Messaging (Sent, Received, MessageOpens, MessageClicks, "
        "Unsubs; Optimove's Sent, Delivered, Unique Opens, Unique Clicks, Unique Unsubscribes), "
        "snapshotted on each of the seven days after the send: partition (campaign, day_k) is fetched "
        "once k days have passed. Re-fetching a partition replaces that day's row only, so the days "
        "keep what each said and a downward restatement stays visible (table cheetah_metric_snapshot)."
    ),
)
def campaign_metric_snapshots(
    context: dg.AssetExecutionContext,
    config: SnapshotConfig,
    cheetah: CheetahMessagingResource,
    customer_db: CustomerDatabaseResource,
    clock: ClockResource,
) -> dg.MaterializeResult:
    keys = context.partition_key.keys_by_dimension
    name, day = keys["campaign"], day_number(keys["day"])
    engine = _prepared_engine(customer_db)
    try:
        with cheetah.get_client(logger=context.log) as client:
            outcome = take_snapshot(client, engine, name, day, clock.now(), allow_early=config.allow_early)
    except SnapshotError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    except MetricsNotReady as exc:
        raise dg.Failure(
            description=(
                f"{exc} The ledger says campaign {name} was approved to go out; look at it in Cheetah "
                "Messaging (paused, or its start time moved?) and re-execute this partition once it has gone out."
            ),
            allow_retries=False,
        ) from None
    except CheetahError as exc:
        # Transient trouble the client's own retries did not outlast: the retry policy tries again.
        raise dg.Failure(description=str(exc), allow_retries=isinstance(exc, TRANSIENT)) from None

    snap, prev = outcome.snapshot, outcome.previous
    if outcome.restated:
        context.log.warning(
            "%s day %d restates %s below day %d's", name, day, ", ".join(outcome.restated), prev.day if prev else 0
        )
    metadata: dict = {
        **{_optimove_label(k): dg.MetadataValue.int(v) for k, v in snap.counts.items()},
        "day": dg.MetadataValue.int(day),
        "camp_id": dg.MetadataValue.int(snap.camp_id) if isinstance(snap.camp_id, int) else dg.MetadataValue.text(snap.camp_id),
        "as_of": dg.MetadataValue.timestamp(snap.as_of),
        "due_at": dg.MetadataValue.timestamp(outcome.due_at),
        "sent_at": dg.MetadataValue.timestamp(outcome.campaign.send_at),
        "restated": dg.MetadataValue.bool(bool(outcome.restated)),
        "replaced_earlier_snapshot": dg.MetadataValue.bool(outcome.replaced),
        "taken_early": dg.MetadataValue.bool(outcome.early),
        "open_rate": dg.MetadataValue.float(rate(snap.counts["MessageOpens"], snap.counts["Received"]) or 0.0),
        "click_rate": dg.MetadataValue.float(rate(snap.counts["MessageClicks"], snap.counts["Received"]) or 0.0),
    }
    if prev is not None:
        metadata["compared_with_day"] = dg.MetadataValue.int(prev.day)
    if outcome.restated:
        metadata["restatements"] = table(
            RESTATEMENT_COLUMNS,
            (Restatement(name, day, prev.day, k, prev.counts[k], snap.counts[k]).record() for k in outcome.restated),
        )
    return dg.MaterializeResult(metadata=metadata)


# ------------------------------------------------------------------------------------------------
ANALYSIS_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn("cheetah_name", "string", description="Cheetah campaign name (the partition key)"),
        dg.TableColumn("camp_id", "string", description="Cheetah campaign id (as contract.id_to_db stores it)"),
        dg.TableColumn("campaign_id", "string", description="Optimove campaign id"),
        dg.TableColumn("template_id", "string", description="Cheetah template objId"),
        dg.TableColumn("send_date", "date"),
        dg.TableColumn("days_reported", "int", description="snapshot days stored (of 7)"),
        dg.TableColumn("latest_day", "int", description="the latest snapshot day"),
        dg.TableColumn("sent", "int", description="Sent (Cheetah Sent)"),
        dg.TableColumn("delivered", "int", description="Delivered (Cheetah Received)"),
        dg.TableColumn("unique_opens", "int", description="Unique Opens (Cheetah MessageOpens)"),
        dg.TableColumn("unique_clicks", "int", description="Unique Clicks (Cheetah MessageClicks)"),
        dg.TableColumn("unique_unsubscribes", "int", description="Unique Unsubscribes (Cheetah Unsubs)"),
        dg.TableColumn("delivery_rate", "float", description="delivered / sent (null when nothing was sent)"),
        dg.TableColumn("open_rate", "float", description="unique opens / delivered (null when nothing was delivered)"),
        dg.TableColumn("click_rate", "float", description="unique clicks / delivered"),
        dg.TableColumn("unsubscribe_rate", "float", description="unique unsubscribes / delivered"),
        dg.TableColumn("restated", "bool", description="a count was lower on a day than on the previous reported day"),
        dg.TableColumn("updated_at", "timestamp"),
    ]
)

_CAMPAIGN = ("campaign", "string", "Cheetah campaign name")
_DAY = ("day", "int", "snapshot day")
#: The campaigns table of each analysis (newest send first): latest counts and rates.
CAMPAIGN_COLUMNS = [
    _CAMPAIGN,
    ("send_date", "string", "Optimove send date"),
    ("days_reported", "int", "snapshot days stored (of 7)"),
    ("latest_day", "int", "the latest snapshot day"),
    *((m, "int", f"{m}, as of the latest day") for m in OPTIMOVE_METRICS),
    *((k, "percent", f"{num} / {den}") for k, (num, den) in RATES.items()),
    ("restated", "bool", "a count was lower on a day than on the previous reported day"),
]
#: Restated counts (a snapshot's, and those the check lists).
RESTATEMENT_COLUMNS = [
    _CAMPAIGN,
    _DAY,
    ("metric", "string", "Optimove name (Cheetah name)"),
    ("previous_day", "int", "the previous reported day"),
    ("was", "int", "the count on the previous reported day"),
    ("now", "int", "the count on this day"),
]
#: The impossible snapshots the check lists.
IMPOSSIBLE_COLUMNS = [_CAMPAIGN, _DAY, ("problem", "string", "what cannot be true")]


def _campaigns_table(result: AnalysisResult, limit: int = 200) -> dg.MetadataValue:
    return table(
        CAMPAIGN_COLUMNS,
        (
            {
                "campaign": c.cheetah_name,
                "send_date": c.send_date,
                "days_reported": c.days_reported,
                "latest_day": c.latest_day,
                **c.latest.counts,
                **c.rates(),
                "restated": c.restated,
            }
            for c in result.newest_first()
        ),
        limit=limit,
    )


@dg.asset(
    group_name=GROUP,
    owners=OWNERS,
    kinds={"sql"},
    deps=[campaign_metric_snapshots],
    description=(
        "The campaign analysis: per sent campaign, its latest metrics under the Optimove names, "
        "delivery, open, click and unsubscribe rates, how many days reported, whether Cheetah restated "
        "a count, and the day-by-day curve (table cheetah_campaign_analysis, replaced in one transaction)."
    ),
)
def campaign_analysis(
    context: dg.AssetExecutionContext, customer_db: CustomerDatabaseResource, clock: ClockResource
) -> dg.MaterializeResult:
    engine = _prepared_engine(customer_db)
    # Read before the tables: every snapshot whose event is at or below this id is in what we read,
    # so the analysis sensor knows exactly which snapshots this analysis covers.
    covers = latest_storage_id(context.instance, campaign_metric_snapshots.key)
    result = build_analysis(engine, clock.now())
    restated = sum(c.restated for c in result.campaigns)
    context.log.info("analysed %d campaigns (%d with a restatement)", result.row_count, restated)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": dg.MetadataValue.int(result.row_count),
            "dagster/column_schema": ANALYSIS_SCHEMA,
            "campaigns": _campaigns_table(result),
            "curves": dg.MetadataValue.md(curves_markdown(result)),
            "campaigns_restated": dg.MetadataValue.int(restated),
            "restatements": dg.MetadataValue.int(len(result.restatements)),
            "snapshots_covered_up_to_event": dg.MetadataValue.int(covers if covers is not None else -1),
        }
    )


# ------------------------------------------------------------------------------------------------
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
    asset=campaign_analysis,
    description=(
        "Every snapshot's counts are possible: none negative, and Received, Unique Opens, Unique Clicks "
        "and Unique Unsubscribes (counts of distinct recipients) never above Sent. Fails listing each "
        "campaign and day that breaks it."
    ),
)
def metrics_are_possible(customer_db: CustomerDatabaseResource) -> dg.AssetCheckResult:
    bad = find_impossible(_prepared_engine(customer_db))
    if bad:
        first = bad[0]
        summary = f"{len(bad)} snapshots have impossible counts, first: {first.cheetah_name} day {first.day}: {'; '.join(first.problems)}"
    else:
        summary = "every snapshot's counts are possible"
    return _scan_result(
        bad, dg.AssetCheckSeverity.ERROR, summary, count_key="impossible_snapshots", table_key="problems", columns=IMPOSSIBLE_COLUMNS
    )


@dg.asset_check(
    asset=campaign_analysis,
    description=(
        "Lists every campaign, day and metric whose count is lower than on the previous reported day. "
        "Cheetah restates counts downwards for up to a week, so this warns rather than fails the data."
    ),
)
def restatements_flagged(customer_db: CustomerDatabaseResource) -> dg.AssetCheckResult:
    found = find_restatements(_prepared_engine(customer_db))
    campaigns = len({r.cheetah_name for r in found})
    summary = f"{len(found)} restated counts in {campaigns} campaigns" if found else "no count was restated downwards"
    return _scan_result(
        found, dg.AssetCheckSeverity.WARN, summary, count_key="restated_counts", table_key="restatements", columns=RESTATEMENT_COLUMNS
    )


# ------------------------------------------------------------------------------------------------
METRIC_ASSETS = [campaign_metric_snapshots, campaign_analysis]
METRIC_CHECKS = [metrics_are_possible, restatements_flagged]
