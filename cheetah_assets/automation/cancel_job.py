"""The cancellation job: cancel a campaign on our side and delete it in Cheetah Messaging."""


import dagster as dg

from ..cheetah.errors import CheetahError
from ..cheetah.resource import CheetahMessagingResource
from ..clock import ClockResource
from ..customers.resource import CustomerDatabaseResource
from ..runlog import RunLog
from ..sending.cancel import CancelError, cancel_campaign
from ..sending.metadata_columns import CANCEL_COLUMNS
from ..sending.runs import owner_alive
from ..tables import table


class CancelConfig(dg.Config):
    campaign_id: str
    """The Optimove campaign id (campaign_schedule.campaign_id) to cancel."""


@dg.op(
    description=(
        "Marks the campaign CANCELLED in the schedule and deletes each of its prepared sends in Cheetah "
        "Messaging (found by ledger id or by name). A send that already went out (approved, its send time "
        "passed) is reported, not failed: there is nothing to undo."
    ),
    tags={"kind": "cheetah"},
)
def cancel_campaign_op(
    context: dg.OpExecutionContext,
    config: CancelConfig,
    cheetah: CheetahMessagingResource,
    customer_db: CustomerDatabaseResource,
    clock: ClockResource,
) -> dg.Output[int]:
    customer_db.ensure_tables()
    try:
        with cheetah.get_client(logger=RunLog(context.log)) as client:
            outcomes = cancel_campaign(
                client, customer_db.get_engine(), config.campaign_id, owner=context.run.run_id, now=clock.now,
                owner_alive=owner_alive(context.instance),
            )
    except (CancelError, CheetahError) as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    for o in outcomes:
        # A send that went out before it was cancelled: said once, as a warning; nothing failed.
        log = context.log.warning if o.action.startswith("went out") else context.log.info
        log("%s (%s): %s", o.send_key, o.cheetah_name, o.action)
    deleted = sum(o.action == "deleted" for o in outcomes)
    return dg.Output(
        deleted,
        metadata={
            "campaign_id": config.campaign_id,
            "deleted": deleted,
            "sends": table(CANCEL_COLUMNS, [o.__dict__ for o in outcomes]),
        },
    )


@dg.job(
    description="Cancel one campaign on the Optimove side and delete it in Cheetah Messaging.",
    # Never re-launched by the instance's run retries (deploy/dagster.yaml): it races the send path.
    tags={"team": "marketing-ops", "dagster/max_retries": "0"},
)
def cancel_campaign_job():
    cancel_campaign_op()
