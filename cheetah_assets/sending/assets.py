"""The send path as software-defined assets, one daily partition per send date.

    cheetah_template_catalog  ->  scheduled_campaigns  ->  recipient_lists  ->  campaign_sends
    (+ blocking set-up checks)     (validated plan)        (frozen, in SQL)     (exactly once)

Each asset is a thin wrapper: the work is done by plain functions in this package (catalog,
plan, customers.queries, protocol, cancel) that are tested without Dagster. Every asset stores
its result in the customer database (no pickles), so the day's state is queryable in SQL and
survives any executor or instance.
"""


import contextlib
import datetime as dt
from typing import Iterator

import dagster as dg

from ..cheetah.errors import CheetahError
from ..cheetah.resource import CheetahMessagingResource
from ..clock import ClockResource
from ..customers import queries
from ..customers.resource import CustomerDatabaseResource
from ..runlog import RunLog, every
from ..tables import table
from . import ledger, plan
from .cancel import cancel_leftover, went_out, went_out_note
from .changes import reconcile_changes, refreezer
from .suppression_changes import reconcile_suppressions
from .catalog import load_catalog, refresh_catalog
from .importing import left_out_note, left_out_of
from .late import revive
from .lists import freeze_day, unfrozen
from .partitions import daily_partitions
from .plan_checks import campaigns_valid, no_missed_sends
from .metadata_columns import (
    FINDING_COLUMNS,
    LIST_COLUMNS,
    MISSED_COLUMNS,
    PLAN_COLUMNS,
    PROBLEM_COLUMNS,
    SEND_COLUMNS,
    TEMPLATE_COLUMNS,
)
from .protocol import Sender
from .parallel import DEFAULT_CONCURRENCY, MAX_CONCURRENCY, send_all
from .runs import owner_alive, worker_owner
from .setup import check_account, check_customer_database, failures


GROUP = "send"
#: Seconds between two progress lines of a long freeze (a short one writes none).
PROGRESS_SECONDS = 10.0
OWNERS = ["team:marketing-ops"]


def send_asset(**spec):
    """``dg.asset`` for the send path: partitioned by day, in the send group, owned by marketing ops."""
    return dg.asset(partitions_def=daily_partitions, group_name=GROUP, owners=OWNERS, **spec)


def _day(context) -> dt.date:
    return dt.date.fromisoformat(context.partition_key)


def _fail(exc: Exception) -> dg.Failure:
    """A step failure that reads as one sentence in the UI (no secrets: messages never hold them)."""
    return dg.Failure(description=str(exc), allow_retries=False)


# ------------------------------------------------------------------------------------------------
@send_asset(
    kinds={"cheetah", "sql"},
    description=(
        "The email templates saved in the account's Optimove folder in Cheetah Messaging, fetched "
        "page by page once a day and kept per day (table cheetah_template_catalog)."
    ),
)
def cheetah_template_catalog(
    context: dg.AssetExecutionContext,
    cheetah: CheetahMessagingResource,
    customer_db: CustomerDatabaseResource,
    clock: ClockResource,
) -> dg.MaterializeResult:
    customer_db.ensure_tables()
    try:
        with cheetah.get_client(logger=RunLog(context.log)) as client:
            result = refresh_catalog(client, customer_db.get_engine(), _day(context), now=clock.now(), logger=context.log)
    except CheetahError as exc:
        raise _fail(exc) from None
    context.log.info("catalog of %s: %d templates in folder %r", result.catalog_date, result.templates, result.folder_name)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": result.templates,
            "folder": result.folder_name,
            "templates": table(TEMPLATE_COLUMNS, result.preview),
            "dagster/column_schema": dg.TableSchema(
                columns=[
                    dg.TableColumn("catalog_date", "date"),
                    dg.TableColumn("obj_id", "string", description="Cheetah template objId"),
                    dg.TableColumn("display_name", "string"),
                    dg.TableColumn("subject", "string"),
                    dg.TableColumn("fields", "json", description="Data Map fields the template personalises with"),
                ]
            ),
        }
    )


@dg.asset_check(
    asset=cheetah_template_catalog,
    blocking=True,
    partitions_def=daily_partitions,
    description=(
        "Set-up steps 1-7: settings present and well-formed, credentials accepted and this server "
        "whitelisted, Folder ID and PROP_MAP_ID resolve, and the Data Map's identifier column exists "
        "in the customer database. Blocks the day's sends when it fails."
    ),
)
def account_setup(
    cheetah: CheetahMessagingResource, customer_db: CustomerDatabaseResource
) -> dg.AssetCheckResult:
    findings, data_map = check_account(cheetah)
    if data_map is not None:
        findings = findings + [
            f for f in check_customer_database(customer_db.get_engine(), data_map) if f.check == "identifier_column"
        ]
    bad = failures(findings, blocking=True)
    return dg.AssetCheckResult(
        passed=not bad,
        severity=dg.AssetCheckSeverity.ERROR,
        description=bad[0].message if bad else "The account and the customer database are set up.",
        metadata={"findings": table(FINDING_COLUMNS, [{"check": f.check, "ok": f.ok, "message": f.message} for f in findings])},
    )


@dg.asset_check(
    asset=cheetah_template_catalog,
    partitions_def=daily_partitions,
    description=(
        "Every Data Map field a template personalises with is in the Data Map and in the customer "
        "database (set-up step 3). A campaign using a failing template is stopped alone."
    ),
)
def template_fields_mapped(
    context: dg.AssetCheckExecutionContext, cheetah: CheetahMessagingResource, customer_db: CustomerDatabaseResource
) -> dg.AssetCheckResult:
    engine = customer_db.get_engine()
    try:
        with cheetah.get_client() as client:
            data_map = client.get_data_map()
    except CheetahError as exc:  # e.g. an unknown PROP_MAP_ID: account_setup says it too, in one sentence
        return dg.AssetCheckResult(
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            description=f"No template's fields could be checked: {exc}",
            metadata={"problems": table(PROBLEM_COLUMNS, [])},
        )
    catalog = load_catalog(engine, dt.date.fromisoformat(context.partition_key)) or {}
    bad = [f for f in check_customer_database(engine, data_map, catalog) if not f.ok and not f.blocking]
    return dg.AssetCheckResult(
        passed=not bad,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"{len(bad)} template field problems" if bad else f"all {len(catalog)} templates' fields are mapped",
        metadata={
            "problems": table(PROBLEM_COLUMNS, [{"template": f.check.removeprefix("template_"), "problem": f.message} for f in bad])
        },
    )


# ------------------------------------------------------------------------------------------------
class ScheduleConfig(dg.Config):
    send_late: bool = False
    """Send campaigns whose send time has passed (15 minutes from now) instead of reporting them
    as missed. Meant for a deliberate backfill, never for the daily schedule."""


@send_asset(
    kinds={"sql"},
    deps=[cheetah_template_catalog],
    description=(
        "The day's campaigns on the Cheetah Messaging channel, each validated against the day's "
        "template catalog, the Data Map and the customer database: READY (to be prepared now), "
        "WAITING (prepared from its send time minus the lead time), SENT (already handed to Cheetah), "
        "MISSED (first seen after its send time), OVERDUE (known in time, not handed over before it), "
        "INVALID (with the reason, e.g. a status other than SCHEDULED or CANCELLED, or handed over in another "
        "Cheetah account, where it may go out) or CANCELLED. One bad campaign never stops the others (table "
        "cheetah_campaign_plan)."
    ),
)
def scheduled_campaigns(
    context: dg.AssetExecutionContext,
    config: ScheduleConfig,
    cheetah: CheetahMessagingResource,
    customer_db: CustomerDatabaseResource,
    clock: ClockResource,
) -> dg.MaterializeResult:
    day = _day(context)
    engine = customer_db.get_engine()
    catalog = load_catalog(engine, day)
    if catalog is None:
        raise dg.Failure(f"There is no template catalog for {day}: materialize cheetah_template_catalog for it first.")
    try:
        with cheetah.get_client(logger=RunLog(context.log)) as client:
            data_map = client.get_data_map()
            account = ledger.account_of(client.settings)
    except CheetahError as exc:
        raise _fail(exc) from None
    try:
        columns = set(queries.reflect_customers(engine).columns.keys())
    except queries.CustomerSchemaError as exc:  # e.g. no customers table: one sentence, no traceback
        raise _fail(exc) from None
    rows = plan.plan_day(
        engine, day, catalog=catalog, data_map=data_map, customer_columns=columns, now=clock.now(),
        send_late=config.send_late, account=account, lead_time=clock.lead_time(),
    )
    counts = {s: sum(r.status == s for r in rows) for s in plan.STATUSES}
    for r in rows:
        if r.status in (plan.INVALID, plan.MISSED, plan.OVERDUE):
            context.log.warning("campaign %s template %s is %s: %s", r.campaign_id, r.template_id, r.status, r.reason)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(rows),
            **{f"{k.lower()}": v for k, v in counts.items()},
            "plan": table(
                PLAN_COLUMNS,
                [
                    {
                        "campaign": r.campaign_id,
                        "name": r.campaign_name,
                        "template": r.template_id,
                        "send at": r.send_at,
                        "status": r.status,
                        "reason": r.reason or "",
                    }
                    for r in rows
                ],
            ),
            "not sent in time": table(
                MISSED_COLUMNS,
                [
                    {"campaign": r.campaign_id, "name": r.campaign_name, "template": r.template_id,
                     "send at": r.send_at, "status": r.status, "reason": r.reason or ""}
                    for r in rows if r.status in (plan.MISSED, plan.OVERDUE)
                ],
            ),
        }
    )


# ------------------------------------------------------------------------------------------------
@send_asset(
    kinds={"sql"},
    deps=[scheduled_campaigns],
    description=(
        "One recipient list per ready campaign: the target group's customers with their identifier "
        "and Data Map fields, selected in SQL by the database and streamed in chunks, leaving out "
        "suppressed customers and missing identifiers, one row per identifier, split "
        "deterministically between the campaign's templates. Frozen once its send starts: the send "
        "uses exactly this list (tables cheetah_recipient_list, cheetah_recipient)."
    ),
)
def recipient_lists(
    context: dg.AssetExecutionContext,
    cheetah: CheetahMessagingResource,
    customer_db: CustomerDatabaseResource,
) -> dg.MaterializeResult:
    day = _day(context)
    engine = customer_db.get_engine()
    try:
        with cheetah.get_client(logger=RunLog(context.log)) as client:
            data_map = client.get_data_map()
    except CheetahError as exc:
        raise _fail(exc) from None
    ident = data_map.identifier
    try:
        columns = set(queries.reflect_customers(engine).columns.keys())
    except queries.CustomerSchemaError as exc:  # e.g. no customers table: one sentence, no traceback
        raise _fail(exc) from None
    if ident.map_to not in columns:
        raise dg.Failure(f"The customers table has no column {ident.map_to!r} for the identifier field {ident.name}.")
    fields = {f.name: f.map_to for f in data_map.fields if not f.is_identifier and f.map_to in columns}
    lists = freeze_day(
        engine, day, identifier_column=ident.map_to, fields=fields, chunk_size=customer_db.chunk_size, log=context.log,
        progress_for=lambda cid: every(PROGRESS_SECONDS, lambda k: context.log.info(
            "campaign %s: %d recipients written so far", cid, k)),
    )
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": lists.total,
            "campaigns": len(lists.records),
            "failed": len(lists.failed),
            "lists": table(LIST_COLUMNS, lists.records),
            "dagster/column_schema": dg.TableSchema(
                columns=[
                    dg.TableColumn("list_key", "string", description="campaign_id/send_date"),
                    dg.TableColumn("identifier", "string", description=f"Data Map {ident.name} ({ident.map_to})"),
                    dg.TableColumn("template_id", "string"),
                    dg.TableColumn("attrs", "json", description="Data Map fields: " + ", ".join(fields)),
                ]
            ),
        }
    )


# ------------------------------------------------------------------------------------------------
class SendConfig(dg.Config):
    concurrency: int = DEFAULT_CONCURRENCY
    """How many campaigns are sent at a time (the API concurrency: each with its own API session),
    from 1 to 32; 1 sends them one after the other. A campaign's templates always go one after
    the other."""
    release_sends: list[str] = []
    """Send keys (``campaign/template/YYYY-MM-DD``) refused as "handed over in another Cheetah
    Messaging account" whose campaign you have deleted (or cancelled) in that account: each is
    started afresh and sent in this one, and the release is logged. Nothing else is released."""


@send_asset(
    kinds={"cheetah", "sql"},
    deps=[recipient_lists],
    description=(
        "Each ready campaign handed to Cheetah Messaging exactly once: recipients imported (every "
        "row accepted or rejected with its reason), the campaign created from the template with its "
        "execution time, launched and approved. The send ledger (cheetah_send_ledger) records each "
        "step; a retry, re-execution, backfill or concurrent run resumes or finds the work done and "
        "never sends twice. Campaigns cancelled on our side are deleted in Cheetah too. One handed over in "
        "another Cheetah account is refused, saying why, until released by key (config release_sends)."
    ),
)
def campaign_sends(
    context: dg.AssetExecutionContext,
    config: SendConfig,
    cheetah: CheetahMessagingResource,
    customer_db: CustomerDatabaseResource,
    clock: ClockResource,
) -> dg.MaterializeResult:
    if not 1 <= config.concurrency <= MAX_CONCURRENCY:
        raise dg.Failure(f"concurrency must be from 1 to {MAX_CONCURRENCY}, not {config.concurrency}; nothing was sent.")
    day = _day(context)
    engine = customer_db.get_engine()
    day_plan = plan.load_plan(engine, day)
    problems: list[str] = []
    released = frozenset(k.strip() for k in config.release_sends if k.strip())  # held sends the operator let go
    for key in sorted(released - {r.send_key for r in day_plan if plan.held(r)}):
        context.log.warning("release_sends names %s, which is not a send of %s held by another account: "
                            "nothing was released for it", key, day)

    def new_sender(client, owner: str, logger) -> Sender:
        return Sender(
            client=client, engine=engine, owner=owner, now=clock.now, released=released,
            owner_alive=owner_alive(context.instance), logger=logger,
            on_step=lambda key, step: logger.debug("%s: %s", key, step),
            chunk_size=customer_db.chunk_size,
            step_backoff_seconds=max(0.01, 2 * cheetah.backoff_factor),
        )

    @contextlib.contextmanager
    def worker_sender(n: int, logger) -> Iterator[Sender]:
        with cheetah.get_client(logger=logger) as worker_client:
            yield new_sender(worker_client, worker_owner(context.run.run_id, n), logger)

    log = RunLog(context.log)  # the routine DEBUG lines (each call, each step) stay out of the event log
    with cheetah.get_client(logger=log) as client:
        sender = new_sender(client, context.run.run_id, log)
        # Handed-over sends whose schedule changed: deleted and re-created, or refused (changes.py); or
        # whose list holds someone suppressed since: re-created without them, or said (suppression_changes.py).
        reconciled = reconcile_changes(sender, day, refreeze=refreezer(sender, customer_db.chunk_size))
        reconcile_suppressions(sender, day, reconciled)
        problems.extend(reconciled.problems)
        for note in reconciled.notes:
            context.log.warning(note)
        # blocked: its list is the old one; held (by another account): refused unless released
        todo = [r for r in day_plan
                if (r.status == plan.READY or r.send_key in reconciled.recreated or plan.held(r))
                and r.campaign_id not in reconciled.blocked]
        for note in revive(sender, todo):  # MISSED or CANCELLED before, READY again: a new revision
            context.log.info(note)
        sent = send_all(todo, sender=sender, worker_sender=worker_sender, concurrency=config.concurrency,
                        logger=log)
        outcomes = sent.outcomes
        problems.extend(sent.problems)
        recorded = sender.ledger.for_day(day)
        outcomes.extend(plan.already_sent(day_plan, recorded, {r.send_key for r in todo}))
        sent_first = 0  # cancelled on our side after they went out: reported, nothing to undo
        for row in recorded:
            cancelled = any(p.send_key == row.send_key and p.status == plan.CANCELLED for p in day_plan)
            if row.state in ledger.TOUCHED_CHEETAH and cancelled and went_out(row, clock.now()):
                context.log.warning("%s: campaign %s %s", row.send_key, row.cheetah_name, went_out_note(row.send_at))
                sent_first += 1
            elif row.state in ledger.TOUCHED_CHEETAH and cancelled:
                problem = cancel_leftover(sender, row)
                if problem is None:
                    context.log.info("%s: cancelled on our side, deleted in Cheetah Messaging", row.send_key)
                else:
                    problems.append(problem)
    by_state: dict[str, int] = {}
    for o in outcomes:
        by_state[o["state"]] = by_state.get(o["state"], 0) + 1
    metadata = {
        "dagster/row_count": len(outcomes),
        "approved": by_state.get(ledger.APPROVED, 0),
        "missed": by_state.get(ledger.MISSED, 0),
        "empty": by_state.get(ledger.EMPTY, 0),
        "cancelled": by_state.get(ledger.CANCELLED, 0),
        "sent_before_cancelled": sent_first,
        "failed": len(problems),
        "changed_after_handover": "\n".join(reconciled.notes + reconciled.problems) or "none",
        "suppressed_after_handover_still_mailed": reconciled.still_mailed,
        "recipients_accepted": sum(o["accepted"] or 0 for o in outcomes),
        "recipients_rejected": sum(o["rejected"] or 0 for o in outcomes),
        "recipients_left_out_suppressed": sum(left_out_of(o) for o in outcomes),
        "sends": table(SEND_COLUMNS, [_with_left_out(o) for o in outcomes]),
    }
    not_frozen = unfrozen(day_plan)  # their lists failed in recipient_lists: not sent, and a retry cannot help
    if problems or not_frozen:
        said = []
        if problems:
            fix = f" {len(sent.permanent)} of them need a fix first (re-executing alone will not help): each says what."
            said.append(f"{len(problems)} of {len(todo)} sends did not complete; nothing was sent twice."
                        + (" Re-execute to resume them." if len(problems) > len(sent.permanent) else "")
                        + (fix if sent.permanent else ""))
        if not_frozen:
            said.append(f"{len(not_frozen)} campaign(s) not sent: their recipient lists could not be frozen.")
        raise dg.Failure(
            description=" ".join(said) + " " + " | ".join((not_frozen + problems)[:5]),
            metadata={**metadata, "not_frozen": len(not_frozen)},
            allow_retries=bool(problems),
        )
    return dg.MaterializeResult(metadata=metadata)


def _with_left_out(o: dict) -> dict:
    """A send's record with its note saying who the import left out (suppressed since the freeze)."""
    n = left_out_of(o)
    if not n or left_out_note(n) in (o.get("note") or ""):
        return o
    return {**o, "note": "; ".join(filter(None, [left_out_note(n), o.get("note")]))}


SEND_ASSETS = [cheetah_template_catalog, scheduled_campaigns, recipient_lists, campaign_sends]
SEND_CHECKS = [account_setup, template_fields_mapped, campaigns_valid, no_missed_sends]
