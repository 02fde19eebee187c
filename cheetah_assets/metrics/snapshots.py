"""Metric snapshots: seven per sent campaign, one for each day after its send (plain functions).

A campaign's counts in Cheetah Messaging grow over the week after its send and may be restated
downwards. Snapshot *k* (``day_k``, k = 1..7) is the report fetched once day *k* has come, that
is at or after ``send_at + k days``; it is stored in ``cheetah_metric_snapshot`` under
(campaign name, k). Fetching the same day again (a backfill) replaces that one row; the other
days are never touched, so a restatement shows as a lower count on a later day next to the
higher one the earlier day recorded.

This module also holds the arithmetic of the metric sensors (which campaigns to register as
partitions, which campaign-days are due), so that it can be tested without Dagster:

* :func:`campaigns_sent_since` — the APPROVED sends whose send time has come, sent or changed
  since the last tick (one range query over the ledger's ``send_at`` and ``updated_at`` indexes).
* :func:`snapshots_due` — every campaign-day whose due time falls in ``(last tick, now]``, plus
  the days already due of campaigns registered since the last tick (one range query per tick,
  one bounded look-up of the registered names, pure arithmetic; never a per-partition query).

Nothing here imports Dagster.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
from dataclasses import dataclass, field
from typing import Callable, Collection, Iterable, Mapping, Protocol, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ..cheetah.contract import METRIC_NAMES, CampaignMetrics, ObjId, id_from_db, id_to_db, same_id
from ..customers.schema import create_integration_tables, metric_snapshot, send_ledger

#: The seven snapshot days, as partition keys of the ``day`` dimension.
SNAPSHOT_DAYS: list[str] = [f"day_{k}" for k in range(1, 8)]
DAYS = range(1, len(SNAPSHOT_DAYS) + 1)
DAY = dt.timedelta(days=1)

#: The ledger state of a send that Cheetah Messaging sends (or has sent) at ``send_at``.
APPROVED = "APPROVED"

#: Cheetah metric name -> column of ``cheetah_metric_snapshot``.
COLUMNS: dict[str, str] = {
    "Sent": "sent",
    "Received": "received",
    "MessageOpens": "message_opens",
    "MessageClicks": "message_clicks",
    "Unsubs": "unsubs",
}
assert set(COLUMNS) == set(METRIC_NAMES)

#: How far back the request sensor catches up: after an outage (or on its very first tick) it
#: requests every day that became due within this horizon, once. Older days are left to a
#: backfill from the UI: fetched today they would report today's counts under an old day.
CATCH_UP_HORIZON = dt.timedelta(days=7)

#: The registration sensor re-reads sends changed up to this long before its last tick, so that
#: a send whose transaction committed late, or whose writer's clock is a little behind, is not
#: skipped. Re-read sends that are already registered cost one bounded membership query.
REGISTRATION_SLACK = dt.timedelta(minutes=15)

_IN_CHUNK = 500  # names per SQL ``IN (...)``


# ------------------------------------------------------------------------------------------------
# errors
# ------------------------------------------------------------------------------------------------
class SnapshotError(Exception):
    """A snapshot cannot be taken; ``str(err)`` is one sentence saying why and what to do."""


class UnknownCampaignName(SnapshotError):
    pass


class CampaignNotSent(SnapshotError):
    pass


class SnapshotTooEarly(SnapshotError):
    pass


# ------------------------------------------------------------------------------------------------
# values
# ------------------------------------------------------------------------------------------------
def utc(value: dt.datetime | None) -> dt.datetime | None:
    """SQLite hands back naive datetimes; everything in these tables is UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value.astimezone(dt.timezone.utc)


def day_key(day: int) -> str:
    if day not in DAYS:
        raise ValueError(f"a snapshot day is 1..{len(DAYS)}, not {day}")
    return f"day_{day}"


def day_number(key: str) -> int:
    """``"day_3"`` -> 3 (ValueError for anything that is not one of :data:`SNAPSHOT_DAYS`)."""
    if key not in SNAPSHOT_DAYS:
        raise ValueError(f"{key!r} is not a snapshot day; expected one of {', '.join(SNAPSHOT_DAYS)}")
    return int(key.removeprefix("day_"))


def run_key(cheetah_name: str, day: int) -> str:
    """The sensor's run key of one campaign-day: Dagster never launches the same one twice."""
    return f"{cheetah_name}|{day_key(day)}"


@dataclass(frozen=True)
class SentCampaign:
    """The ledger's view of one Cheetah campaign (a send of one template on one day)."""

    cheetah_name: str
    camp_id: ObjId | None  # as Cheetah handed it out (stored as contract.id_to_db writes it)
    state: str
    send_at: dt.datetime | None
    campaign_id: str
    template_id: str
    send_date: dt.date

    @property
    def sent(self) -> bool:
        return self.state == APPROVED and self.camp_id is not None and self.send_at is not None

    def due_at(self, day: int) -> dt.datetime:
        """When snapshot ``day`` comes: ``day`` whole days after the send."""
        if self.send_at is None:
            raise CampaignNotSent(f"Campaign {self.cheetah_name} has no send time in the ledger.")
        return self.send_at + day * DAY


@dataclass(frozen=True)
class Snapshot:
    cheetah_name: str
    day: int
    camp_id: ObjId
    as_of: dt.datetime
    fetched_at: dt.datetime
    counts: Mapping[str, int]  # by Cheetah name (METRIC_NAMES keys)

    def optimove(self) -> dict[str, int]:
        return {METRIC_NAMES[k]: v for k, v in self.counts.items()}

    def lower_than(self, earlier: "Snapshot | None") -> list[str]:
        """Cheetah metric names whose count here is below ``earlier``'s (a restatement)."""
        if earlier is None:
            return []
        return [k for k in METRIC_NAMES if self.counts[k] < earlier.counts[k]]


@dataclass(frozen=True)
class SnapshotOutcome:
    campaign: SentCampaign
    snapshot: Snapshot
    due_at: dt.datetime
    previous: Snapshot | None  # the latest snapshot of an earlier day, if any
    restated: list[str]  # Cheetah names of counts lower than ``previous``'s
    replaced: bool  # this day had a snapshot already, now replaced
    early: bool  # taken before its day had come (``allow_early``)


# ------------------------------------------------------------------------------------------------
# database
# ------------------------------------------------------------------------------------------------
_PREPARED: set[tuple[int, str]] = set()
_PREPARED_LOCK = threading.Lock()


def prepare_database(engine: Engine) -> None:
    """Create the integration's tables and the ledger's indexes if missing (once per process).

    ``create_all`` creates indexes only with a new table; the ledger's ``send_at``/``updated_at``
    indexes are created here on a ledger that predates them.
    """
    key = (os.getpid(), engine.url.render_as_string(hide_password=False))
    if key in _PREPARED:
        return
    with _PREPARED_LOCK:
        if key in _PREPARED:
            return
        create_integration_tables(engine)
        for index in send_ledger.indexes:
            index.create(engine, checkfirst=True)
        _PREPARED.add(key)


def _campaign(row: Mapping) -> SentCampaign:
    return SentCampaign(
        cheetah_name=row["cheetah_name"],
        camp_id=None if row["camp_id"] is None else id_from_db(row["camp_id"]),
        state=row["state"],
        send_at=utc(row["send_at"]),
        campaign_id=row["campaign_id"],
        template_id=row["template_id"],
        send_date=row["send_date"],
    )


_CAMPAIGN_COLUMNS = (
    send_ledger.c.cheetah_name,
    send_ledger.c.camp_id,
    send_ledger.c.state,
    send_ledger.c.send_at,
    send_ledger.c.campaign_id,
    send_ledger.c.template_id,
    send_ledger.c.send_date,
)


def load_campaign(engine: Engine, cheetah_name: str) -> SentCampaign:
    """The ledger row of the Cheetah campaign ``cheetah_name`` (:class:`UnknownCampaignName` if none)."""
    with engine.connect() as conn:
        row = (
            conn.execute(sa.select(*_CAMPAIGN_COLUMNS).where(send_ledger.c.cheetah_name == cheetah_name))
            .mappings()
            .first()
        )
    if row is None:
        raise UnknownCampaignName(
            f"No send in the ledger (cheetah_send_ledger) has the Cheetah campaign name {cheetah_name!r}: "
            "the partition does not name a campaign this integration sent."
        )
    return _campaign(row)


def _snapshot(row: Mapping) -> Snapshot:
    return Snapshot(
        cheetah_name=row["cheetah_name"],
        day=row["day"],
        camp_id=id_from_db(row["camp_id"]),
        as_of=utc(row["as_of"]),
        fetched_at=utc(row["fetched_at"]),
        counts={k: row[c] for k, c in COLUMNS.items()},
    )


def load_snapshots(engine: Engine, cheetah_name: str | None = None) -> list[Snapshot]:
    """Stored snapshots (of one campaign, or all), ordered by campaign and day."""
    query = sa.select(metric_snapshot).order_by(metric_snapshot.c.cheetah_name, metric_snapshot.c.day)
    if cheetah_name is not None:
        query = query.where(metric_snapshot.c.cheetah_name == cheetah_name)
    with engine.connect() as conn:
        return [_snapshot(r) for r in conn.execute(query).mappings()]


def previous_snapshot(conn: Connection, cheetah_name: str, day: int) -> Snapshot | None:
    """The snapshot of the latest day before ``day`` that has one."""
    t = metric_snapshot.c
    row = (
        conn.execute(
            sa.select(metric_snapshot)
            .where(t.cheetah_name == cheetah_name, t.day < day)
            .order_by(t.day.desc())
            .limit(1)
        )
        .mappings()
        .first()
    )
    return _snapshot(row) if row else None


def write_snapshot(conn: Connection, snap: Snapshot) -> bool:
    """Insert or replace the row of (campaign, day); True when it replaced one.

    An atomic upsert on SQLite and PostgreSQL (``ON CONFLICT DO UPDATE``), so two runs of the same
    partition at once leave one row; other databases delete then insert in the caller's transaction.
    """
    t = metric_snapshot.c
    values = {
        "cheetah_name": snap.cheetah_name,
        "day": snap.day,
        "camp_id": id_to_db(snap.camp_id),
        "as_of": snap.as_of,
        "fetched_at": snap.fetched_at,
        **{c: int(snap.counts[k]) for k, c in COLUMNS.items()},
    }
    existed = (
        conn.execute(sa.select(sa.literal(1)).where(t.cheetah_name == snap.cheetah_name, t.day == snap.day)).first()
        is not None
    )
    dialect = conn.dialect.name
    if dialect in ("sqlite", "postgresql"):
        if dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        else:
            from sqlalchemy.dialects.postgresql import insert
        stmt = insert(metric_snapshot).values(**values)
        keys = ("cheetah_name", "day")
        stmt = stmt.on_conflict_do_update(
            index_elements=list(keys), set_={k: stmt.excluded[k] for k in values if k not in keys}
        )
        conn.execute(stmt)
    else:
        conn.execute(metric_snapshot.delete().where(t.cheetah_name == snap.cheetah_name, t.day == snap.day))
        conn.execute(metric_snapshot.insert().values(**values))
    return existed


# ------------------------------------------------------------------------------------------------
# taking a snapshot
# ------------------------------------------------------------------------------------------------
class MetricsSource(Protocol):
    """What :func:`take_snapshot` needs of the Cheetah client (``CheetahClient`` is one)."""

    def get_metrics(self, camp_id: ObjId) -> CampaignMetrics: ...


def check_due(campaign: SentCampaign, day: int, now: dt.datetime, *, allow_early: bool = False) -> dt.datetime:
    """The due time of ``day``; raises unless the campaign was sent and the day has come."""
    if not campaign.sent:
        raise CampaignNotSent(
            f"Campaign {campaign.cheetah_name} is {campaign.state} in the ledger"
            + ("" if campaign.camp_id is not None else ", with no Cheetah campaign id")
            + ": only a campaign handed to Cheetah Messaging and approved (APPROVED) has metrics."
        )
    due = campaign.due_at(day)
    if now < due and not allow_early:
        wait = due - now
        hours = wait.total_seconds() / 3600
        raise SnapshotTooEarly(
            f"Day {day} of campaign {campaign.cheetah_name} comes at {due:%Y-%m-%d %H:%M} UTC "
            f"({hours:.1f} h from now, {now:%Y-%m-%d %H:%M} UTC): a day-{day} snapshot taken now would "
            "not say what the campaign did by that day. Run it then, or set allow_early: true to take it anyway."
        )
    return due


def take_snapshot(
    client: MetricsSource,
    engine: Engine,
    cheetah_name: str,
    day: int,
    now: dt.datetime,
    *,
    allow_early: bool = False,
) -> SnapshotOutcome:
    """Fetch campaign ``cheetah_name``'s report for snapshot ``day`` and store it.

    Raises :class:`UnknownCampaignName`, :class:`CampaignNotSent`, :class:`SnapshotTooEarly`, or
    the client's errors (``MetricsNotReady`` when Cheetah has not sent it yet).
    """
    day_key(day)  # validates
    now = utc(now)
    campaign = load_campaign(engine, cheetah_name)
    due = check_due(campaign, day, now, allow_early=allow_early)
    metrics = client.get_metrics(campaign.camp_id)
    if not same_id(metrics.camp_id, campaign.camp_id):
        raise SnapshotError(
            f"Cheetah Messaging answered the report of campaign {campaign.camp_id} with campaign {metrics.camp_id}'s."
        )
    snap = Snapshot(
        cheetah_name=cheetah_name,
        day=day,
        camp_id=campaign.camp_id,
        as_of=utc(metrics.as_of),
        fetched_at=now,
        counts={k: int(metrics.counts[k]) for k in METRIC_NAMES},
    )
    with engine.begin() as conn:
        previous = previous_snapshot(conn, cheetah_name, day)
        replaced = write_snapshot(conn, snap)
    return SnapshotOutcome(
        campaign=campaign,
        snapshot=snap,
        due_at=due,
        previous=previous,
        restated=snap.lower_than(previous),
        replaced=replaced,
        early=now < due,
    )


# ------------------------------------------------------------------------------------------------
# what the sensors ask
# ------------------------------------------------------------------------------------------------
def _sent() -> sa.ColumnElement[bool]:
    return sa.and_(send_ledger.c.state == APPROVED, send_ledger.c.camp_id.is_not(None))


def campaigns_sent_since(
    engine: Engine,
    now: dt.datetime,
    since: dt.datetime | None,
    *,
    slack: dt.timedelta = REGISTRATION_SLACK,
) -> list[tuple[str, dt.datetime]]:
    """(name, send time) of APPROVED sends whose send time has come, oldest first.

    With ``since`` (the previous tick), only those sent after ``since - slack`` or whose ledger
    row changed after it: the new ones, plus a bounded overlap. A send recorded as APPROVED only
    after its send time (a run that recovered a lost reply the next day) is found by its
    ``updated_at``. Without ``since``, every sent campaign.
    """
    now = utc(now)
    t = send_ledger.c
    query = sa.select(t.cheetah_name, t.send_at).where(_sent(), t.send_at <= now)
    if since is not None:
        floor = utc(since) - slack
        query = query.where(sa.or_(t.send_at > floor, t.updated_at > floor))
    with engine.connect() as conn:
        rows = conn.execute(query.order_by(t.send_at, t.cheetah_name)).all()
    return [(r.cheetah_name, utc(r.send_at)) for r in rows]


@dataclass(frozen=True, order=True)
class DueSnapshot:
    due_at: dt.datetime
    cheetah_name: str
    day: int

    @property
    def day_key(self) -> str:
        return day_key(self.day)

    @property
    def run_key(self) -> str:
        return run_key(self.cheetah_name, self.day)


def _merge(ranges: Iterable[tuple[dt.datetime, dt.datetime]]) -> list[tuple[dt.datetime, dt.datetime]]:
    """Union of half-open ranges ``(lo, hi]`` as disjoint ranges."""
    out: list[list[dt.datetime]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1]:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return [(lo, hi) for lo, hi in out]


def _chunks(items: Sequence[str], n: int = _IN_CHUNK) -> Iterable[Sequence[str]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


def _days_in(send_at: dt.datetime, lo: dt.datetime, hi: dt.datetime) -> list[tuple[int, dt.datetime]]:
    """(k, due) for the days k whose due time ``send_at + k days`` is in ``(lo, hi]``."""
    out = []
    for k in DAYS:
        due = send_at + k * DAY
        if lo < due <= hi:
            out.append((k, due))
    return out


def sends_with_days_due(
    engine: Engine, lo: dt.datetime, hi: dt.datetime
) -> list[tuple[str, dt.datetime]]:
    """(name, send time) of APPROVED sends with a snapshot day due in ``(lo, hi]``.

    One query over the ``send_at`` index: the send times ``(lo - k days, hi - k days]`` for
    k = 1..7, merged into disjoint ranges, so a tick reads only the sends with something due.
    """
    if hi <= lo:
        return []
    t = send_ledger.c
    ranges = _merge((lo - k * DAY, hi - k * DAY) for k in DAYS)
    cond = sa.or_(*(sa.and_(t.send_at > a, t.send_at <= b) for a, b in ranges))
    with engine.connect() as conn:
        rows = conn.execute(sa.select(t.cheetah_name, t.send_at).where(_sent(), cond)).all()
    return [(r.cheetah_name, utc(r.send_at)) for r in rows]


def sends_named(
    engine: Engine, names: Collection[str], *, sent_after: dt.datetime | None = None
) -> list[tuple[str, dt.datetime]]:
    """(name, send time) of the APPROVED sends among ``names`` (chunked ``IN`` queries),
    optionally only those sent after ``sent_after``."""
    t = send_ledger.c
    out: list[tuple[str, dt.datetime]] = []
    extra = [] if sent_after is None else [t.send_at > utc(sent_after)]
    with engine.connect() as conn:
        for chunk in _chunks(sorted(set(names))):
            rows = conn.execute(
                sa.select(t.cheetah_name, t.send_at).where(_sent(), t.cheetah_name.in_(chunk), *extra)
            ).all()
            out.extend((r.cheetah_name, utc(r.send_at)) for r in rows)
    return out


@dataclass
class DuePlan:
    """What one tick of the request sensor asks for, and how it got there (for logs and tests)."""

    due: list[DueSnapshot] = field(default_factory=list)
    window_sends: int = 0  # sends read by the due-time range query
    newly_registered: int = 0  # partitions added since the last tick
    not_registered: list[str] = field(default_factory=list)  # due, but not (yet) a partition


def snapshots_due(
    engine: Engine,
    *,
    now: dt.datetime,
    last_tick: dt.datetime | None,
    registered: Callable[[list[str]], Collection[str]],
    registered_since_last_tick: Callable[[], Collection[str]],
    horizon: dt.timedelta = CATCH_UP_HORIZON,
) -> DuePlan:
    """The campaign-days to request at ``now``: each one once, never before it is due.

    * A registered campaign's day k is requested by the tick whose interval ``(last_tick, now]``
      holds its due time (a tick after an outage covers the whole outage).
    * A campaign registered since the last tick gets every day already due at ``now``: it may
      have been registered late (its send recorded as APPROVED late), or this is the first tick.
    * Nothing that became due more than ``horizon`` ago is requested (a backfill does that).

    ``registered(names)`` answers which names are partitions (one bounded query);
    ``registered_since_last_tick()`` lists the partitions added since the last tick. It is called
    *after* the first ``registered``, so a campaign registered between the two calls counts as new
    (all its due days) rather than both new and old: no campaign-day is asked for twice. Every name
    in the plan has been confirmed by ``registered`` in this tick.
    """
    now = utc(now)
    floor = now - horizon
    lo = floor if last_tick is None else max(utc(last_tick), floor)
    plan = DuePlan()

    window: list[tuple[str, dt.datetime]] = []
    if last_tick is not None:
        window = sends_with_days_due(engine, lo, now)
    plan.window_sends = len(window)
    known = set(registered(sorted({name for name, _ in window}))) if window else set()
    new = set(registered_since_last_tick())
    plan.newly_registered = len(new)

    for name, send_at in window:
        if name in new:
            continue  # all its due days come below
        if name not in known:
            plan.not_registered.append(name)
            continue
        plan.due.extend(DueSnapshot(due, name, k) for k, due in _days_in(send_at, lo, now))

    caught_up: dict[str, list[DueSnapshot]] = {}
    for name, send_at in sends_named(engine, new, sent_after=floor - len(DAYS) * DAY):
        days = [DueSnapshot(due, name, k) for k, due in _days_in(send_at, floor, now)]
        if days:
            caught_up[name] = days
    if caught_up:
        # Listed as added since the last tick; confirm they are still partitions (one bounded query).
        for name in registered(sorted(caught_up)):
            plan.due.extend(caught_up[name])
    plan.due.sort()
    plan.not_registered.sort()
    return plan
