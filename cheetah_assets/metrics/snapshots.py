"""Metric snapshots: seven per sent campaign, one for each day after its send (plain functions).

A campaign's counts in Cheetah Messaging grow over the week after its send and may be restated
downwards. Snapshot *k* (``day_k``, k = 1..7) is the report fetched once day *k* has come, that
is at or after ``send_at + k days``; it is stored in ``cheetah_metric_snapshot`` under
(campaign name, k). Fetching the same day again (a backfill) replaces that one row; the other
days are never touched, so a restatement shows as a lower count on a later day next to the
higher one the earlier day recorded.

What the metric sensors ask (which sends to register, which campaign-days are due) is in
:mod:`.due`. Nothing here imports Dagster.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
from dataclasses import dataclass
from typing import Mapping, Protocol

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from ..cheetah.contract import METRIC_NAMES, CampaignMetrics, ObjId, id_from_db, id_to_db, same_id
from ..customers.schema import create_integration_tables, metric_snapshot, send_ledger
from ..sending.ledger import Account
from ..timeutil import utc

#: The seven snapshot days, as partition keys of the ``day`` dimension.
SNAPSHOT_DAYS: list[str] = [f"day_{k}" for k in range(1, 8)]
DAYS = range(1, len(SNAPSHOT_DAYS) + 1)
DAY = dt.timedelta(days=1)

#: How long after its day comes a snapshot may still be missing before it is overdue (the
#: snapshots_on_time check, the overdue alert); one taken later than this is *late*: its counts
#: are those of the time it was taken (a catch-up after an outage), not of its day. The request
#: sensor asks for a day within a minute of its due time and the run takes seconds; six hours
#: outlasts the snapshot's retries (``batch.RETRY_DELAYS``), a daemon restart and a Cheetah outage
#: of a few hours without raising a false alarm, and still flags a missing day on the day it was due.
SNAPSHOT_GRACE = dt.timedelta(hours=6)

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


# ------------------------------------------------------------------------------------------------
# errors
# ------------------------------------------------------------------------------------------------
class SnapshotError(Exception):
    """A snapshot cannot be taken; ``str(err)`` is one sentence saying why and what to do."""


class UnknownCampaignName(SnapshotError):
    pass


class CampaignNotSent(SnapshotError):
    pass


class OtherAccount(SnapshotError):
    """The send was recorded against another Cheetah account: its camp_id means nothing (or another
    campaign) in the configured one, so it is never fetched there."""


class SnapshotTooEarly(SnapshotError):
    """The day has not come yet: not a failure, the snapshot is simply not due (``due_at``)."""

    def __init__(self, message: str, due_at: dt.datetime):
        super().__init__(message)
        self.due_at = due_at


# ------------------------------------------------------------------------------------------------
# values
# ------------------------------------------------------------------------------------------------
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
    #: The account the send went to (None: recorded before the ledger kept it).
    account: Account | None = None

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
    #: taken more than SNAPSHOT_GRACE after its day came: the counts of the time taken, not of the day
    late: bool = False


# ------------------------------------------------------------------------------------------------
# database
# ------------------------------------------------------------------------------------------------
#: The ``INSERT ... ON CONFLICT`` of each dialect that has one.
UPSERTS = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}

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
        account=None if row["endpoint"] is None else Account(row["endpoint"], row["cust_id"]),
    )


_CAMPAIGN_COLUMNS = (
    send_ledger.c.cheetah_name,
    send_ledger.c.camp_id,
    send_ledger.c.state,
    send_ledger.c.send_at,
    send_ledger.c.campaign_id,
    send_ledger.c.template_id,
    send_ledger.c.send_date,
    send_ledger.c.endpoint,
    send_ledger.c.cust_id,
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
    if dialect in UPSERTS:
        stmt = UPSERTS[dialect](metric_snapshot).values(**values)
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
            "not say what the campaign did by that day. It is requested then; set allow_early: true to take "
            "a provisional one now.",
            due,
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
    account: Account | None = None,
) -> SnapshotOutcome:
    """Fetch campaign ``cheetah_name``'s report for snapshot ``day`` and store it.

    ``account`` is the client's (``ledger.account_of(client.settings)``): a send recorded against
    another account is refused before anything is fetched (:class:`OtherAccount`); its camp_id
    would name another campaign, or none, here. A send recorded before the ledger kept accounts
    is taken as before.

    Raises :class:`UnknownCampaignName`, :class:`CampaignNotSent`, :class:`OtherAccount`,
    :class:`SnapshotTooEarly`, or the client's errors (``MetricsNotReady`` when Cheetah has not
    sent it yet).
    """
    day_key(day)  # validates
    now = utc(now)
    campaign = load_campaign(engine, cheetah_name)
    if account is not None and campaign.account is not None and not campaign.account.same_as(account):
        raise OtherAccount(
            f"Campaign {cheetah_name} was sent from {campaign.account.describe()}, not from the configured account "
            f"({account.describe()}): its metrics are not fetched here (its camp_id {campaign.camp_id} may name "
            "another campaign in this account)."
        )
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
        late=is_late(now, due),
    )


def is_late(fetched_at: dt.datetime, due_at: dt.datetime) -> bool:
    """Whether a snapshot fetched at ``fetched_at`` says more than its day (due at ``due_at``) did."""
    return fetched_at > due_at + SNAPSHOT_GRACE
