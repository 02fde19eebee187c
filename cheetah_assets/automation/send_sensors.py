"""Sensors of the send path."""


import hashlib

import dagster as dg

from ..customers.resource import CustomerDatabaseResource
from ..sending.cancel import pending_cancellations
from .cancel_job import cancel_campaign_job


@dg.sensor(
    job=cancel_campaign_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Keeps the two systems in agreement: a campaign cancelled on the Optimove side (status "
        "CANCELLED or CANCELED, in any case) whose send was already prepared in Cheetah Messaging is "
        "deleted there by the cancellation job."
    ),
)
def cancellation_sensor(context: dg.SensorEvaluationContext, customer_db: CustomerDatabaseResource):
    customer_db.ensure_tables()
    requests = []
    for campaign_id, sends in pending_cancellations(customer_db.get_engine()).items():
        # The run key changes when the campaign's sends change, so a send that raced the
        # cancellation gets its own run; the same state is never requested twice.
        state = hashlib.sha1(repr(sorted(sends)).encode()).hexdigest()[:12]
        requests.append(
            dg.RunRequest(
                run_key=f"cancel-{campaign_id}-{state}",
                run_config={"ops": {"cancel_campaign_op": {"config": {"campaign_id": campaign_id}}}},
                tags={"cheetah/campaign_id": campaign_id},
            )
        )
    if not requests:
        return dg.SkipReason("no cancelled campaign has a send left in Cheetah Messaging")
    return requests


SEND_SENSORS = [cancellation_sensor]
