"""The day's recipient lists: one freeze per READY campaign of the plan (``recipient_lists``).

A list that cannot be frozen (the database fails on its target group: an identifier stored as
bytes that are not text, say) stops its own campaign only. Its plan rows become INVALID with the
reason, so ``campaign_sends`` does not send it (nor a list of the day frozen before the data
changed), and reports it as a problem that fails the run; the other lists are frozen and sent.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Callable

import sqlalchemy as sa

from ..customers import queries
from ..customers.schema import campaign_plan, target_group_members
from . import plan

#: The start of the reason of a plan row whose list could not be frozen.
FREEZE_FAILED = "its recipient list could not be frozen"


@dataclass
class DayLists:
    records: list[dict] = field(default_factory=list)  # one per list, for the asset's metadata
    total: int = 0
    failed: list[str] = field(default_factory=list)  # one message per campaign whose list failed


def freeze_day(
    engine: sa.Engine,
    day: dt.date,
    *,
    identifier_column: str,
    fields: dict[str, str],
    chunk_size: int,
    log,
    progress_for: Callable[[str], Callable[[int], None] | None] = lambda campaign_id: None,
) -> DayLists:
    """Freeze (or find frozen) the list of each READY campaign of ``day``'s plan; see the module."""
    campaigns: dict[str, list[plan.PlanRow]] = {}
    for r in plan.load_plan(engine, day):
        if r.status == plan.READY:
            campaigns.setdefault(r.campaign_id, []).append(r)
    out = DayLists()
    for n, (campaign_id, rows) in enumerate(sorted(campaigns.items()), start=1):
        try:
            result = queries.freeze_recipient_list(
                engine, campaign_id=campaign_id, send_date=day, target_group=rows[0].target_group,
                identifier_column=identifier_column, fields=fields,
                template_ids=[r.template_id for r in sorted(rows, key=lambda r: r.template_index)],
                chunk_size=chunk_size, progress=progress_for(campaign_id),
            )
        except Exception as exc:  # noqa: BLE001 - one campaign's list never stops the others
            reason = _reason(engine, exc, rows[0].target_group, identifier_column)
            mark_unfrozen(engine, day, campaign_id, reason)
            out.failed.append(f"campaign {campaign_id}: {reason}")
            log.error("recipient list %d of %d: campaign %s: %s", n, len(campaigns), campaign_id, reason)
            out.records.append({"campaign": campaign_id, "name": rows[0].campaign_name, "frozen": "FAILED: " + reason})
            continue
        log.info(
            "recipient list %d of %d: campaign %s: %d recipients%s", n, len(campaigns), campaign_id,
            result.row_count, " (frozen earlier: its send has started)" if result.reused else "",
        )
        out.total += result.row_count
        out.records.append(
            {
                "campaign": campaign_id,
                "name": rows[0].campaign_name,
                "recipients": result.row_count,
                "per template": ", ".join(f"{t}: {c}" for t, c in result.per_template.items()),
                "in target group": result.in_target_group,
                "no identifier": result.excluded_missing_identifier,
                "suppressed": result.excluded_suppressed,
                "duplicates": result.collapsed_duplicates,
                "frozen": "kept (send started)" if result.reused else "new",
            }
        )
    return out


def mark_unfrozen(engine: sa.Engine, day: dt.date, campaign_id: str, reason: str) -> None:
    """The campaign's READY plan rows of ``day`` become INVALID with ``reason``."""
    with engine.begin() as conn:
        conn.execute(
            campaign_plan.update()
            .where(campaign_plan.c.send_date == day, campaign_plan.c.campaign_id == campaign_id,
                   campaign_plan.c.status == plan.READY)
            .values(status=plan.INVALID, reason=reason)
        )


def unfrozen(day_plan: list[plan.PlanRow]) -> list[str]:
    """One problem per campaign of the plan whose list could not be frozen (``campaign_sends``)."""
    seen: dict[str, str] = {}
    for r in day_plan:
        if r.status == plan.INVALID and (r.reason or "").startswith(FREEZE_FAILED):
            seen.setdefault(r.campaign_id, f"campaign {r.campaign_id}: {r.reason}")
    return list(seen.values())


def _reason(engine: sa.Engine, exc: Exception, target_group: str, identifier_column: str) -> str:
    """Why the list failed, in one line, and what to fix (a re-execution of the sends cannot)."""
    cause = getattr(exc, "orig", None) or exc  # a database error's own message, not its SQL
    detail = f"{type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''}"
    bad = _undecodable(engine, target_group, identifier_column)
    if bad:
        detail += (
            f"; the {identifier_column} of customer_pk {', '.join(map(str, bad))} in target group {target_group!r} "
            "is not valid UTF-8 text"
        )
    return (
        f"{FREEZE_FAILED} ({detail}); nothing was sent for it. Fix the cause in the customer database, then "
        "materialize the day again from scheduled_campaigns (re-executing campaign_sends alone does not retry it)"
    )


def _undecodable(engine: sa.Engine, target_group: str, identifier_column: str, limit: int = 3) -> list[int]:
    """SQLite: up to ``limit`` members of the group whose identifier is TEXT holding bytes that are
    not UTF-8 (SQLite stores what it is given; its Python functions cannot read them). [] elsewhere,
    or if the question itself fails."""
    if engine.dialect.name != "sqlite":
        return []
    m = target_group_members
    try:
        c = queries.reflect_customers(engine)
        col = c.c[identifier_column]
        stmt = (
            sa.select(c.c.customer_pk, sa.cast(col, sa.LargeBinary))
            .select_from(c.join(m, sa.and_(m.c.customer_pk == c.c.customer_pk, m.c.target_group == target_group)))
            .where(sa.func.typeof(col) == "text")
        )
        bad: list[int] = []
        with engine.connect() as conn:
            for pk, raw in conn.execution_options(yield_per=10_000).execute(stmt):
                try:
                    bytes(raw).decode("utf-8")
                except UnicodeDecodeError:
                    bad.append(int(pk))
                    if len(bad) >= limit:
                        break
        return bad
    except Exception:  # noqa: BLE001 - a diagnosis only: the failure is reported without it
        return []
