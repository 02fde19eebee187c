"""The day's plan: each scheduled campaign validated against the catalog, Data Map and database.

A problem with one campaign (an unknown template, a field the customer database lacks, a send
time without a time zone or inside a daylight-saving gap, a status outside the vocabulary of
:mod:`.statuses`, a Cheetah name another send already holds, or any unexpected error while
planning it) marks that campaign INVALID with a reason that names the problem; the rest of the
day goes on.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import asdict, dataclass

import sqlalchemy as sa

from ..cheetah.contract import DataMap
from ..customers import queries
from ..customers.schema import campaign_plan
from ..timeutil import utc, zone
from . import ledger, seen, statuses
from .catalog import CatalogEntry
from .elsewhere import HELD, plan_reason
from .fingerprint import handover_change
from .timing import fmt_utc, is_due

READY, SENT, MISSED, INVALID, CANCELLED = "READY", "SENT", "MISSED", "INVALID", "CANCELLED"
#: WAITING: valid, prepared from send time - lead time. OVERDUE: known in time, its send time
#: passed before it was handed over (nothing sent). MISSED: first seen after its send time.
WAITING, OVERDUE = "WAITING", "OVERDUE"
STATUSES = (READY, WAITING, SENT, MISSED, OVERDUE, INVALID, CANCELLED)
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)(?::([0-5]\d))?$")
#: How far ahead a late send (``send_late``) is scheduled, to leave time to prepare it.
LATE_SEND_MARGIN = dt.timedelta(minutes=15)
#: A MISSED or CANCELLED send is prepared again for a new send time at least this far ahead.
AGAIN_LEAD = dt.timedelta(minutes=5)
#: How the reason of a plan row made READY again by :func:`_again` starts (and only such a row's).
AGAIN = ("missed at ", "cancelled at ")


class PlanProblem(ValueError):
    pass


@dataclass(frozen=True)
class PlanRow:
    send_date: dt.date
    campaign_id: str
    template_id: str
    template_index: int
    template_count: int
    campaign_name: str
    target_group: str
    send_at: dt.datetime | None
    status: str
    reason: str | None

    @property
    def send_key(self) -> str:
        return ledger.send_key(self.campaign_id, self.template_id, self.send_date)

    @property
    def list_key(self) -> str:
        return queries.list_key(self.campaign_id, self.send_date)


def resolve_send_at(send_date: dt.date, send_time: str, time_zone: str | None) -> dt.datetime:
    """The UTC instant of a local send time; :class:`PlanProblem` naming what is wrong."""
    if not time_zone or not time_zone.strip():
        raise PlanProblem(f"send time {send_time} has no time zone; set campaign_schedule.time_zone (e.g. Europe/London)")
    try:
        tz = zone(time_zone.strip())
    except ValueError:
        raise PlanProblem(f"time zone {time_zone!r} is not an IANA time zone name") from None
    m = _HHMM.match((send_time or "").strip())
    if not m:
        raise PlanProblem(f"send time {send_time!r} is not HH:MM")
    local = dt.datetime.combine(send_date, dt.time(int(m[1]), int(m[2]), int(m[3] or 0)), tzinfo=tz)
    back = local.astimezone(dt.timezone.utc).astimezone(tz)
    if back.replace(tzinfo=None) != local.replace(tzinfo=None):
        raise PlanProblem(
            f"send time {send_time} on {send_date} does not exist in {time_zone} (daylight-saving gap); pick another time"
        )
    # An ambiguous time (the hour repeated when clocks go back) means its first occurrence.
    return local.astimezone(dt.timezone.utc)


def plan_day(
    engine: sa.Engine,
    send_date: dt.date,
    *,
    catalog: dict[str, CatalogEntry],
    data_map: DataMap,
    customer_columns: set[str],
    now: dt.datetime,
    send_late: bool = False,
    account: ledger.Account | None = None,
    lead_time: dt.timedelta | None = None,
) -> list[PlanRow]:
    """Validate the day's schedule and store the plan (replacing the day's previous plan, unless
    another run stored one made later: then that one is returned, as every later step uses it).

    With a ``lead_time``, a valid campaign is READY (to be prepared) only from its send time minus
    the lead time, WAITING before. Without one, every valid campaign is READY at once.

    One bad campaign never stops the others: whatever goes wrong while planning it (even an
    unexpected error) makes that campaign INVALID with the reason, and the rest is planned.
    """
    # A send recorded against another account (``account``: the client's) is not done here.
    recorded = ledger.Ledger(engine, lambda: now).for_day(send_date)
    sent = {r.send_key: r for r in recorded if not ledger.other_account(r, account)}
    elsewhere = {r.send_key: r for r in recorded if r.send_key not in sent}
    names = {r.cheetah_name: r.send_key for r in sent.values()}
    rows: list[PlanRow] = []
    schedule = queries.load_schedule(engine, send_date)
    seen.ensure_table(engine)
    seen.record_seen(engine, [(c.campaign_id, send_date) for c in schedule], now)
    first_seen = seen.first_seen(engine, send_date)
    for c in schedule:
        try:
            rows.extend(
                _plan_campaign(
                    c, send_date, sent=sent, elsewhere=elsewhere, names=names, catalog=catalog, data_map=data_map,
                    customer_columns=customer_columns, now=now, send_late=send_late,
                    seen_at=first_seen.get(c.campaign_id, now), lead_time=lead_time,
                )
            )
        except Exception as exc:  # noqa: BLE001 - one bad campaign never stops the others
            reason = (
                f"could not be planned ({type(exc).__name__}: {exc}); nothing was sent for it, "
                "check its campaign_schedule row"
            )
            rows.extend(_invalid_rows(c, send_date, reason))
    if not _store(engine, send_date, rows, now):
        return load_plan(engine, send_date)  # another run's, planned later: the one every step uses
    return rows


def _campaign_problem(
    c: queries.ScheduledCampaign, catalog: dict[str, CatalogEntry], data_map: DataMap, customer_columns: set[str]
) -> tuple[dt.datetime | None, str | None]:
    """The campaign's UTC send time, and the first thing that keeps it from being sent (or None)."""
    by_name = data_map.by_name()
    problem: str | None = None
    send_at: dt.datetime | None = None
    try:
        send_at = resolve_send_at(c.send_date, c.send_time, c.time_zone)
    except PlanProblem as exc:
        problem = str(exc)
    if not c.template_ids:
        return send_at, problem or "the campaign names no template"
    for t in c.template_ids:
        if problem:
            break
        entry = catalog.get(t)
        if entry is None:
            return send_at, f"template {t} is not in the Optimove folder's catalog of {c.send_date}"
        for f in entry.fields:
            if f not in by_name:
                return send_at, f"template {t} uses field {f}, which is not in the Data Map (PROP_MAP_ID {data_map.id})"
            if by_name[f].map_to not in customer_columns:
                return send_at, (
                    f"template {t} uses field {f}, mapped to column {by_name[f].map_to!r}, "
                    "which the customer database does not have"
                )
    return send_at, problem


def _plan_campaign(
    c: queries.ScheduledCampaign,
    send_date: dt.date,
    *,
    sent: dict[str, ledger.LedgerRow],
    elsewhere: dict[str, ledger.LedgerRow],
    names: dict[str, str],
    catalog: dict[str, CatalogEntry],
    data_map: DataMap,
    customer_columns: set[str],
    now: dt.datetime,
    send_late: bool,
    seen_at: dt.datetime,
    lead_time: dt.timedelta | None,
) -> list[PlanRow]:
    templates = list(c.template_ids)
    try:
        meaning: str | None = statuses.parse_status(c.status)
        status_problem: str | None = None
    except statuses.StatusProblem as exc:
        meaning, status_problem = None, str(exc)
    send_at, problem = _campaign_problem(c, catalog, data_map, customer_columns)
    rows = []
    for i, t in enumerate(templates or [""]):
        key = ledger.send_key(c.campaign_id, t, send_date)
        done = sent.get(key)
        status, reason, at = READY, None, send_at
        if meaning == statuses.CANCELLED:
            status, reason = CANCELLED, "cancelled on the Optimove side"
        elif done is not None and (change := handover_change(done, send_at, templates, c.target_group)):
            reason = f"changed after hand-over ({change}): campaign_sends deletes and re-creates it, or says why not"
        elif done is not None and not (problem or status_problem) and (
            again := _again(done, send_at, now, send_late)
        ) is not None:
            reason, at = again  # READY: campaign_sends re-bases the row (sending/late.py)
        elif done is not None and done.state == ledger.CANCELLED and done.send_at == send_at:
            status, reason = INVALID, (
                f"it was cancelled ({done.error or 'deleted in Cheetah Messaging'}) and is scheduled again; a cancelled "
                "send is not re-created at its old time: give it a new send time to send it after all"
            )
        elif done is not None and done.state in (ledger.APPROVED, ledger.MISSED, ledger.EMPTY, ledger.CANCELLED):
            status = {ledger.APPROVED: SENT, ledger.MISSED: MISSED, ledger.EMPTY: SENT, ledger.CANCELLED: CANCELLED}[done.state]
            reason, at = done.error, done.send_at
        elif status_problem:
            # Also mid-preparation: a campaign whose status is not understood goes no further.
            status, reason = INVALID, status_problem
        elif done is not None and done.state != ledger.PENDING:
            at = done.send_at  # preparation under way: keep the time it was prepared with
        elif problem:
            status, reason = INVALID, problem
        elif done is None and (clash := _name_clash(names, c.campaign_id, t, send_date)):
            status, reason = INVALID, clash
        elif (away := _held_elsewhere(elsewhere.get(key), now)) is not None:
            status, reason = away  # its campaign may go out in the other account: never READY here
        elif send_at is not None and send_at <= now:
            if send_late:
                at = now + LATE_SEND_MARGIN
                reason = f"sent late: scheduled {send_at:%H:%M} UTC, run with send_late"
            elif (away := _handed_over_elsewhere(elsewhere.get(key))) is not None:
                status, reason, at = SENT, away, elsewhere[key].send_at
            else:
                status, reason = _too_late(c, send_at, seen_at)
        elif send_at is not None and not is_due(send_at, now, lead_time):
            assert lead_time is not None
            status, reason = WAITING, f"prepared from {fmt_utc(send_at - lead_time)}"
        rows.append(
            PlanRow(
                send_date=send_date, campaign_id=c.campaign_id, template_id=t, template_index=i,
                template_count=len(templates), campaign_name=c.name, target_group=c.target_group,
                send_at=at, status=status, reason=reason,
            )
        )
    return rows


def _again(
    done: ledger.LedgerRow, send_at: dt.datetime | None, now: dt.datetime, send_late: bool
) -> tuple[str, dt.datetime] | None:
    """(reason, time) when a MISSED or CANCELLED send of ours is to be prepared again: it was given
    a new send time at least :data:`AGAIN_LEAD` ahead, or (MISSED only) the day runs with
    ``send_late``. None otherwise: it stays as the ledger says."""
    if done.state not in (ledger.MISSED, ledger.CANCELLED) or send_at is None:
        return None
    was = AGAIN[0] if done.state == ledger.MISSED else AGAIN[1]
    if send_at != done.send_at and send_at - now >= AGAIN_LEAD:
        return f"{was}{fmt_utc(done.send_at) if done.send_at else '?'}; prepared again for {fmt_utc(send_at)}", send_at
    if done.state == ledger.MISSED and send_late:
        at = now + LATE_SEND_MARGIN
        return f"{AGAIN[0]}{fmt_utc(done.send_at) if done.send_at else '?'}; sent late, run with send_late", at
    return None


def _handed_over_elsewhere(row: ledger.LedgerRow | None) -> str | None:
    """Why a send past its time counts as SENT though its ledger row names another account
    (endpoint or Cust_ID), or None. It was handed over there (EMPTY: nothing to send; APPROVED:
    :func:`_held_elsewhere`), so it is neither MISSED nor OVERDUE; it is not sent again here."""
    if row is None or row.account is None or row.state not in (ledger.APPROVED, ledger.EMPTY):
        return None
    why = ("it went out from there" if row.state == ledger.APPROVED
           else "its time has passed (run the day with send_late to send it here too)")
    return (f"handed over ({row.state}) to another account ({row.account.describe()}) before its send time; "
            f"not sent to this one: {why}")


def _held_elsewhere(row: ledger.LedgerRow | None, now: dt.datetime) -> tuple[str, str] | None:
    """(status, reason) of a send whose campaign may go out in another account (``ledger.MAY_GO_OUT``),
    or None. Once the time of one APPROVED there has passed, it went out: SENT. Otherwise INVALID,
    the reason starting with :data:`.elsewhere.HELD` (:func:`held`): ``campaign_sends`` refuses it until
    the operator releases it (``release_sends``), and says why, whatever ``send_late`` says."""
    if row is None or row.account is None or row.state not in ledger.MAY_GO_OUT:
        return None
    if row.state == ledger.APPROVED and row.send_at is not None and row.send_at <= now:
        return SENT, _handed_over_elsewhere(row) or ""
    return INVALID, plan_reason(row, now)


def held(r: PlanRow) -> bool:
    """Whether the plan row is a send held by another account (:func:`_held_elsewhere`)."""
    return r.status == INVALID and (r.reason or "").startswith(HELD)


def _too_late(c: queries.ScheduledCampaign, send_at: dt.datetime, seen_at: dt.datetime) -> tuple[str, str]:
    """MISSED (first seen after its send time) or OVERDUE (known in time, not handed over)."""
    when = f"{c.send_time} {c.time_zone} ({send_at:%Y-%m-%d %H:%M} UTC)"
    if seen_at >= send_at:
        return MISSED, (
            f"scheduled for {when} but first seen at {fmt_utc(seen_at)}: its send time has passed, nothing was sent. "
            "To send it, give it a later time (or run the day with send_late)"
        )
    return OVERDUE, (
        f"known since {fmt_utc(seen_at)} but not handed over to Cheetah before its send time {when}; nothing "
        "was sent. Fix what stopped it (the runs' errors say) and run the day with send_late to send it late"
    )


def _name_clash(names: dict[str, str], campaign_id: str, template_id: str, send_date: dt.date) -> str | None:
    """Why the send's Cheetah name cannot be used (another send of the day holds it), or None.

    Names are injective (:func:`.ledger.cheetah_name`); a clash can only come from a ledger row
    written under an older naming rule. The name is claimed for this send when it is free.
    """
    key, name = ledger.send_key(campaign_id, template_id, send_date), ledger.cheetah_name(campaign_id, template_id, send_date)
    holder = names.setdefault(name, key)
    if holder == key:
        return None
    return (
        f"its Cheetah name {name} is already used by send {holder}; nothing was sent, and a re-execution "
        "will not change that: give the campaign another campaign_id"
    )


def _invalid_rows(c: queries.ScheduledCampaign, send_date: dt.date, reason: str) -> list[PlanRow]:
    templates = list(c.template_ids) or [""]
    return [
        PlanRow(
            send_date=send_date, campaign_id=c.campaign_id, template_id=t, template_index=i,
            template_count=len(c.template_ids), campaign_name=c.name, target_group=c.target_group,
            send_at=None, status=INVALID, reason=reason,
        )
        for i, t in enumerate(templates)
    ]


def _store(engine: sa.Engine, send_date: dt.date, rows: list[PlanRow], now: dt.datetime) -> bool:
    """Replace the day's plan with ``rows``, unless a plan made at a later ``now`` is stored: two runs
    of one date may store in either order, and the later steps of both (lists, sends) read the
    stored plan, so an older one stored last would put back WAITING a campaign that had become
    due, and nothing would send it. False when the stored plan is kept."""
    with engine.begin() as conn:
        queries.lock_for_replace(conn, f"plan/{send_date.isoformat()}")
        newest = conn.execute(
            sa.select(sa.func.max(campaign_plan.c.planned_at)).where(campaign_plan.c.send_date == send_date)
        ).scalar()
        if newest is not None and utc(newest) > now:
            return False
        conn.execute(campaign_plan.delete().where(campaign_plan.c.send_date == send_date))
        if rows:
            conn.execute(campaign_plan.insert(), [{**asdict(r), "planned_at": now} for r in rows])
    return True


def already_sent(day_plan: list[PlanRow], recorded: list[ledger.LedgerRow], skip: set[str]) -> list[dict]:
    """``campaign_sends``' records of the plan's SENT rows (handed over before this run), from the
    ledger, noted "already done" (and what the ledger noted last, e.g. suppressed recipients it
    will still mail): a re-run that hands nothing over still shows the day's sends."""
    rows = {r.send_key: r for r in recorded}
    return [
        {
            "campaign": p.campaign_id, "name": p.campaign_name, "template": p.template_id,
            "cheetah_name": r.cheetah_name, "state": r.state, "camp_id": r.camp_id, "recipients": r.rows_in_list,
            "accepted": r.rows_accepted, "rejected": r.rows_rejected,
            "send_at": r.send_at.isoformat() if r.send_at else None,
            "note": "; ".join(filter(None, ["already done" + (f": {p.reason}" if p.reason else ""), r.error])),
        }
        for p in day_plan
        if p.status == SENT and p.send_key not in skip and (r := rows.get(p.send_key)) is not None
    ]


def load_plan(engine: sa.Engine, send_date: dt.date) -> list[PlanRow]:
    with engine.connect() as conn:
        result = conn.execute(
            sa.select(campaign_plan)
            .where(campaign_plan.c.send_date == send_date)
            .order_by(campaign_plan.c.campaign_id, campaign_plan.c.template_index)
        ).mappings()
        rows = []
        for r in result:
            d = {k: r[k] for k in PlanRow.__dataclass_fields__}
            d["send_at"] = utc(d["send_at"])  # SQLite hands back naive datetimes: they are UTC
            rows.append(PlanRow(**d))
    return rows
