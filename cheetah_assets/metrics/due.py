"""What the metric sensors ask, as plain functions (no Dagster), tested without Dagster:

* :func:`campaigns_sent_since` — the APPROVED sends whose send time has come, sent or changed
  since the last tick (one range query over the ledger's ``send_at`` and ``updated_at`` indexes).
* :func:`snapshots_due` — every campaign-day whose due time falls in ``(last tick, now]``, plus
  the days already due of campaigns registered since the last tick (one range query per tick,
  one bounded look-up of the registered names, pure arithmetic; never a per-partition query).

Taking and storing a snapshot is :mod:`.snapshots`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Callable, Collection, Iterable, NamedTuple, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ..customers.schema import metric_snapshot, send_ledger
from ..sending.ledger import Account
from ..timeutil import utc
from .snapshots import APPROVED, DAY, DAYS, SNAPSHOT_GRACE, day_key, run_key

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
# what the sensors ask
# ------------------------------------------------------------------------------------------------
def _sent() -> sa.ColumnElement[bool]:
    return sa.and_(send_ledger.c.state == APPROVED, send_ledger.c.camp_id.is_not(None))


#: The columns the sensors read of a send: its name and time, and the account it went to.
_SEND_COLUMNS = (send_ledger.c.cheetah_name, send_ledger.c.send_at, send_ledger.c.endpoint, send_ledger.c.cust_id)


def _in_account(rows, account: Account | None, elsewhere: list | None) -> list[tuple[str, dt.datetime]]:
    """(name, send time) of the rows sent from ``account`` or with no account recorded (sends that
    predate the ledger's account columns); the others go to ``elsewhere`` as (name, their account).
    A send from another account is never registered nor fetched: its camp_id means nothing here."""
    out = []
    for r in rows:
        theirs = None if r.endpoint is None else Account(r.endpoint, r.cust_id)
        if account is not None and theirs is not None and not theirs.same_as(account):
            if elsewhere is not None:
                elsewhere.append((r.cheetah_name, theirs))
            continue
        out.append((r.cheetah_name, utc(r.send_at)))
    return out


def describe_elsewhere(elsewhere: Sequence[tuple[str, Account]], account: Account, limit: int = 10) -> str:
    """One line naming the sends left out because they went to another account."""
    names = ", ".join(f"{name} ({theirs.describe()})" for name, theirs in elsewhere[:limit])
    return (
        f"{len(elsewhere)} sent campaigns left out, recorded against another account than the configured one "
        f"({account.describe()}); their metrics are never fetched here: {names}" + (" …" if len(elsewhere) > limit else "")
    )


def campaigns_sent_since(
    engine: Engine,
    now: dt.datetime,
    since: dt.datetime | None,
    *,
    slack: dt.timedelta = REGISTRATION_SLACK,
    account: Account | None = None,
    elsewhere: list | None = None,
) -> list[tuple[str, dt.datetime]]:
    """(name, send time) of APPROVED sends whose send time has come, oldest first.

    With ``since`` (the previous tick), only those sent after ``since - slack`` or whose ledger
    row changed after it: the new ones, plus a bounded overlap. A send recorded as APPROVED only
    after its send time (a run that recovered a lost reply the next day) is found by its
    ``updated_at``. Without ``since``, every sent campaign. With ``account``, only those sent from
    it (or with no account recorded); the others are added to ``elsewhere`` (:func:`_in_account`).
    """
    now = utc(now)
    t = send_ledger.c
    query = sa.select(*_SEND_COLUMNS).where(_sent(), t.send_at <= now)
    if since is not None:
        floor = utc(since) - slack
        query = query.where(sa.or_(t.send_at > floor, t.updated_at > floor))
    with engine.connect() as conn:
        rows = conn.execute(query.order_by(t.send_at, t.cheetah_name)).all()
    return _in_account(rows, account, elsewhere)


class DueSnapshot(NamedTuple):
    """One campaign-day, ordered by due time, then name, then day (a tuple: a tick builds tens of
    thousands of them on a catch-up, and sorts them)."""

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
    engine: Engine, lo: dt.datetime, hi: dt.datetime, *, account: Account | None = None, elsewhere: list | None = None
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
        rows = conn.execute(sa.select(*_SEND_COLUMNS).where(_sent(), cond)).all()
    return _in_account(rows, account, elsewhere)


def sends_named(
    engine: Engine,
    names: Collection[str],
    *,
    sent_after: dt.datetime | None = None,
    account: Account | None = None,
    elsewhere: list | None = None,
) -> list[tuple[str, dt.datetime]]:
    """(name, send time) of the APPROVED sends among ``names`` (chunked ``IN`` queries),
    optionally only those sent after ``sent_after`` (then, for many names, one range query over
    the ``send_at`` index, filtered here: a first tick lists every registered campaign)."""
    t = send_ledger.c
    out: list[tuple[str, dt.datetime]] = []
    extra = [] if sent_after is None else [t.send_at > utc(sent_after)]
    if sent_after is not None and len(names) > 4 * _IN_CHUNK:
        wanted = set(names)
        with engine.connect() as conn:
            rows = conn.execute(sa.select(*_SEND_COLUMNS).where(_sent(), *extra)).all()
        return _in_account([r for r in rows if r.cheetah_name in wanted], account, elsewhere)
    with engine.connect() as conn:
        for chunk in _chunks(sorted(set(names))):
            rows = conn.execute(sa.select(*_SEND_COLUMNS).where(_sent(), t.cheetah_name.in_(chunk), *extra)).all()
            out.extend(_in_account(rows, account, elsewhere))
    return out


def taken_on_time(engine: Engine, due: Sequence[DueSnapshot]) -> set[tuple[str, int]]:
    """(name, day) of the ``due`` days whose stored snapshot was fetched at or after its due time
    (an early, provisional one is not). One query: the snapshots of the sends in the days' send-time
    range (the ledger's ``send_at`` index, then the snapshot table's primary key)."""
    if not due:
        return set()
    when = {(d.cheetah_name, d.day): d.due_at for d in due}
    sent = [d.due_at - d.day * DAY for d in due]
    t, lg = metric_snapshot.c, send_ledger.c
    window = sa.select(lg.cheetah_name).where(lg.send_at >= min(sent), lg.send_at <= max(sent))
    out: set[tuple[str, int]] = set()
    with engine.connect() as conn:
        for r in conn.execute(sa.select(t.cheetah_name, t.day, t.fetched_at).where(t.cheetah_name.in_(window))):
            due_at = when.get((r.cheetah_name, r.day))
            if due_at is not None and utc(r.fetched_at) >= due_at:
                out.add((r.cheetah_name, r.day))
    return out


@dataclass
class DuePlan:
    """What one tick of the request sensor asks for, and how it got there (for logs and tests)."""

    due: list[DueSnapshot] = field(default_factory=list)
    window_sends: int = 0  # sends read by the due-time range query
    newly_registered: int = 0  # partitions added since the last tick
    not_registered: list[str] = field(default_factory=list)  # due, but not (yet) a partition
    already_taken: int = 0  # caught-up days left out: taken on time already
    #: (name, account) of sends with a day due, left out: recorded against another account
    other_account: list[tuple[str, Account]] = field(default_factory=list)


def snapshots_due(
    engine: Engine,
    *,
    now: dt.datetime,
    last_tick: dt.datetime | None,
    registered: Callable[[list[str]], Collection[str]],
    registered_since_last_tick: Callable[[], Collection[str]],
    horizon: dt.timedelta = CATCH_UP_HORIZON,
    account: Account | None = None,
) -> DuePlan:
    """The campaign-days to request at ``now``: each one once, never before it is due.

    * A registered campaign's day k is requested by the tick whose interval ``(last_tick, now]``
      holds its due time (a tick after an outage covers the whole outage).
    * A campaign registered since the last tick gets every day already due at ``now``: it may
      have been registered late (its send recorded as APPROVED late), or this is the first tick.
    * Nothing that became due more than ``horizon`` ago is requested (a backfill does that).
    * Of the days a newly registered campaign gets at once (every campaign, on a tick with no
      cursor: the very first, or after a reset), those already taken on time are left out
      (:func:`taken_on_time`): fetched again now, they would report today's counts under an old day.

    ``registered(names)`` answers which names are partitions (one bounded query);
    ``registered_since_last_tick()`` lists the partitions added since the last tick. It is called
    *after* the first ``registered``, so a campaign registered between the two calls counts as new
    (all its due days) rather than both new and old: no campaign-day is asked for twice. Every name
    in the plan was a partition in this tick: confirmed by ``registered``, or listed by
    ``registered_since_last_tick``. With ``account``, a send recorded against another account is
    left out (``plan.other_account``), registered or not.
    """
    now = utc(now)
    floor = now - horizon
    lo = floor if last_tick is None else max(utc(last_tick), floor)
    plan = DuePlan()

    window: list[tuple[str, dt.datetime]] = []
    if last_tick is not None:
        window = sends_with_days_due(engine, lo, now, account=account, elsewhere=plan.other_account)
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
    for name, send_at in sends_named(
        engine, new, sent_after=floor - len(DAYS) * DAY, account=account, elsewhere=plan.other_account
    ):
        days = [DueSnapshot(due, name, k) for k, due in _days_in(send_at, floor, now)]
        if days:
            caught_up[name] = days
    if caught_up:
        # Listed as partitions in this tick (the paged listing above reads the partitions table).
        days = [d for name in sorted(caught_up) for d in caught_up[name]]
        taken = taken_on_time(engine, days)
        plan.due.extend(d for d in days if (d.cheetah_name, d.day) not in taken)
        plan.already_taken = len(taken)
    plan.due.sort()
    plan.not_registered.sort()
    return plan


# ------------------------------------------------------------------------------------------------
# overdue snapshots (the snapshots_on_time check and the overdue-snapshot alert ask the same)
# ------------------------------------------------------------------------------------------------
# SNAPSHOT_GRACE (how long a day may be missing before it is overdue) is defined in .snapshots,
# which also calls a snapshot taken after it *late*; imported above, for the functions below and
# for the callers that read it here (the checks, the alert).


def overdue_window(now: dt.datetime, grace: dt.timedelta = SNAPSHOT_GRACE) -> tuple[dt.datetime, dt.datetime]:
    """The send times ``[oldest, now]`` whose days are looked at: a send older than a week plus the
    grace plus a day has no day left that the sensors would still request (a backfill does that)."""
    now = utc(now)
    return now - len(DAYS) * DAY - grace - DAY, now


def overdue_days(
    sends: Iterable[tuple[str, dt.datetime]], now: dt.datetime, is_taken: Callable[[str], bool], grace: dt.timedelta = SNAPSHOT_GRACE
) -> list[DueSnapshot]:
    """Pure: the days of ``sends`` ((name, send time)) whose due time plus ``grace`` is at or
    before ``now`` and whose partition key (``run_key``, as ``str(MultiPartitionKey)``) is not taken."""
    now = utc(now)
    out = []
    for name, send_at in sends:
        for k in DAYS:
            due = utc(send_at) + k * DAY
            if due + grace <= now and not is_taken(run_key(name, k)):
                out.append(DueSnapshot(due, name, k))
    return sorted(out)


def overdue_snapshots(
    engine: Engine,
    now: dt.datetime,
    *,
    registered: Callable[[list[str]], Collection[str]],
    materialized: Collection[str] | Callable[[list[str]], Collection[str]],
    grace: dt.timedelta = SNAPSHOT_GRACE,
) -> list[DueSnapshot]:
    """Every registered campaign's snapshot day past due plus ``grace`` with no materialization
    (``materialized``: partition keys as strings, ``"<campaign>|day_k"``, or a function answering
    which of the given keys are), oldest due first.

    One range query over the ledger's ``send_at`` index (:func:`overdue_window`), one bounded
    ``registered(names)`` question, one ``materialized(keys)`` question about the days past due
    of those sends only (however long the history); the rest is arithmetic (:func:`overdue_days`).
    """
    oldest, now = overdue_window(now, grace)
    t = send_ledger.c
    with engine.connect() as conn:
        rows = conn.execute(
            # APPROVED is enough: only a registered campaign counts, and registration asks for the id too.
            sa.select(t.cheetah_name, t.send_at).where(t.state == APPROVED, t.send_at >= oldest, t.send_at <= now)
        ).all()
    sends = [(r.cheetah_name, utc(r.send_at)) for r in rows]
    known = set(registered(sorted({n for n, _ in sends}))) if sends else set()
    mine = [(n, s) for n, s in sends if n in known]
    if callable(materialized):
        candidates = sorted(d.run_key for d in overdue_days(mine, now, lambda _key: False, grace))
        taken = set(materialized(candidates)) if candidates else set()
    else:
        taken = set(materialized)
    return overdue_days(mine, now, taken.__contains__, grace)
