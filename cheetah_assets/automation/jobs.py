"""Every job of the code location: the send path's (by its asset group), the metric path's and the
cancellation job (an op: ``cancel_job.py``)."""

from __future__ import annotations

import dagster as dg

from ..metrics.assets import campaign_analysis, campaign_metric_snapshots
from ..metrics.batch import take_due_snapshots
from ..metrics.views import campaign_status
from ..sending.assets import GROUP as SEND_GROUP
from ..sending.assets import cheetah_template_catalog
from .cancel_job import cancel_campaign_job

template_catalog_job = dg.define_asset_job(
    "template_catalog_job",
    selection=dg.AssetSelection.assets(cheetah_template_catalog),
    description="Fetch the day's template catalog from the Optimove folder (and run the set-up checks).",
)

daily_campaign_cycle_job = dg.define_asset_job(
    "daily_campaign_cycle",
    selection=dg.AssetSelection.groups(SEND_GROUP),
    description=(
        "The day's cycle: template catalog and set-up checks, the day's campaigns validated, recipient "
        "lists frozen, and every ready campaign handed to Cheetah Messaging exactly once. Safe to "
        "re-execute, retry and backfill: past days re-derive what is missing and never send twice."
    ),
    # Never re-launched by the instance's run retries (deploy/dagster.yaml): a retry could race a send.
    tags={"team": "marketing-ops", "dagster/max_retries": "0"},
)

metric_snapshot_job = dg.define_asset_job(
    "metric_snapshot_job",
    selection=dg.AssetSelection.assets(campaign_metric_snapshots),  # partitioned by snapshot_partitions
    description=(
        "Fetch metric snapshots of campaign_metric_snapshots, one partition per run: backfills from the UI or "
        "the CLI (request_metric_snapshots_sensor takes the due ones in batches: metric_snapshot_batch_job)."
    ),
    tags={"team": "marketing-ops"},
)


@dg.job(
    description=(
        "Take every listed snapshot partition of campaign_metric_snapshots in one run, each recorded as that "
        "partition's materialization with its own metadata (requested by request_metric_snapshots_sensor, "
        "one run per tick). A campaign that fails is reported and asked for again once its back-off has passed "
        "(15 min, 1 h, 4 h)."
    ),
    # A failed snapshot is retried, partition by partition, by the sensor; the instance's run retries
    # (deploy/dagster.yaml) still re-launch a batch whose run died (a lost worker).
    tags={"team": "marketing-ops", "dagster/retry_on_asset_or_op_failure": "false"},
)
def metric_snapshot_batch_job():
    take_due_snapshots()


campaign_analysis_job = dg.define_asset_job(
    "campaign_analysis_job",
    selection=dg.AssetSelection.assets(campaign_analysis, campaign_status),  # with the analysis's checks
    description="Roll the metric snapshots up into the campaign analysis, check them, and refresh campaign_status.",
    tags={"team": "marketing-ops"},
)

SEND_JOBS = [daily_campaign_cycle_job, template_catalog_job, cancel_campaign_job]
METRIC_JOBS = [metric_snapshot_job, metric_snapshot_batch_job, campaign_analysis_job]
ALL_JOBS = [*SEND_JOBS, *METRIC_JOBS]
