"""``campaign_preparation_sensor``: prepares each campaign a lead time before its send time.

Every minute it reads the schedule of the send dates around today (one indexed query), works
out which dates' due sets changed (:mod:`cheetah_assets.sending.preparation`) and requests the
``daily_campaign_cycle`` job on each such date's partition. The run refreshes that day's
catalog, plans it (due campaigns READY, the others WAITING) and hands the READY ones over,
exactly once. A date whose due set became empty (its only due campaign moved to another date or
a later time, or deleted, after it was handed over) is requested too: its run deletes the
campaign in Cheetah before it goes out at the old time. When the window's rows change, it also
records when each campaign was first seen (so MISSED means first seen too late).

Each tick also looks for recipients suppressed since their send was handed over
(:func:`cheetah_assets.sending.late_suppression.check`: the ledger's sends whose time is ahead,
on its send_at index; when there are some, the suppression list compared with the copy the last
tick saw, and only what came since looked up in their lists' keys). A date with a new finding is
requested: its run deletes and re-creates the send without them, or, too close to the send time,
says they will still be mailed (``suppression_changes.py``). Nothing changed and nothing handed
over ahead: a skip, and two indexed queries.

After an outage (its last tick's window started before today - 2), a tick also reads the dates
since its last tick's window, at most 14 days back (``timing.window``): their campaigns are
planned and reported MISSED or OVERDUE instead of going unnoticed.

A date whose due set is new or changed is not requested when it is *settled*
(:mod:`cheetah_assets.sending.settled`): every due campaign there handed over (APPROVED) in this
account as the schedule says now, and nothing else of the date handed over. That is a date done
by runs the sensor did not request: with no cursor (its first tick on an instance, e.g.
``./run dev`` after ``./run demo``, which runs each day itself) every date with a due campaign is
new to it, and it used to request them all again. A settled date's digest is kept in the cursor
like any other, so it is asked about once per change. Such a run would have sent nothing twice
anyway (it reports the handed-over sends SENT); now it is not started.

A date whose requested run failed is requested again after 1, 5, 15 and 30 minutes
(:data:`RETRY_DELAYS`): the cycle is built to be re-executed
(nothing is sent twice), and a Cheetah outage of a few minutes no longer leaves the day's sends
undone. The cursor keeps each date's last run key until that run succeeded.

Run keys: the daemon never launches a run key the sensor used before, so a key made from the due
set alone would repeat when a change is reverted (11:00 -> 10:45 -> 11:00), and the revert would
never be prepared. Each request's key therefore ends with a sequence number kept in the cursor
(after an epoch drawn when there is no cursor, so a reset cursor cannot reuse old keys); an
unchanged due set is still requested only once, because the cursor's digests are compared first.
"""

import datetime as dt
import json

import dagster as dg

from ..cheetah.resource import CheetahMessagingResource
from ..clock import ClockResource
from ..customers.resource import CustomerDatabaseResource
from ..metrics.snapshots import prepare_database
from ..sending import late_suppression, preparation, seen
from ..sending.ledger import account_of
from ..sending.settled import settled_days
from ..sending.partitions import daily_partitions
from ..sending.timing import window
from .jobs import daily_campaign_cycle_job
from .run_keys import next_run_key, run_status


def _cursor(raw: str | None) -> dict:
    try:
        value = json.loads(raw or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _date(raw: object) -> dt.date | None:
    try:
        return dt.date.fromisoformat(raw) if isinstance(raw, str) else None
    except ValueError:
        return None


#: A date whose requested run failed (a Cheetah outage past the client's retries, a database
#: restart) is requested again this long after the failure was seen, once per delay; then the
#: sensor gives up on it until its due set changes (the run's failure alert has said why).
RETRY_DELAYS = (dt.timedelta(minutes=1), dt.timedelta(minutes=5), dt.timedelta(minutes=15), dt.timedelta(minutes=30))


def _retries(instance, tracked: dict, due: dict, first: dt.date, now: dt.datetime) -> tuple[dict, dict, list[str]]:
    """Of the dates whose last requested run is ``tracked`` (date -> {run_key, tries[, failed_at]}):
    those still waiting for their run or its retry (kept), those to request again now ({date:
    tries}), and those given up. A date whose run succeeded, or that left the window, is dropped."""
    keep, again, given_up = {}, {}, []
    for day, info in tracked.items():
        if not isinstance(info, dict) or not isinstance(info.get("run_key"), str) or day < first.isoformat():
            continue
        status = run_status(instance, info["run_key"])
        if status is None or status == dg.DagsterRunStatus.SUCCESS:
            continue
        if status not in (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED):
            keep[day] = info  # queued or running
            continue
        tries = info.get("tries") if isinstance(info.get("tries"), int) else 0
        if tries >= len(RETRY_DELAYS):
            given_up.append(day)
            continue
        seen_at = _instant(info.get("failed_at")) or now
        if now >= seen_at + RETRY_DELAYS[tries]:
            again[day] = tries + 1
        else:
            keep[day] = {**info, "failed_at": seen_at.isoformat()}
    return keep, again, given_up


def _instant(raw: object) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(raw) if isinstance(raw, str) else None
    except ValueError:
        return None


@dg.sensor(
    job=daily_campaign_cycle_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Prepares each campaign its lead time (CHEETAH_LEAD_TIME_MINUTES) before its send time, and "
        "at once when it is scheduled or changed later than that: requests daily_campaign_cycle on "
        "the campaign's send date whenever that date's set of due campaigns changes, or when a recipient "
        "of a send handed over there is suppressed before its send time. One indexed query on "
        "campaign_schedule and one on the send ledger per quiet tick."
    ),
)
def campaign_preparation_sensor(
    context: dg.SensorEvaluationContext, customer_db: CustomerDatabaseResource, clock: ClockResource,
    cheetah: CheetahMessagingResource,
):
    now, lead = clock.now(), clock.lead_time()
    previous = _cursor(context.cursor)
    usual_first, last = window(now, clock.account_time_zone, lead)
    # After an outage, start where the last tick did: the dates skipped meanwhile are planned too.
    first, _ = window(now, clock.account_time_zone, lead, last_first=_date(previous.get("from")))
    start = daily_partitions.start.date()
    first = max(first, start)
    engine = customer_db.get_engine()
    prepare_database(engine)  # the tables, once per process (not a write lock per tick)
    rows = preparation.load_window(engine, first, last) if first <= last else []
    everything = preparation.all_digest(rows)
    if everything != previous.get("all"):
        seen.ensure_table(engine)
        seen.record_seen(engine, [(r.campaign_id, r.send_date) for r in rows], now)
    due_rows = preparation.due_rows(rows, now, lead)
    due = preparation.due_digests(rows, now, lead)
    previous_due = previous.get("due") if isinstance(previous.get("due"), dict) else {}
    days = preparation.changed_days(previous_due, due, first)
    # A date done already by runs the sensor did not request (settled.py) is left alone; this applies to
    # due-set changes only, never to the late-suppression findings below.
    settled = settled_days(engine, rows, due_rows, days, account_of(cheetah.settings())) if days else set()
    days = [day for day in days if day not in settled]
    # Recipients suppressed since their send was handed over (late_suppression.py): the date's run
    # deletes and re-creates the send without them, or says they will be mailed. Requested once per new finding.
    previous_late = previous.get("late") if isinstance(previous.get("late"), dict) else {}
    try:
        late = {d: g for d, g in late_suppression.check(engine, now).digests().items()
                if first.isoformat() <= d <= last.isoformat()}  # a date outside the window is requested once in it
        check_failed = None
    except Exception as exc:  # noqa: BLE001 - the preparations go on; the tick fails below if it requests nothing
        late, check_failed = previous_late, exc
    suppressed = [d for d, digest in late.items() if previous_late.get(d) != digest]
    days = sorted(set(days) | set(suppressed))
    settled -= set(days)  # requested for a late suppression after all
    tracked = previous.get("runs") if isinstance(previous.get("runs"), dict) else {}
    runs, again, given_up = _retries(context.instance, tracked, due, first, now) if tracked else ({}, {}, [])
    cursor = {
        "all": everything, "due": due, "from": usual_first.isoformat(), "epoch": previous.get("epoch"),
        "seq": previous.get("seq"), "runs": runs, "late": late,
    }
    requests = []
    for day in sorted(set(days) | set(again)):
        tries = 0 if day in days else again[day]  # a change starts the retries afresh
        key = next_run_key(cursor, f"prepare-{day}-{due.get(day, preparation.EMPTIED)}" + (f"-retry{tries}" if tries else ""))
        runs[day] = {"run_key": key, "tries": tries}
        requests.append(dg.RunRequest(run_key=key, partition_key=day, tags={"cheetah/prepare": day}))
    context.update_cursor(json.dumps(cursor, sort_keys=True))
    if suppressed:
        context.log.info("requesting the runs of %s: recipients of sends handed over there were suppressed since",
                         ", ".join(suppressed))
    if again:
        context.log.info("requesting again the runs of %s: the last one failed", ", ".join(sorted(again)))
    if given_up:
        context.log.warning(
            "the runs of %s failed %d times again after their first failure; not requested again until their "
            "campaigns change (see the failed daily_campaign_cycle runs)", ", ".join(given_up), len(RETRY_DELAYS))
    if check_failed is not None:
        # Its first line only: the database's message (the statement's parameters, which may be addresses, follow).
        said = f"{type(check_failed).__name__}: {str(check_failed).splitlines()[0][:300] if str(check_failed) else ''}"
        context.log.error("could not look for recipients suppressed since their send was handed over (%s); each "
                          "requested run looks again before it sends", said)
        if not requests:
            raise RuntimeError(f"The check for recipients suppressed after hand-over failed: {said}") from None
    done = f"the campaigns due on {', '.join(sorted(settled))} are handed over as scheduled" if settled else ""
    if not requests:
        return dg.SkipReason(f"{done + '; no other' if done else 'no'} change in the campaigns due on {first}..{last} "
                             f"(lead time {lead or 'none'})")
    if done:
        context.log.info("not requesting %s: every campaign due there is handed over as scheduled", ", ".join(sorted(settled)))
    return requests


PREPARE_SENSORS = [campaign_preparation_sensor]
