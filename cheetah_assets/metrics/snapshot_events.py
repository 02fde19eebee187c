"""What one snapshot says in Dagster, whichever run took it.

Two things take snapshots: the partitioned asset ``campaign_metric_snapshots`` (one partition per
run: backfills from the UI or the CLI, ``dagster asset materialize --partition``) and the batch op
``take_due_snapshots`` (every due partition of a sensor tick in one run, :mod:`.batch`). Both build
a partition's materialization metadata, its not-due observation and the reason it failed here, so
that a partition looks the same in the UI whichever of them took it.
"""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg

from ..cheetah.contract import METRIC_NAMES
from ..cheetah.errors import TRANSIENT, CheetahError, MetricsNotReady, UnknownCampaign
from ..tables import table
from .analysis import RATES, Restatement, rate
from .columns import RESTATEMENT_COLUMNS
from .snapshots import SnapshotError, SnapshotOutcome, SnapshotTooEarly


def _optimove_label(cheetah_name: str) -> str:
    return f"{METRIC_NAMES[cheetah_name]} ({cheetah_name})"


def snapshot_metadata(outcome: SnapshotOutcome, campaign_name: str) -> dict:
    """The metadata of one partition's materialization (its counts, times, flags and rates)."""
    snap, prev = outcome.snapshot, outcome.previous
    name, day = snap.cheetah_name, snap.day
    optimove = snap.optimove()
    metadata: dict = {
        "campaign_name": dg.MetadataValue.text(campaign_name),
        **{_optimove_label(k): dg.MetadataValue.int(v) for k, v in snap.counts.items()},
        "day": dg.MetadataValue.int(day),
        "camp_id": dg.MetadataValue.int(snap.camp_id) if isinstance(snap.camp_id, int) else dg.MetadataValue.text(snap.camp_id),
        "as_of": dg.MetadataValue.timestamp(snap.as_of),
        "due_at": dg.MetadataValue.timestamp(outcome.due_at),
        "sent_at": dg.MetadataValue.timestamp(outcome.campaign.send_at),
        "restated": dg.MetadataValue.bool(bool(outcome.restated)),
        "replaced_earlier_snapshot": dg.MetadataValue.bool(outcome.replaced),
        "taken_early": dg.MetadataValue.bool(outcome.early),
        "provisional": dg.MetadataValue.bool(outcome.early),
        # Taken after its day's grace (a catch-up): the counts of taken_at, not of the day.
        "late": dg.MetadataValue.bool(outcome.late),
        "taken_at": dg.MetadataValue.timestamp(snap.fetched_at),
        # Floats, so Dagster's plots tab draws them per partition.
        **{k: dg.MetadataValue.float(rate(optimove[num], optimove[den]) or 0.0) for k, (num, den) in RATES.items()},
    }
    if prev is not None:
        metadata["compared_with_day"] = dg.MetadataValue.int(prev.day)
    if outcome.restated:
        metadata["restatements"] = table(
            RESTATEMENT_COLUMNS,
            (Restatement(name, day, prev.day, k, prev.counts[k], snap.counts[k]).record() for k in outcome.restated),
        )
    return metadata


def log_outcome(log, outcome: SnapshotOutcome) -> None:
    """The warnings a snapshot deserves: a restatement, or a day taken early."""
    snap, prev = outcome.snapshot, outcome.previous
    if outcome.restated:
        log.warning(
            "%s day %d restates %s below day %d's", snap.cheetah_name, snap.day, ", ".join(outcome.restated), prev.day if prev else 0
        )
    if outcome.late:
        log.warning(
            "%s day %d taken late (%s after its day came): the counts of the time taken, not of day %d",
            snap.cheetah_name, snap.day, snap.fetched_at - outcome.due_at, snap.day,
        )
    if outcome.early:
        log.warning("%s day %d taken early (allow_early): provisional until day %d has come", snap.cheetah_name, snap.day, snap.day)


def not_due_observation(asset_key: dg.AssetKey, partition: str, exc: SnapshotTooEarly) -> dg.AssetObservation:
    """A partition asked for before its day: an explanation, no materialization, no failure."""
    return dg.AssetObservation(
        asset_key=asset_key,
        partition=partition,
        description=str(exc),
        metadata={
            "not_due_until": dg.MetadataValue.timestamp(exc.due_at),
            "explanation": dg.MetadataValue.text(str(exc)),
        },
    )


@dataclass(frozen=True)
class SnapshotFailed:
    """Why one partition could not be taken: one sentence saying what to do, and whether trying
    again later may help (Cheetah trouble) or not (the ledger does not allow it)."""

    description: str
    transient: bool  # may pass within minutes (connection, 5xx, 429): the asset's retry policy retries it
    retryable: bool  # worth another attempt by the next sensor tick (any Cheetah error)


def failure_of(exc: Exception, cheetah_name: str) -> SnapshotFailed | None:
    """The failure a snapshot error means, or None for an error that is not one of ours (a bug)."""
    if isinstance(exc, SnapshotError):
        return SnapshotFailed(str(exc), transient=False, retryable=False)
    if isinstance(exc, MetricsNotReady):
        return SnapshotFailed(
            f"{exc} The ledger says campaign {cheetah_name} was approved to go out; look at it in Cheetah "
            "Messaging (paused, or its start time moved?) and re-execute this partition once it has gone out.",
            transient=False,
            retryable=True,
        )
    if isinstance(exc, UnknownCampaign):
        # Permanent: asking again every few hours for a week would only fill the run list with red.
        return SnapshotFailed(
            f"{exc} Was campaign {cheetah_name} deleted in Cheetah Messaging? Its metrics cannot be fetched any more; "
            "not retried (re-execute this partition if the campaign comes back).",
            transient=False,
            retryable=False,
        )
    if isinstance(exc, CheetahError):
        return SnapshotFailed(str(exc), transient=isinstance(exc, TRANSIENT), retryable=True)
    return None


def unexpected_failure(exc: Exception, what: str = "this snapshot") -> SnapshotFailed:
    """The failure of an error that is not Cheetah's nor a snapshot's (the database, a bug): retried
    like a Cheetah error (a database restart passes; a bug stops after the attempts run out)."""
    message = (str(exc).strip().splitlines() or [""])[0][:300]
    return SnapshotFailed(
        f"{type(exc).__name__}: {message or 'no message'} (not a Cheetah error: the database, or a bug, "
        f"while taking {what}; the run's log has the traceback). It is asked for again like a Cheetah failure.",
        transient=False,
        retryable=True,
    )
