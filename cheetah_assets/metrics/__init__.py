"""The metric path: seven daily snapshots of each sent campaign's metrics, and the campaign analysis.

Import each name from the module that defines it (this package re-exports nothing):

* :mod:`.snapshots` — taking a snapshot and storing it (plain functions; no Dagster);
* :mod:`.due` — what the metric sensors ask: which sends to register, which days are due;
* :mod:`.analysis` — the roll-up per campaign, the data-quality scans and the curves as
  Markdown (plain functions);
* :mod:`.assets` — the Dagster assets and asset checks (``METRIC_ASSETS``, ``METRIC_CHECKS``);
  the sensors are in ``automation/metric_sensors.py``.
"""
