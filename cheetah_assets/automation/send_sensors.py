"""Sensors of the send path."""


import hashlib
import json

import dagster as dg

from ..clock import ClockResource
from ..customers.resource import CustomerDatabaseResource
from ..metrics.snapshots import prepare_database
from ..sending.cancel import pending_cancellations, sent_before_cancelled
from .cancel_job import cancel_campaign_job
from .metric_sensors import read_cursor
from .run_keys import next_run_key, run_finished

#: How many cancel runs the sensor requests for one unchanged state of a campaign's sends before
#: it stops and leaves the campaign to an operator (each run already repeats its DELETEs).
MAX_REQUESTS = 5


@dg.sensor(
    job=cancel_campaign_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Keeps the two systems in agreement: a campaign cancelled on the Optimove side (status "
        "CANCELLED or CANCELED, in any case) whose send was already prepared in Cheetah Messaging is "
        "deleted there by the cancellation job, requested again (up to a few times) while a run of "
        "it has finished and the sends are still not cancelled. A send that went out before its "
        "campaign was cancelled is reported once (nothing to undo), never requested."
    ),
)
def cancellation_sensor(
    context: dg.SensorEvaluationContext, customer_db: CustomerDatabaseResource, clock: ClockResource
):
    """One request per campaign whose sends' state is new; the same state is requested again only
    once the run requested for it has finished and the sends are still pending (the run failed:
    a DELETE not applied, say), at most :data:`MAX_REQUESTS` times. Each request gets a run key
    of its own (``run_keys.next_run_key``): the daemon never launches a key twice.

    A send that went out before its campaign was cancelled (APPROVED, send time passed by the
    clock) is not pending: there is nothing to delete. It is reported once, in the tick's log and
    skip reason (the cursor keeps the keys reported, for sends of the last week only)."""
    prepare_database(customer_db.get_engine())  # the tables, once per process (not a write lock per tick)
    engine, now = customer_db.get_engine(), clock.now()
    previous = read_cursor(context.cursor)
    before = previous.get("campaigns") if isinstance(previous.get("campaigns"), dict) else {}
    went_out = sent_before_cancelled(engine, now)
    reported = set(previous["sent"]) if isinstance(previous.get("sent"), list) else set()
    news = [note for key, note in went_out.items() if key not in reported]
    for note in news:
        context.log.warning(note)
    cursor: dict = {"epoch": previous.get("epoch"), "seq": previous.get("seq"), "campaigns": {}, "sent": sorted(went_out)}
    requests, given_up = [], []
    for campaign_id, sends in pending_cancellations(engine, now).items():
        # The state changes when the campaign's sends change, so a send that raced the
        # cancellation gets its own run.
        state = hashlib.sha1(repr(sorted(sends)).encode()).hexdigest()[:12]
        last = before.get(campaign_id)
        last = last if isinstance(last, dict) and last.get("state") == state else None
        tries = last.get("requests") if last and isinstance(last.get("requests"), int) else 0
        if last and isinstance(last.get("run_key"), str) and not run_finished(context.instance, last["run_key"]):
            cursor["campaigns"][campaign_id] = last  # its run is still queued or running
            continue
        if tries >= MAX_REQUESTS:
            cursor["campaigns"][campaign_id] = last
            given_up.append(campaign_id)
            continue
        run_key = next_run_key(cursor, f"cancel-{campaign_id}-{state}")
        cursor["campaigns"][campaign_id] = {"state": state, "run_key": run_key, "requests": tries + 1}
        requests.append(
            dg.RunRequest(
                run_key=run_key,
                run_config={"ops": {"cancel_campaign_op": {"config": {"campaign_id": campaign_id}}}},
                tags={"cheetah/campaign_id": campaign_id},
            )
        )
    context.update_cursor(json.dumps(cursor, sort_keys=True))
    if requests:
        return requests
    told = "; ".join(news)
    if given_up:
        return dg.SkipReason(
            f"the cancellation of {', '.join(given_up)} failed {MAX_REQUESTS} times; see the failed "
            "cancel_campaign_job runs, fix what they name (or pause or delete the campaign in Cheetah "
            "Messaging), then launch cancel_campaign_job for it by hand" + (f". Also: {told}" if told else "")
        )
    return dg.SkipReason(told or "no cancelled campaign has a send left in Cheetah Messaging")


SEND_SENSORS = [cancellation_sensor]
