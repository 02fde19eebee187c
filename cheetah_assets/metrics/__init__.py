"""The metric path: seven daily snapshots of each sent campaign's metrics, and the campaign analysis.

Import each name from the module that defines it (this package re-exports nothing):

* :mod:`.snapshots` — taking a snapshot and storing it (plain functions; no Dagster);
  :mod:`.snapshot_events` — what one says in Dagster (metadata, not-due, failure), for the asset
  and :mod:`.batch` — the op that takes every due snapshot of a sensor tick in one run;
* :mod:`.due` — what the metric sensors ask: which sends to register, which days are due, which
  are overdue;
* :mod:`.analysis` — the roll-up per campaign (provisional days included) and the data-quality
  scans (plain functions); :mod:`.chart` — the seven-day curves as a PNG; :mod:`.status` — each
  planned campaign's status row (plain functions);
* :mod:`.assets` — the snapshot and analysis assets (``METRIC_ASSETS``, ``METRIC_CHECKS``);
  :mod:`.checks` — the asset checks; :mod:`.views` — ``campaign_status``; :mod:`.columns`,
  :mod:`.keys` — table columns and the names the others share. The sensors are in
  ``automation/metric_sensors.py``.
"""
