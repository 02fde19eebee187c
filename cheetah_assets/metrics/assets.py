"""The metric path as software-defined assets.

    campaign_metric_snapshots  (campaign x day_1..day_7)  ->  campaign_analysis  (+ three checks)  ->  campaign_status

* ``campaign_metric_snapshots`` is partitioned two ways: by Cheetah campaign (a dynamic
  partition per sent campaign, keyed by its unique Cheetah name, registered by
  ``register_sent_campaigns_sensor``) and by snapshot day. Partition (name, day_k) is the
  campaign's report fetched once day k after the send has come; ``request_metric_snapshots_sensor``
  requests each one when it falls due. A backfill of one campaign's seven days, or of one day
  across campaigns, is a selection of partitions in the UI.
  A partition requested before its day has come (a backfill run early) is *not due*: the run
  succeeds without a materialization, logs when the day comes and records an observation
  saying so; the partition stays missing, never red. ``allow_early: true`` (run config) takes it
  anyway; such a snapshot is *provisional* in the analysis until its day is fetched on time.
* ``campaign_analysis`` rolls every campaign's snapshots up (``campaign_analysis_sensor``
  requests it when a snapshot is newer than the last analysis, or the overdue snapshots
  changed); its checks are in :mod:`.checks`, its chart is drawn by :mod:`.chart`.
* ``campaign_status`` shows each planned send in one row, plan -> list -> send -> metrics
  (:mod:`.status`); it runs with the analysis.

Partition keys are the Cheetah campaign names (``OPT-<campaign>-<template>-<yyyymmdd>``): unique,
stable and the name the campaign has in Cheetah Messaging, so they are kept even though the UI
may shorten long ones; the tables show the Optimove campaign name next to them.

The assets are thin: the work is in :mod:`.snapshots`, :mod:`.analysis`, :mod:`.chart` and
:mod:`.status` (plain functions), and the results live in the customer database (tables ``cheetah_metric_snapshot`` and
``cheetah_campaign_analysis``), never in pickles.
"""


import base64
from pathlib import Path

import dagster as dg
from pydantic import Field

from ..cheetah.errors import CheetahError
from ..cheetah.resource import CheetahMessagingResource
from ..clock import ClockResource
from ..customers.resource import CustomerDatabaseResource
from ..runlog import RunLog
from ..tables import table
from .analysis import AnalysisResult, build_analysis
from .chart import CHART_CAMPAIGNS, CHART_FILE, curves_png, newest_of, save_png
from .checks import METRIC_CHECKS, prepared_engine
from .columns import AB_COLUMNS, CAMPAIGN_COLUMNS, CURVE_COLUMNS, ROLLUP_COLUMNS
from .rollup import rollup
from .keys import CAMPAIGN_PARTITIONS, GROUP, OWNERS, REPORTS_POOL, SENDS
from .snapshot_events import failure_of, log_outcome, not_due_observation, snapshot_metadata
from .snapshots import SNAPSHOT_DAYS, SnapshotError, SnapshotTooEarly, day_key, day_number, take_snapshot
from ..sending.ledger import account_of
from .status import campaign_names
from .views import campaign_status

campaigns_partitions = dg.DynamicPartitionsDefinition(name=CAMPAIGN_PARTITIONS)
snapshot_partitions = dg.MultiPartitionsDefinition(
    {"campaign": campaigns_partitions, "day": dg.StaticPartitionsDefinition(SNAPSHOT_DAYS)}
)


def snapshot_partition_key(cheetah_name: str, day: int) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({"campaign": cheetah_name, "day": day_key(day)})


def latest_storage_id(instance: dg.DagsterInstance, asset_key: dg.AssetKey) -> int | None:
    """Storage id of the asset's newest materialization (any partition), or None."""
    records = instance.fetch_materializations(asset_key, limit=1).records
    return records[0].storage_id if records else None


# ------------------------------------------------------------------------------------------------
class SnapshotConfig(dg.Config):
    allow_early: bool = Field(
        default=False,
        description=(
            "Take the snapshot even though its day has not come yet (now < send time + k days). It then "
            "stores the counts so far under day k, marked provisional in campaign_analysis until day k is "
            "fetched again once it has come: meant for a deliberate look, never for the sensors."
        ),
    )


@dg.asset(
    partitions_def=snapshot_partitions,
    group_name=GROUP,
    owners=OWNERS,
    kinds={"cheetah", "sql"},
    # Lineage from the send path: every snapshot is of a campaign that campaign_sends handed over.
    deps=[dg.AssetDep(SENDS, partition_mapping=dg.AllPartitionMapping())],
    pool=REPORTS_POOL,
    # Not due yet (a partition run before its day) ends the step without a materialization.
    output_required=False,
    retry_policy=dg.RetryPolicy(
        max_retries=3, delay=30, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
    ),
    description=(
        "A sent campaign's metrics in Cheetah Messaging (Sent, Received, MessageOpens, MessageClicks, "
        "Unsubs; Optimove's Sent, Delivered, Unique Opens, Unique Clicks, Unique Unsubscribes), "
        "snapshotted on each of the seven days after the send: partition (campaign, day_k) is fetched "
        "once k days have passed (run before then, it is left missing with an explanation; run config "
        "allow_early: true takes a provisional one). Re-fetching a partition replaces that day's row only, "
        "so the days keep what each said and a downward restatement stays visible (table cheetah_metric_snapshot)."
    ),
)
def campaign_metric_snapshots(
    context: dg.AssetExecutionContext,
    config: SnapshotConfig,
    cheetah: CheetahMessagingResource,
    customer_db: CustomerDatabaseResource,
    clock: ClockResource,
):
    keys = context.partition_key.keys_by_dimension
    name, day = keys["campaign"], day_number(keys["day"])
    engine = prepared_engine(customer_db)
    try:
        with cheetah.get_client(logger=RunLog(context.log)) as client:
            outcome = take_snapshot(
                client, engine, name, day, clock.now(), allow_early=config.allow_early, account=account_of(client.settings)
            )
    except SnapshotTooEarly as exc:
        context.log.info("Not due yet, nothing taken: %s", exc)
        yield not_due_observation(context.asset_key, context.partition_key, exc)
        return
    except (SnapshotError, CheetahError) as exc:
        failed = failure_of(exc, name)
        # Transient trouble the client's own retries did not outlast: the retry policy tries again.
        raise dg.Failure(description=failed.description, allow_retries=failed.transient) from None
    log_outcome(context.log, outcome)
    yield dg.MaterializeResult(metadata=snapshot_metadata(outcome, campaign_names(engine, [name]).get(name, "")))


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


def _campaigns_table(result: AnalysisResult, names: dict[str, str], limit: int = 200) -> dg.MetadataValue:
    return table(
        CAMPAIGN_COLUMNS,
        (
            {
                "campaign": c.cheetah_name,
                "name": names.get(c.cheetah_name, ""),
                "send_date": c.send_date,
                "status": c.status,
                "days_reported": c.days_reported,
                "latest_day": c.latest_day,
                **c.latest.counts,
                **c.rates(),
                "restated": c.restated,
                "provisional": bool(c.provisional_days),
                "late": bool(c.late_days),
            }
            for c in result.newest_first()
        ),
        limit=limit,
    )


def _rollup_table(result: AnalysisResult, names: dict[str, str], limit: int = 200) -> dg.MetadataValue:
    return table(
        ROLLUP_COLUMNS,
        (
            {
                "campaign_id": r.campaign_id,
                "name": names.get(r.parts[0].cheetah_name, ""),
                "send_date": r.send_date,
                "templates": ", ".join(r.templates),
                "status": r.status,
                **r.counts,
                **r.rates(),
                "restated": r.restated,
            }
            for r in rollup(result)
        ),
        limit=limit,
    )


def ab_split_table(result: AnalysisResult, names: dict[str, str], limit: int = 200) -> dg.MetadataValue:
    """Each campaign sent with several templates: its templates' open and click rates side by side."""
    return table(
        AB_COLUMNS,
        (
            {
                "campaign_id": r.campaign_id,
                "name": names.get(r.parts[0].cheetah_name, ""),
                "send_date": r.send_date,
                "open_rates": r.template_rates("open_rate"),
                "click_rates": r.template_rates("click_rate"),
            }
            for r in rollup(result)
            if len(r.parts) > 1
        ),
        limit=limit,
    )


#: Campaigns in the curves table (newest sends first): seven rows each.
CURVE_TABLE_CAMPAIGNS = 25


def _curve_table(result: AnalysisResult, campaigns: int = CURVE_TABLE_CAMPAIGNS) -> dg.MetadataValue:
    return table(
        CURVE_COLUMNS,
        (
            {
                "campaign": c.cheetah_name,
                "day": p.day,
                "as_of": p.as_of,
                **p.counts,
                **p.rates(),
                "restated": ", ".join(p.restated),
                "provisional": p.provisional,
                "late": p.late,
            }
            for c in result.newest_first()[:campaigns]
            for p in c.curve
        ),
        limit=campaigns * len(SNAPSHOT_DAYS),
    )


class AnalysisConfig(dg.Config):
    chart_dir: str | None = Field(
        default=None,
        description=(
            f"Folder the curves chart is saved in (as {CHART_FILE}, replaced by each analysis). Default: "
            "cheetah_charts under the Dagster instance's storage folder ($DAGSTER_HOME/storage)."
        ),
    )


def chart_metadata(context: dg.AssetExecutionContext, config: AnalysisConfig, result: AnalysisResult, names: dict[str, str]) -> dict:
    """The chart embedded (a data: URI in Markdown, under a line saying which campaigns it
    draws) and saved to a file, with its path; which campaigns the chart and the curves table hold."""
    png = curves_png(result, names, limit=CHART_CAMPAIGNS)
    folder = config.chart_dir or str(Path(context.instance.storage_directory()) / "cheetah_charts")
    image = base64.b64encode(png).decode("ascii")
    total = len(result.campaigns)
    shows = newest_of(min(CHART_CAMPAIGNS, total), total)
    caption = f"The chart draws {shows}" + (f"; the campaigns table lists all {total}." if total > CHART_CAMPAIGNS else ".")
    metadata = {
        "curves_chart": dg.MetadataValue.md(f"![Seven-day curves](data:image/png;base64,{image})\n\n{caption}"),
        "curves_chart_campaigns": dg.MetadataValue.text(shows),
        "curves_table_campaigns": dg.MetadataValue.text(newest_of(min(CURVE_TABLE_CAMPAIGNS, total), total)),
        "curves_chart_bytes": dg.MetadataValue.int(len(png)),
    }
    try:
        metadata["curves_chart_file"] = dg.MetadataValue.path(str(save_png(png, folder)))
    except OSError as exc:
        # The chart is a view of the analysis, which is stored already: say so, do not fail it.
        problem = f"The curves chart could not be saved in {folder} ({exc.strerror or exc}); set chart_dir to a writable folder."
        context.log.warning(problem)
        metadata["curves_chart_file_error"] = dg.MetadataValue.text(problem)
    return metadata


@dg.asset(
    group_name=GROUP,
    owners=OWNERS,
    kinds={"sql"},
    deps=[campaign_metric_snapshots],
    description=(
        "The campaign analysis: per sent campaign, its latest metrics under the Optimove names, "
        "delivery, open, click and unsubscribe rates, how many days reported, whether Cheetah restated "
        "a count, whether a day was taken early (provisional), and the seven-day curves as a table and a "
        "chart (table cheetah_campaign_analysis, replaced in one transaction)."
    ),
)
def campaign_analysis(
    context: dg.AssetExecutionContext, config: AnalysisConfig, customer_db: CustomerDatabaseResource, clock: ClockResource
) -> dg.MaterializeResult:
    engine = prepared_engine(customer_db)
    # Read before the tables: every snapshot whose event is at or below this id is in what we read,
    # so the analysis sensor knows exactly which snapshots this analysis covers.
    covers = latest_storage_id(context.instance, campaign_metric_snapshots.key)
    result = build_analysis(engine, clock.now())
    names = campaign_names(engine, [c.cheetah_name for c in result.campaigns])
    restated = sum(c.restated for c in result.campaigns)
    provisional = sum(bool(c.provisional_days) for c in result.campaigns)
    context.log.info(
        "analysed %d campaigns (%d with a restatement, %d provisional)", result.row_count, restated, provisional
    )
    overall = result.overall_rates()
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": dg.MetadataValue.int(result.row_count),
            "dagster/column_schema": ANALYSIS_SCHEMA,
            "campaign_rollup": _rollup_table(result, names),
            "ab_split": ab_split_table(result, names),
            "campaigns": _campaigns_table(result, names),
            "curves": _curve_table(result),
            **chart_metadata(context, config, result, names),
            # Floats and ints, so Dagster's plots tab draws them across analyses.
            **{f"overall_{k}": dg.MetadataValue.float(v if v is not None else 0.0) for k, v in overall.items()},
            "campaigns_final": dg.MetadataValue.int(sum(c.status.startswith("final") for c in result.campaigns)),
            "campaigns_provisional": dg.MetadataValue.int(provisional),
            "campaigns_restated": dg.MetadataValue.int(restated),
            "restatements": dg.MetadataValue.int(len(result.restatements)),
            "snapshots_covered_up_to_event": dg.MetadataValue.int(covers if covers is not None else -1),
        }
    )


# ------------------------------------------------------------------------------------------------
METRIC_ASSETS = [campaign_metric_snapshots, campaign_analysis, campaign_status]
__all__ = ["METRIC_ASSETS", "METRIC_CHECKS"]
