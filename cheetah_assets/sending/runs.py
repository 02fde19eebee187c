"""Which Dagster runs are still live: the one list the send path's claims and the sensors use."""

from __future__ import annotations

from typing import Callable

import dagster as dg

#: A run that may still be working: queued or starting, running, or being cancelled (a CANCELING
#: run's step can still be in a Cheetah call, so its claims and its analysis are not over yet).
LIVE_RUN_STATUSES = frozenset(
    {
        dg.DagsterRunStatus.QUEUED,
        dg.DagsterRunStatus.NOT_STARTED,
        dg.DagsterRunStatus.STARTING,
        dg.DagsterRunStatus.STARTED,
        dg.DagsterRunStatus.CANCELING,
    }
)


def owner_alive(instance: dg.DagsterInstance) -> Callable[[str], bool]:
    """Whether the run that owns a claim (its run id) is still live; an unknown owner counts as
    live (the claim's lease decides)."""

    def alive(owner: str) -> bool:
        run = instance.get_run_by_id(owner)
        return True if run is None else run.status in LIVE_RUN_STATUSES

    return alive
