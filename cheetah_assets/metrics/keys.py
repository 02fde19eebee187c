"""The names the metric path's Dagster objects go by, in one place, so that the modules that only
need a name (the checks, the status view) do not import the assets that carry it
(``test_metrics.py`` checks the assets really have these names)."""

from __future__ import annotations

import dagster as dg

#: The dynamic partitions of sent Cheetah campaigns (one per campaign, keyed by its Cheetah name).
CAMPAIGN_PARTITIONS = "cheetah_campaigns"
SNAPSHOTS = dg.AssetKey("campaign_metric_snapshots")
ANALYSIS = dg.AssetKey("campaign_analysis")
STATUS = dg.AssetKey("campaign_status")
SENDS = dg.AssetKey("campaign_sends")
GROUP = "metrics"
OWNERS = ["team:marketing-ops"]

#: Concurrency pool of the steps that call the Cheetah report API (the snapshot asset and the batch
#: op). Unlimited unless the instance sets a limit (``dagster instance concurrency set
#: cheetah_reports 4``): worth doing when a backfill launches hundreds of snapshot runs against a
#: 20 requests/s account.
REPORTS_POOL = "cheetah_reports"
