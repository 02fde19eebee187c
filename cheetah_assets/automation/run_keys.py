"""Run keys: the tag the daemon gives a run launched for a sensor's run request, the run a key
launched, and fresh keys for requests that must run again (the daemon never launches a key twice)."""

from __future__ import annotations

import secrets

import dagster as dg

#: The tag the daemon gives a run launched for a run request's key.
RUN_KEY_TAG = "dagster/run_key"


def run_of(instance: dg.DagsterInstance, run_key: str) -> dg.DagsterRun | None:
    """The newest run launched for ``run_key``; None if there is none (never launched, or deleted)."""
    runs = instance.get_runs(filters=dg.RunsFilter(tags={RUN_KEY_TAG: run_key}), limit=1)
    return runs[0] if runs else None


def run_status(instance: dg.DagsterInstance, run_key: str) -> dg.DagsterRunStatus | None:
    """The status of the run launched for ``run_key``; None if there is none."""
    run = run_of(instance, run_key)
    return run.status if run is not None else None


def run_finished(instance: dg.DagsterInstance, run_key: str) -> bool:
    """Whether the run launched for ``run_key`` has finished (True if there is none: the daemon
    creates it before it stores the cursor, so it was never launched or was deleted)."""
    run = run_of(instance, run_key)
    return run is None or run.is_finished


def next_run_key(cursor: dict, prefix: str) -> str:
    """``prefix`` with a suffix no earlier request of this cursor's line had: the cursor's epoch
    and its next sequence number (both kept in ``cursor``, updated in place)."""
    epoch = cursor.get("epoch")
    if not isinstance(epoch, str) or not epoch.isalnum():
        epoch = cursor["epoch"] = secrets.token_hex(4)
        cursor["seq"] = 0
    seq = cursor.get("seq")
    seq = (seq if isinstance(seq, int) and not isinstance(seq, bool) and seq >= 0 else 0) + 1
    cursor["seq"] = seq
    return f"{prefix}-{epoch}.{seq}"
