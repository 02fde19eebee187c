"""Sensors of the metric path (thin: the arithmetic is in ``metrics/due.py``).

1. ``register_sent_campaigns_sensor`` adds a ``cheetah_campaigns`` partition for every send that
   has gone out (ledger state APPROVED, send time passed).
2. ``request_metric_snapshots_sensor`` requests partition (campaign, day_k) when day k after the
   send comes, once; after an outage it catches up every day that fell due meanwhile. All the
   partitions of a tick go in one run of ``metric_snapshot_batch_job`` (``metrics/batch.py``; at
   most ``BATCH_SIZE`` per run), each recorded as its own partition's materialization; a partition
   that failed in a batch (its observation says so) is asked for again once its back-off has passed
   (``batch.RETRY_DELAYS``: 15 min, 1 h, 4 h; it waits in the cursor meanwhile). A few
   days due for minutes only wait for more (``BATCH_MIN``, ``BATCH_WAIT``): in steady state one
   run per 30 minutes, or per 250 due days, whichever comes first.
3. ``campaign_analysis_sensor`` requests ``campaign_analysis`` (with its checks and
   ``campaign_status``) when a snapshot is newer than what the last analysis covered, or when the
   overdue snapshots changed (so the ``snapshots_on_time`` check says so without a new snapshot),
   or when the send path materialized after the status view (so the view shows the day's sends).
   Each state is requested once; a failed run is requested again after 5, 15 and 60 minutes, each
   request under a run key of its own (the daemon never launches a key twice).

All three start RUNNING (``DefaultSensorStatus.RUNNING``): they only read the customer database
and the Dagster instance, and the runs they start only *read* Cheetah Messaging (reports), so
there is nothing to arm by hand, and a fresh deployment (or ``dagster dev`` on the embedded demo)
collects metrics without anyone remembering to switch them on. Stopping one in the UI sticks.

Cursors are JSON. Each tick costs a few bounded queries, whatever the number of campaigns: the
ledger is read through its ``send_at``/``updated_at`` indexes for the tick's interval only, the
instance is asked which of those names are partitions (one ``IN`` query) and which partitions are
new since the last tick (paged by storage id); due times are pure arithmetic.
"""


import datetime as dt
import hashlib
import json

import dagster as dg

from ..cheetah.resource import CheetahMessagingResource
from ..clock import ClockResource
from ..customers.resource import CustomerDatabaseResource
from ..metrics import snapshots
from ..metrics.checks import overdue_now, prepared_engine
from ..metrics.assets import (
    campaign_analysis,
    campaign_metric_snapshots,
    campaigns_partitions,
    latest_storage_id,
)
from ..metrics.batch import BATCH_SIZE
from ..metrics.due import campaigns_sent_since, describe_elsewhere, snapshots_due
from ..metrics.keys import SENDS, STATUS
from ..sending.ledger import account_of
from ..sending.runs import LIVE_RUN_STATUSES
from ..timeutil import parse_iso
from .jobs import campaign_analysis_job, metric_snapshot_batch_job
from .run_keys import RUN_KEY_TAG, next_run_key, run_status

PARTITIONS = campaigns_partitions.name
PAGE = 10_000  # partitions per page when listing the new ones
BATCH_OP = "take_due_snapshots"
#: A run costs seconds of CPU to start, a snapshot milliseconds: a tick whose due partitions are
#: fewer than BATCH_MIN, all due for less than BATCH_WAIT, and none a retry, launches nothing and
#: leaves its cursor where it was, so the next ticks gather them into one run. A day is then taken
#: at most BATCH_WAIT after it came (far inside the overdue grace), and a steady trickle of due
#: days costs at most one run per BATCH_WAIT.
BATCH_MIN = 250
BATCH_WAIT = dt.timedelta(minutes=30)


def read_cursor(raw: str | None) -> dict:
    """The JSON cursor; a malformed one counts as none (the first tick)."""
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _time(raw: object) -> dt.datetime | None:
    if not isinstance(raw, str):
        return None
    try:
        return parse_iso(raw)
    except ValueError:
        return None


def _later(a: dt.datetime | None, b: dt.datetime) -> dt.datetime:
    """A cursor never moves back, even if the pinned clock does."""
    return b if a is None or b > a else a


# ------------------------------------------------------------------------------------------------
@dg.sensor(
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Registers each sent Cheetah campaign as a cheetah_campaigns partition of "
        "campaign_metric_snapshots, once its send time has passed (ledger state APPROVED). A send "
        "recorded against another Cheetah account (endpoint, Cust_ID) is left out, saying so."
    ),
)
def register_sent_campaigns_sensor(
    context: dg.SensorEvaluationContext,
    cheetah: CheetahMessagingResource,
    customer_db: CustomerDatabaseResource,
    clock: ClockResource,
):
    engine = customer_db.get_engine()
    snapshots.prepare_database(engine)
    account = account_of(cheetah.settings())  # no request: the settings only
    now = clock.now()
    since = _time(read_cursor(context.cursor).get("t"))
    cursor = json.dumps({"t": _later(since, now).isoformat()})
    elsewhere: list = []
    found = campaigns_sent_since(engine, now, since, account=account, elsewhere=elsewhere)
    sent = list(dict.fromkeys(name for name, _ in found))
    known = context.instance.get_existing_dynamic_partitions(PARTITIONS, sent) if sent else set()
    new = [name for name in sent if name not in known]
    left_out = describe_elsewhere(elsewhere, account) if elsewhere else ""
    if not new:
        reason = f"no newly sent campaign ({len(sent)} re-read, all registered)"
        return dg.SensorResult(skip_reason=f"{reason}; {left_out}" if left_out else reason, cursor=cursor)
    if left_out:
        context.log.warning(left_out)
    context.log.info("registering %d sent campaigns: %s", len(new), ", ".join(new[:20]) + (" …" if len(new) > 20 else ""))
    return dg.SensorResult(dynamic_partitions_requests=[campaigns_partitions.build_add_request(new)], cursor=cursor)


# ------------------------------------------------------------------------------------------------
def _latest_observation(instance: dg.DagsterInstance) -> int:
    records = instance.fetch_observations(campaign_metric_snapshots.key, limit=1).records
    return records[0].storage_id if records else 0


#: A failed partition waiting for its retry, in the request sensor's cursor ("w"):
#: key -> [next attempt, retry time (epoch seconds, or None: at once), storage id of the failure].
Waiting = dict[str, tuple[int, float | None, int]]


def read_waiting(raw: object) -> Waiting:
    """The cursor's waiting retries; anything malformed is dropped (the overdue check still sees it)."""
    out: Waiting = {}
    if isinstance(raw, dict):
        for key, value in raw.items():
            if isinstance(value, list) and len(value) == 3 and isinstance(value[0], int) and isinstance(value[2], int):
                at = value[1] if isinstance(value[1], (int, float)) else None
                out[str(key)] = (value[0], at, value[2])
    return out


def failed_to_retry(instance: dg.DagsterInstance, after: int, waiting: Waiting | None = None) -> tuple[Waiting, int]:
    """The partitions a batch run failed on since event ``after`` that it marked ``retried``, with
    those already ``waiting``, less any that a run has materialized since its failure: each with the
    number of its next attempt and when it is due (the failure's ``retry_at``); and the new cursor.

    One paged read of the snapshot asset's observations after ``after`` (only the batch's failures
    and not-due notes are observations: a handful), and one bounded look-up of later materializations.
    """
    retry: Waiting = dict(waiting or {})
    cursor, last = None, after
    while True:
        page = instance.fetch_observations(
            dg.AssetRecordsFilter(asset_key=campaign_metric_snapshots.key, after_storage_id=after),
            limit=PAGE, cursor=cursor, ascending=True,
        )
        for record in page.records:
            last = max(last, record.storage_id)
            obs = record.asset_observation
            metadata = obs.metadata if obs else {}
            if obs is None or obs.partition is None or "snapshot_failed" not in metadata:
                continue
            if metadata.get("retried") is not None and metadata["retried"].value:
                at = metadata.get("retry_at")
                retry[obs.partition] = (int(metadata["attempt"].value) + 1, None if at is None else float(at.value), record.storage_id)
            else:
                retry.pop(obs.partition, None)
        cursor = page.cursor
        if not page.has_more:
            break
    if retry:
        since = min(s for _, _, s in retry.values())
        done = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=campaign_metric_snapshots.key, asset_partitions=sorted(retry), after_storage_id=since),
            limit=PAGE,
        )
        for record in done.records:
            key = record.partition_key
            if key in retry and record.storage_id > retry[key][2]:
                del retry[key]  # taken since (a re-execution, a backfill)
    return retry, last


def batch_requests(keys: list[str], attempts: dict[str, int], stamp: str) -> list[dg.RunRequest]:
    """One run of the batch job per ``BATCH_SIZE`` partitions (in due order), keyed by the tick."""
    chunks = [keys[i : i + BATCH_SIZE] for i in range(0, len(keys), BATCH_SIZE)]
    requests = []
    for i, chunk in enumerate(chunks, 1):
        config: dict = {"partitions": chunk}
        retried = {k: attempts[k] for k in chunk if k in attempts}
        if retried:
            config["attempts"] = retried
        requests.append(
            dg.RunRequest(
                run_key=f"snapshots-{stamp}-{i}of{len(chunks)}",
                run_config={"ops": {BATCH_OP: {"config": config}}},
                tags={"cheetah/snapshots": str(len(chunk)), "cheetah/retries": str(len(retried))},
            )
        )
    return requests


@dg.sensor(
    job=metric_snapshot_batch_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Requests each registered campaign's metric snapshot for day k (1..7) once k days have passed "
        "since its send, exactly once; all the partitions due at a tick go in one run of "
        "metric_snapshot_batch_job (a partition that failed there is asked for again 15 min, 1 h and 4 h after "
        "each failure: up to 4 attempts). "
        "After a pause it requests every day that fell due meanwhile (up to a week back)."
    ),
)
def request_metric_snapshots_sensor(
    context: dg.SensorEvaluationContext,
    cheetah: CheetahMessagingResource,
    customer_db: CustomerDatabaseResource,
    clock: ClockResource,
):
    engine = customer_db.get_engine()
    snapshots.prepare_database(engine)
    account = account_of(cheetah.settings())  # no request: the settings only
    now = clock.now()
    state = read_cursor(context.cursor)
    last_tick = _time(state.get("t"))
    partitions_cursor = state.get("p") if last_tick is not None else None
    instance = context.instance
    loader = context.caching_dynamic_partitions_loader or instance

    def registered(names: list[str]) -> set[str]:
        return set(loader.get_existing_dynamic_partitions(PARTITIONS, names))

    def registered_since_last_tick() -> list[str]:
        nonlocal partitions_cursor
        names: list[str] = []
        while True:
            page = instance.get_paginated_dynamic_partitions(
                PARTITIONS, limit=PAGE, ascending=True, cursor=partitions_cursor
            )
            names.extend(page.results)
            partitions_cursor = page.cursor
            if not page.has_more:
                return names

    plan = snapshots_due(
        engine,
        now=now,
        last_tick=last_tick,
        registered=registered,
        registered_since_last_tick=registered_since_last_tick,
        account=account,
    )
    if plan.other_account:
        context.log.warning(describe_elsewhere(plan.other_account, account))
    # Failures since the last tick: on the first tick (no cursor) the catch-up above asks for
    # every due day not taken on time anyway, so older failures start from here.
    # A failure is asked for again once its back-off has passed (its retry_at, batch.RETRY_DELAYS);
    # until then it waits in the cursor ("w").
    seen = state.get("o")
    if last_tick is None or not isinstance(seen, int):
        waiting, seen = {}, _latest_observation(instance)
    else:
        waiting, seen = failed_to_retry(instance, seen, read_waiting(state.get("w")))
    attempts = {k: n for k, (n, at, _) in waiting.items() if at is None or at <= now.timestamp()}
    later = {k: list(v) for k, v in waiting.items() if k not in attempts}
    tick = _later(last_tick, now)
    cursor = json.dumps({"t": tick.isoformat(), "p": partitions_cursor, "o": seen, **({"w": later} if later else {})})
    if plan.not_registered:
        context.log.info(
            "%d sent campaigns have a day due but are not registered yet (register_sent_campaigns_sensor "
            "will add them; their due days are requested then): %s",
            len(plan.not_registered),
            ", ".join(plan.not_registered[:20]),
        )
    keys = list(dict.fromkeys([*(d.run_key for d in plan.due), *sorted(attempts)]))
    if not keys:
        reason = "no snapshot day has come since the last tick"
        if later:
            first = dt.datetime.fromtimestamp(min(v[1] for v in later.values()), dt.timezone.utc)
            reason += f"; {len(later)} failed snapshots wait for their retry (the next at {first:%Y-%m-%d %H:%M} UTC)"
        return dg.SensorResult(skip_reason=reason, cursor=cursor)
    if not attempts and len(keys) < BATCH_MIN and min(d.due_at for d in plan.due) > now - BATCH_WAIT:
        # Gathered for one run: the cursor stays, so the next tick asks for these again and more.
        return dg.SensorResult(
            skip_reason=(
                f"{len(keys)} snapshot days due, the oldest for less than {BATCH_WAIT.total_seconds() / 60:g} min: "
                f"gathering them into one run (at {BATCH_MIN} due, or once the oldest has waited {BATCH_WAIT.total_seconds() / 60:g} min)"
            ),
            cursor=context.cursor,
        )
    requests = batch_requests(keys, attempts, f"{tick.isoformat()}-o{seen}")
    context.log.info(
        "requesting %d snapshot%s in %d run%s (%d sends with a day due, %d campaigns newly registered, %d retried, "
        "%d already taken)",
        len(keys), "" if len(keys) == 1 else "s", len(requests), "" if len(requests) == 1 else "s",
        plan.window_sends, plan.newly_registered, len(attempts), plan.already_taken,
    )
    return dg.SensorResult(run_requests=requests, cursor=cursor)


# ------------------------------------------------------------------------------------------------
def analysis_covers(instance: dg.DagsterInstance) -> int | None:
    """The newest snapshot event the latest analysis had read (its own event id for an old one)."""
    records = instance.fetch_materializations(campaign_analysis.key, limit=1).records
    if not records:
        return None
    mat = records[0].asset_materialization
    value = mat.metadata.get("snapshots_covered_up_to_event") if mat else None
    return int(value.value) if value is not None else records[0].storage_id


def _fingerprint(keys: list[str]) -> str:
    return hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()[:16]


#: An analysis run that failed (a locked database, a restart) is requested again this long after
#: its failure was seen, once per delay; then the sensor leaves that state alone until it changes.
ANALYSIS_RETRY_DELAYS = (dt.timedelta(minutes=5), dt.timedelta(minutes=15), dt.timedelta(minutes=60))
_FAILED = (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)


def _last_request(raw: object) -> dict | None:
    """The cursor's last request ({sig, base, run_key, tries[, failed_at][, done]}); None if malformed."""
    if not isinstance(raw, dict) or not all(isinstance(raw.get(k), str) for k in ("sig", "base", "run_key")):
        return None
    return raw if isinstance(raw.get("tries"), int) else {**raw, "tries": 0}


def _superseded(instance: dg.DagsterInstance, run_key: str) -> bool:
    """Whether the newest run of the analysis job is not the (failed) run of ``run_key`` and succeeded."""
    newest = instance.get_runs(filters=dg.RunsFilter(job_name=campaign_analysis_job.name), limit=1)
    return bool(newest) and newest[0].status == dg.DagsterRunStatus.SUCCESS and newest[0].tags.get(RUN_KEY_TAG) != run_key


@dg.sensor(
    job=campaign_analysis_job,
    minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Requests campaign_analysis (with its checks and campaign_status) when a metric snapshot is newer "
        "than what the latest analysis read (run key 'analysis-<newest snapshot event id>-…'), or when the "
        "set of overdue snapshots changed, so that the snapshots_on_time check fails (or passes again) "
        "without waiting for a snapshot ('…-overdue-<fingerprint>'), or when campaign_sends is newer than "
        "campaign_status ('…-sends-<event id>'); each state once. A failed run is requested again 5, 15 "
        "and 60 minutes after its failure ('…-retry<n>'); every key ends in a sequence number of its own."
    ),
)
def campaign_analysis_sensor(
    context: dg.SensorEvaluationContext, customer_db: CustomerDatabaseResource, clock: ClockResource
):
    """Each state (newest snapshot event, overdue fingerprint, newest send-path event) is requested
    once; a run that failed is requested again after each of :data:`ANALYSIS_RETRY_DELAYS`, unless
    a later run of the job succeeded. Run keys come from ``run_keys.next_run_key`` (an epoch
    and a sequence number in the cursor): the daemon never launches a key twice, so a key that
    repeated would leave a failed analysis stale for good."""
    instance, now = context.instance, clock.now()
    state = read_cursor(context.cursor)
    latest = latest_storage_id(instance, campaign_metric_snapshots.key)
    overdue = [d.run_key for d in overdue_now(instance, prepared_engine(customer_db), now)]
    fingerprint = _fingerprint(overdue)
    checked = state.get("overdue", _fingerprint([]))
    covered = analysis_covers(instance)
    newer = latest is not None and (covered is None or covered < latest)
    # The status view also shows the send path: a newer campaign_sends than the view re-runs it.
    sends, shown = latest_storage_id(instance, SENDS), latest_storage_id(instance, STATUS)
    sends_newer = sends is not None and (shown is None or shown < sends)
    sig = f"{latest or 0}|{fingerprint}|{sends or 0}"
    last = _last_request(state.get("last"))
    status = run_status(instance, last["run_key"]) if last and not last.get("done") else None
    if last and (status == dg.DagsterRunStatus.SUCCESS or (status in _FAILED and _superseded(instance, last["run_key"]))):
        last, status = {**last, "done": True}, None
    failed = status in _FAILED
    cursor = {**state, "overdue": checked, **({"last": last} if last else {})}

    def skip(reason: str) -> dg.SensorResult:
        return dg.SensorResult(skip_reason=reason, cursor=json.dumps(cursor))

    if not failed and not (newer or sends_newer or checked != fingerprint):
        if latest is None:
            return skip("no metric snapshot yet")
        return skip(f"the analysis is up to date (snapshot event {latest}, {len(overdue)} snapshots overdue)")
    running = instance.get_runs(
        filters=dg.RunsFilter(job_name=campaign_analysis_job.name, statuses=list(LIVE_RUN_STATUSES)), limit=1
    )
    if running:
        return skip(f"an analysis run ({running[0].run_id}) is still in flight; next tick")
    same, tries = last is not None and last["sig"] == sig, 0
    if same and not failed:
        if last.get("done"):  # its run succeeded: the same state is not requested again
            return skip(f"the analysis of this state ran already (run key {last['run_key']})")
        # Never launched (or deleted): the same key, which the daemon launches at most once.
        return dg.SensorResult(run_requests=[_analysis_request(last["run_key"], latest)], cursor=json.dumps(cursor))
    if same and failed:
        tries, failed_at = last["tries"], _time(last.get("failed_at")) or now
        if tries >= len(ANALYSIS_RETRY_DELAYS):
            return skip(
                f"the analysis run failed {tries + 1} times for this state (last run key {last['run_key']}); not "
                "requested again until a snapshot, the overdue snapshots or the send path change (see the failed "
                "campaign_analysis_job runs, and launch it by hand once fixed)"
            )
        if now < failed_at + ANALYSIS_RETRY_DELAYS[tries]:
            cursor["last"] = {**last, "failed_at": failed_at.isoformat()}
            at = failed_at + ANALYSIS_RETRY_DELAYS[tries]
            return skip(f"the analysis run {last['run_key']} failed; requested again at {at:%Y-%m-%d %H:%M} UTC")
        tries, base = tries + 1, last["base"]
        context.log.info("the analysis run %s failed: requesting it again (retry %d)", last["run_key"], tries)
    else:
        base = f"analysis-{latest if latest is not None else 0}"
        if checked != fingerprint:
            base += f"-overdue-{fingerprint}"
            context.log.info("the overdue snapshots changed (%d now overdue): re-running the analysis and its checks", len(overdue))
        if sends_newer:
            base += f"-sends-{sends}"
    run_key = next_run_key(cursor, base + (f"-retry{tries}" if tries else ""))
    cursor.update(overdue=fingerprint, last={"sig": sig, "base": base, "run_key": run_key, "tries": tries})
    return dg.SensorResult(run_requests=[_analysis_request(run_key, latest)], cursor=json.dumps(cursor))


def _analysis_request(run_key: str, latest: int | None) -> dg.RunRequest:
    return dg.RunRequest(run_key=run_key, tags={"cheetah/snapshot_event": str(latest or 0)})


METRIC_SENSORS = [register_sent_campaigns_sensor, request_metric_snapshots_sensor, campaign_analysis_sensor]
