"""Jobs over the send path's assets (the metric path's jobs live with its sensors)."""

from __future__ import annotations

import dagster as dg

from ..sending.assets import campaign_sends, cheetah_template_catalog, recipient_lists, scheduled_campaigns
from ..sending.cancel_job import cancel_campaign_job

template_catalog_job = dg.define_asset_job(
    "template_catalog_job",
    selection=dg.AssetSelection.assets(cheetah_template_catalog),
    description="Fetch the day's template catalog from the Optimove folder (and run the set-up checks).",
)

daily_campaign_cycle_job = dg.define_asset_job(
    "daily_campaign_cycle",
    selection=dg.AssetSelection.assets(cheetah_template_catalog, scheduled_campaigns, recipient_lists, campaign_sends),
    description=(
        "The day's cycle: template catalog and set-up checks, the day's campaigns validated, recipient "
        "lists frozen, and every ready campaign handed to Cheetah Messaging exactly once. Safe to "
        "re-execute, retry and backfill: past days re-derive what is missing and never send twice."
    ),
    # Never re-launched by the instance's run retries (deploy/dagster.yaml): a retry could race a send.
    tags={"team": "marketing-ops", "dagster/max_retries": "0"},
)

__all__ = ["template_catalog_job", "daily_campaign_cycle_job", "cancel_campaign_job"]
