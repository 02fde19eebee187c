"""Every due snapshot of a sensor tick in one run: the op ``take_due_snapshots``.

A run costs seconds of CPU before it does anything (launching, the code location, the event log),
and a snapshot only a few milliseconds (one report request, one upsert). So
``request_metric_snapshots_sensor`` asks for one run of ``metric_snapshot_batch_job`` per tick,
whose run config lists the tick's due partitions (``"<campaign>|day_k"``, at most
:data:`BATCH_SIZE` per run). For each, the op takes the snapshot and records what the partitioned
asset ``campaign_metric_snapshots`` would have recorded for that partition, through
:mod:`.snapshot_events`:

* taken: an ``AssetMaterialization`` of ``campaign_metric_snapshots`` for that partition, with its
  own metadata (the partition shows as materialized in the UI, the checks and the analysis sensor
  read it like any other);
* not due (``allow_early`` unset and its day not come): the same ``AssetObservation`` as the asset's;
* failed (a Cheetah error for one campaign, a ledger that does not allow it, or any other error:
  the database refusing its row, a bug): an ``AssetObservation``
  with ``snapshot_failed`` (the reason), ``attempt`` and ``retried``, and the others go on. The op
  then fails, naming every failed partition in a table, so the run is red and the failed-run alert
  fires. The request sensor reads those observations and asks for each retryable one again once its
  back-off has passed (``retry_at``: :data:`RETRY_DELAYS` after the failure, so a paused campaign or
  an outage of an hour is outlasted), up to :data:`MAX_ATTEMPTS` attempts in all; after that the
  partition is left to ``snapshots_on_time`` (overdue after the grace) and a backfill. A campaign
  Cheetah does not know (404: deleted there?) is not retried. An error before the first partition
  (the database at the start of the run) fails every partition of the run the same way.

Backfills (the UI, ``dagster job backfill -j metric_snapshot_job``) and
``dagster asset materialize --partition`` still run the asset, one partition per run.
"""


import datetime as dt
import traceback
from dataclasses import dataclass
from typing import Collection, Iterable, Iterator

import dagster as dg
from pydantic import Field
from sqlalchemy.engine import Engine

from ..cheetah.errors import CheetahError
from ..cheetah.resource import CheetahMessagingResource
from ..clock import ClockResource
from ..customers.resource import CustomerDatabaseResource
from ..runlog import RunLog
from ..sending.ledger import Account, account_of
from ..tables import table
from .checks import prepared_engine
from .columns import FAILED_COLUMNS
from .keys import CAMPAIGN_PARTITIONS, REPORTS_POOL, SNAPSHOTS
from .snapshot_events import (
    SnapshotFailed,
    failure_of,
    log_outcome,
    not_due_observation,
    snapshot_metadata,
    unexpected_failure,
)
from .snapshots import MetricsSource, SnapshotError, SnapshotOutcome, SnapshotTooEarly, day_number, take_snapshot
from .status import campaign_names

#: Partitions per batch run. A catch-up after a long outage becomes several runs of this size, so
#: no run config grows without bound and one run's trouble holds up at most this many snapshots.
BATCH_SIZE = 1000

#: Attempts per partition, the first included: as many as the asset's retry policy allows.
MAX_ATTEMPTS = 4

#: How long after a failed attempt the next one comes (the n-th entry after attempt n). Spread
#: over hours: a campaign paused in Cheetah (409) or a Reports outage of an hour is outlasted,
#: while the last attempt still comes before the day is overdue (``due.SNAPSHOT_GRACE``, 6 h:
#: the first attempt waits at most ``BATCH_WAIT``, 30 min, then 15 min + 1 h + 4 h).
RETRY_DELAYS = (dt.timedelta(minutes=15), dt.timedelta(hours=1), dt.timedelta(hours=4))
assert len(RETRY_DELAYS) == MAX_ATTEMPTS - 1


def retry_delay(attempt: int) -> dt.timedelta:
    """How long after failed attempt ``attempt`` the next one comes (0: a partition not tried, as 1)."""
    return RETRY_DELAYS[min(max(attempt, 1), len(RETRY_DELAYS)) - 1]

#: After this many Cheetah errors in a row, the rest of the batch is not tried (an account-wide
#: outage: credentials, whitelist, the service down); they are reported as failed, not attempted.
BREAK_AFTER = 5


def parse_partition(key: str) -> tuple[str, int]:
    """``"<campaign>|day_k"`` -> (campaign, k); ValueError for anything else."""
    name, sep, day = key.rpartition("|")
    if not sep or not name:
        raise ValueError(f"{key!r} is not a snapshot partition; expected '<campaign>|day_<k>'")
    return name, day_number(day)


@dataclass(frozen=True)
class PartitionResult:
    key: str
    outcome: SnapshotOutcome | None = None
    not_due: SnapshotTooEarly | None = None
    failed: SnapshotFailed | None = None
    attempted: bool = True  # False: skipped after BREAK_AFTER Cheetah errors in a row
    error: Exception | None = None  # an error neither Cheetah's nor a snapshot's: its traceback is logged


def take_snapshots(
    client: MetricsSource,
    engine: Engine,
    keys: Iterable[str],
    now: dt.datetime,
    *,
    registered: Collection[str],
    allow_early: bool = False,
    account: Account | None = None,
) -> Iterator[PartitionResult]:
    """Take each partition's snapshot in turn; one that fails never stops the others. A send
    recorded against another ``account`` than the client's is refused, not fetched."""
    in_a_row = 0
    for key in keys:
        if in_a_row >= BREAK_AFTER:
            yield PartitionResult(
                key,
                failed=SnapshotFailed(
                    f"Not tried: the {BREAK_AFTER} snapshots before it failed in a row at Cheetah Messaging "
                    "(see their reasons); it is asked for again by the next tick.",
                    transient=True,
                    retryable=True,
                ),
                attempted=False,
            )
            continue
        try:
            name, day = parse_partition(key)
        except ValueError as exc:
            yield PartitionResult(key, failed=SnapshotFailed(str(exc), transient=False, retryable=False))
            continue
        if name not in registered:
            reason = f"{name!r} is not a {CAMPAIGN_PARTITIONS} partition (register_sent_campaigns_sensor adds sent campaigns)."
            yield PartitionResult(key, failed=SnapshotFailed(reason, transient=False, retryable=False))
            continue
        try:
            outcome = take_snapshot(client, engine, name, day, now, allow_early=allow_early, account=account)
        except SnapshotTooEarly as exc:
            yield PartitionResult(key, not_due=exc)
            continue
        except (SnapshotError, CheetahError) as exc:
            in_a_row = in_a_row + 1 if isinstance(exc, CheetahError) else 0
            yield PartitionResult(key, failed=failure_of(exc, name))
            continue
        except Exception as exc:  # noqa: BLE001 - the database, a bug: this partition fails, the others go on
            in_a_row = 0
            yield PartitionResult(key, failed=unexpected_failure(exc), error=exc)
            continue
        in_a_row = 0
        yield PartitionResult(key, outcome=outcome)


class SnapshotBatchConfig(dg.Config):
    partitions: list[str] = Field(
        description="The partitions of campaign_metric_snapshots to take, as '<campaign>|day_<k>'."
    )
    allow_early: bool = Field(
        default=False,
        description="As the asset's allow_early: take a day that has not come yet, provisional. Never set by the sensor.",
    )
    attempts: dict[str, int] = Field(
        default={},
        description="The attempt number of a partition asked for again after a failure (set by the sensor; 1 if absent).",
    )


@dg.op(
    description=(
        "Takes each listed snapshot partition of campaign_metric_snapshots and records it as that partition's "
        "materialization, with its own metadata. A partition that fails is reported (an observation and the "
        "op's failure table) and does not stop the others; request_metric_snapshots_sensor asks for it again."
    ),
    tags={"kind": "cheetah"},
    pool=REPORTS_POOL,
)
def take_due_snapshots(
    context: dg.OpExecutionContext,
    config: SnapshotBatchConfig,
    cheetah: CheetahMessagingResource,
    customer_db: CustomerDatabaseResource,
    clock: ClockResource,
) -> dg.Output[int]:
    keys = list(dict.fromkeys(config.partitions))
    now = clock.now()
    report = _Report(context, config.attempts, now)
    try:
        engine = prepared_engine(customer_db)
        named = {k.rpartition("|")[0] for k in keys}
        registered = set(context.instance.get_existing_dynamic_partitions(CAMPAIGN_PARTITIONS, sorted(named)))
        report.labels = campaign_names(engine, registered)
        with cheetah.get_client(logger=RunLog(context.log)) as client:
            for result in take_snapshots(
                client, engine, keys, now, registered=registered, allow_early=config.allow_early,
                account=account_of(client.settings),
            ):
                report.record(result)
    except Exception as exc:  # noqa: BLE001 - before the first partition (the database), or the client's end
        # Every partition not recorded yet fails with it (an attempt each), to be asked for again.
        rest = [k for k in keys if k not in report.recorded]
        if not rest:
            raise  # after every partition was recorded (the client's end): the run fails, nothing is lost
        report.record_all(rest, exc)
    return report.finish(len(keys))


def _traceback(exc: BaseException) -> str:
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip()


class _Report:
    """What the op records of each partition (a materialization, a not-due or a failed observation),
    and its end: a failure naming every failed partition, or the number taken."""

    def __init__(self, context: dg.OpExecutionContext, attempts: dict[str, int], now: dt.datetime):
        self.context, self.attempts, self.now = context, attempts, now
        self.labels: dict[str, str] = {}
        self.recorded: set[str] = set()
        self.taken, self.not_due, self.failed = 0, 0, []

    def record(self, result: PartitionResult) -> None:
        if result.outcome is not None:
            try:
                name = result.outcome.snapshot.cheetah_name
                metadata = snapshot_metadata(result.outcome, self.labels.get(name, ""))
                log_outcome(self.context.log, result.outcome)
            except Exception as exc:  # noqa: BLE001 - a bug in one partition's metadata: that one fails
                result = PartitionResult(result.key, failed=unexpected_failure(exc), error=exc)
        if result.outcome is not None:
            self.context.log_event(dg.AssetMaterialization(asset_key=SNAPSHOTS, partition=result.key, metadata=metadata))
            self.taken += 1
        elif result.not_due is not None:
            self.context.log.info("Not due yet, nothing taken: %s", result.not_due)
            self.context.log_event(not_due_observation(SNAPSHOTS, result.key, result.not_due))
            self.not_due += 1
        else:
            self._failed(result)
        self.recorded.add(result.key)  # once its event is logged

    def record_all(self, keys: list[str], exc: Exception) -> None:
        """``keys`` failed with ``exc``, which stopped the run before them."""
        self.context.log.error("The run stopped before taking %d snapshots:\n%s", len(keys), _traceback(exc))
        failed = unexpected_failure(exc, "the run's partitions")
        for key in keys:
            self._failed(PartitionResult(key, failed=failed))
            self.recorded.add(key)

    def _failed(self, result: PartitionResult) -> None:
        assert result.failed is not None
        now = self.now
        attempt = self.attempts.get(result.key, 1) - (0 if result.attempted else 1)
        retried = result.failed.retryable and attempt < MAX_ATTEMPTS
        retry_at = now + retry_delay(attempt) if retried else None
        self.failed.append({"partition": result.key, "attempt": attempt, "retried": retried, "reason": result.failed.description})
        self.context.log.error(
            "%s not taken (attempt %d%s): %s%s", result.key, attempt,
            f", retried at {retry_at:%Y-%m-%d %H:%M} UTC" if retry_at else "", result.failed.description,
            f"\n{_traceback(result.error)}" if result.error is not None else "",
        )
        metadata = {
            "snapshot_failed": dg.MetadataValue.text(result.failed.description),
            "attempt": dg.MetadataValue.int(attempt),
            "retried": dg.MetadataValue.bool(retried),
            "failed_at": dg.MetadataValue.timestamp(now),
        }
        if retry_at is not None:
            metadata["retry_at"] = dg.MetadataValue.timestamp(retry_at)
        self.context.log_event(
            dg.AssetObservation(asset_key=SNAPSHOTS, partition=result.key, description=result.failed.description, metadata=metadata)
        )

    def finish(self, partitions: int) -> dg.Output[int]:
        taken, failed = self.taken, self.failed
        summary = {"taken": taken, "not_due": self.not_due, "failed": len(failed), "partitions": partitions}
        if failed:
            raise dg.Failure(
                description=(
                    f"{len(failed)} of {partitions} snapshots were not taken ({taken} taken); first: "
                    f"{failed[0]['partition']}: {failed[0]['reason']}"
                ),
                metadata={**summary, "failed_snapshots": table(FAILED_COLUMNS, failed, limit=200)},
                allow_retries=False,
            )
        self.context.log.info("%d snapshots taken, %d not due yet", taken, self.not_due)
        return dg.Output(taken, metadata=summary)
