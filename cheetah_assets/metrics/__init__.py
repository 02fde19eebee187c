"""The metric path: seven daily snapshots of each sent campaign's metrics, and the campaign analysis.

* :mod:`.snapshots` — taking a snapshot, and what is due when (plain functions; no Dagster);
* :mod:`.analysis` — the roll-up per campaign and the data-quality scans (plain functions);
* :mod:`.assets` — the Dagster assets, asset checks and jobs (``METRIC_ASSETS``,
  ``METRIC_CHECKS``, ``METRIC_JOBS``); the sensors are in ``automation/metric_sensors.py``.
"""

from __future__ import annotations

from .analysis import AnalysisResult, build_analysis, find_impossible, find_restatements, load_analysis
from .snapshots import SNAPSHOT_DAYS, snapshots_due, take_snapshot

__all__ = [
    "AnalysisResult",
    "SNAPSHOT_DAYS",
    "build_analysis",
    "find_impossible",
    "find_restatements",
    "load_analysis",
    "snapshots_due",
    "take_snapshot",
]
