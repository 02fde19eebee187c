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


#: Between a run id and a send worker's number in a claim's owner (``<run id>#w<n>``).
WORKER_MARK = "#w"


def worker_owner(run_id: str, worker: int) -> str:
    """The claim owner of send worker ``worker`` of run ``run_id``: each worker of a run claims
    under its own name, so the ledger's compare-and-set keeps two workers off one send."""
    return f"{run_id}{WORKER_MARK}{worker}"


def run_of(owner: str) -> str:
    """The run id of a claim's owner (a run id, or a worker's :func:`worker_owner`)."""
    return owner.split(WORKER_MARK, 1)[0]


def owner_alive(instance: dg.DagsterInstance) -> Callable[[str], bool]:
    """Whether the run that owns a claim (its run id, or one of its send workers) is still live;
    an unknown owner counts as live (the claim's lease decides)."""

    def alive(owner: str) -> bool:
        run = instance.get_run_by_id(run_of(owner))
        return True if run is None else run.status in LIVE_RUN_STATUSES

    return alive
