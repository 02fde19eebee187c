"""Suppressions that come after a send's list reached Cheetah Messaging: found, and remembered.

A list is frozen without anyone suppressed then, and its import leaves out whoever was suppressed
since (``importing.py``). Once the import is done (ledger IMPORTED, CREATED, LAUNCHED, APPROVED:
:data:`HANDED_OVER`) the person is in Cheetah's list, Cheetah has no call that removes one row,
and the campaign would go to them at its send time. :func:`check` finds those people, for every
handed-over send whose time is still ahead; ``suppression_changes.py`` acts on what it found
(the send is deleted and re-created without them, or, too close to its time, the campaign goes
out and that is said loudly).

What was applied is known exactly: the import records whom it left out (:func:`record_left_out`,
stage ``left_out`` of ``cheetah_send_suppression``), and Cheetah's rejections are in
``cheetah_import_rejection``. So a send's late suppressions are the recipients of its frozen list
(its template's share) whose normalised identifier is on the suppression list now, less those two
and less those already found. (A send imported by an earlier version, which recorded only how many
it left out: when no more are suppressed now than it left out, they are taken to be those.)

Cheap on every tick, whatever the size of a list or of the suppression list:

* ``cheetah_suppression_seen`` is the suppression list as last read, each entry normalised once
  and stamped with the generation (a counter, never reused) of the check that first saw it. A
  check first compares it with the suppression table (two anti-joins on the identifier, read
  only); only when an entry came or went does it take the write lock, normalise the new entries,
  stamp them with the next generation and drop the gone ones.
* ``cheetah_suppression_check`` holds, per send, the revision and the generation it was checked
  through. A send not checked yet (just handed over, or a new revision) is checked once against
  the whole list (its list's key probed once per entry); after that only the entries of later
  generations are looked up in its list's key (nothing, when no entry came).

Why nobody slips through: an entry present at a check that covers the send is looked up then;
one that arrives later gets a later generation than the send's, and is looked up by the next
check. An entry that leaves and comes back between two checks keeps its old stamp, but it was
present, and looked up, at the check that stamped it (or at the send's first, whole check).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterable, Iterator, NamedTuple

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from ..customers.identifiers import norm_sql, normalise_identifier
from ..customers.schema import (
    import_rejection, insert_new, recipient, send_ledger, send_suppression, suppression, suppression_check,
    suppression_seen,
)
from ..timeutil import utc
from . import ledger

#: States whose list is in Cheetah Messaging and whose campaign may go out (or exists, or is made
#: from that list): a suppression that comes now is in Cheetah's list.
HANDED_OVER = frozenset({ledger.IMPORTED, ledger.CREATED, ledger.LAUNCHED, ledger.APPROVED})
#: Stages of ``cheetah_send_suppression``.
LEFT_OUT, FOUND, RECREATED, MAILED = "left_out", "found", "recreated", "mailed"
#: The row of ``cheetah_suppression_check`` that holds the last generation given out (no send key is empty).
_COUNTER = ""
_CHUNK = 500
#: Two-key PostgreSQL advisory lock serialising the updates of cheetah_suppression_seen ("CHET", "SUPP").
_PG_LOCK = (0x43484554, 0x53555050)


class HandedOver(NamedTuple):
    """What the check needs of a ledger row."""

    send_key: str
    send_date: dt.date
    list_key: str
    template_id: str
    revision: int
    rows_in_list: int | None
    rows_accepted: int | None
    rows_rejected: int | None


@dataclass
class Findings:
    #: sends checked (handed over, send time ahead), and of them those checked whole (new to the check).
    checked: int = 0
    whole: int = 0
    #: suppression entries that came (normalised now) and went since the last check.
    came: int = 0
    went: int = 0
    #: send key -> how many of its recipients this check found suppressed (new findings only).
    found: dict[str, int] = field(default_factory=dict)
    #: send date (ISO) -> {send key: how many found, not acted on yet}, for the sends checked.
    pending: dict[str, dict[str, int]] = field(default_factory=dict)
    #: send date (ISO) -> digest of its pending findings (each finding's send, person and time).
    digest: dict[str, str] = field(default_factory=dict)

    def digests(self) -> dict[str, str]:
        """send date -> a digest of what is pending on it: it changes with every new finding, one of
        the same person found again after it was withdrawn included."""
        return dict(sorted(self.digest.items()))


# ------------------------------------------------------------------------------------------------
# the records
# ------------------------------------------------------------------------------------------------
def record_left_out(
    engine: sa.Engine, send_key: str, revision: int, identifiers: Iterable[str], now: dt.datetime
) -> None:
    """Whom the import of a send's revision left out (suppressed since the freeze), replacing what
    the revision had recorded: an import starts its list afresh, so earlier findings were of an
    earlier list."""
    t = send_suppression.c
    rows = [{"send_key": send_key, "revision": revision, "identifier": i, "stage": LEFT_OUT, "found_at": now,
             "updated_at": now} for i in sorted(set(identifiers))]
    with engine.begin() as conn:
        conn.execute(send_suppression.delete().where(t.send_key == send_key, t.revision == revision))
        if rows:
            conn.execute(send_suppression.insert(), rows)


def found_for(engine: sa.Engine, sends: Iterable[tuple[str, int]]) -> dict[str, list[str]]:
    """send key -> the identifiers found suppressed after hand-over and not acted on yet, of the
    given (send key, revision) pairs."""
    out: dict[str, list[str]] = {}
    for key, ident, _found_at in _found_rows(engine, sends):
        out.setdefault(key, []).append(ident)
    return {k: sorted(v) for k, v in out.items()}


def _found_rows(engine: sa.Engine, sends: Iterable[tuple[str, int]]) -> list[tuple[str, str, dt.datetime]]:
    """(send key, identifier, found at) of the findings not acted on yet of the (send key, revision) pairs."""
    wanted = dict(sends)
    out: list[tuple[str, str, dt.datetime]] = []
    t = send_suppression.c
    with engine.connect() as conn:
        for keys in _chunks(sorted(wanted)):
            rows = conn.execute(sa.select(t.send_key, t.revision, t.identifier, t.found_at).where(
                t.send_key.in_(keys), t.stage == FOUND)).all()
            out += [(key, ident, utc(at)) for key, revision, ident, at in rows if wanted.get(key) == revision]
    return sorted(out)


def mark(
    engine: sa.Engine, send_key: str, revision: int, identifiers: Iterable[str], stage: str, now: dt.datetime
) -> None:
    """Move found identifiers of a send's revision to ``stage`` (``recreated`` or ``mailed``)."""
    t = send_suppression.c
    with engine.begin() as conn:
        for chunk in _chunks(sorted(set(identifiers))):
            conn.execute(
                send_suppression.update()
                .where(t.send_key == send_key, t.revision == revision, t.identifier.in_(chunk), t.stage == FOUND)
                .values(stage=stage, updated_at=now)
            )


def withdraw(engine: sa.Engine, send_key: str, revision: int, identifiers: Iterable[str]) -> None:
    """Forget findings whose suppression was removed before anything was done about them."""
    t = send_suppression.c
    with engine.begin() as conn:
        for chunk in _chunks(sorted(set(identifiers))):
            conn.execute(send_suppression.delete().where(
                t.send_key == send_key, t.revision == revision, t.identifier.in_(chunk), t.stage == FOUND))


def still_mailed(engine: sa.Engine, since: dt.datetime) -> dict[str, int]:
    """``{send key#revision: how many}`` of the suppressed recipients found too late to be left out
    (stage ``mailed``) recorded since ``since``: the alert's question, over the (stage, updated_at) index."""
    t = send_suppression.c
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(t.send_key, t.revision, sa.func.count())
            .where(t.stage == MAILED, t.updated_at > utc(since))
            .group_by(t.send_key, t.revision)
        ).all()
    return {f"{key}#{revision}": int(n) for key, revision, n in rows}


# ------------------------------------------------------------------------------------------------
# the check
# ------------------------------------------------------------------------------------------------
def handed_over_statement(now: dt.datetime) -> sa.Select:
    """The sends whose send time is after ``now``: a range of the ledger's send_at index (the
    sends of the coming hours; the state is filtered after, so that no planner prefers the
    state's index, which holds every APPROVED send there ever was)."""
    t = send_ledger.c
    return sa.select(
        t.send_key, t.send_date, t.list_key, t.template_id, t.revision, t.rows_in_list, t.rows_accepted,
        t.rows_rejected, t.state,
    ).where(t.send_at > utc(now))


def handed_over_ahead(engine: sa.Engine, now: dt.datetime, day: dt.date | None = None) -> list[HandedOver]:
    """The sends handed over (:data:`HANDED_OVER`) whose send time is after ``now``, of ``day`` only if given."""
    with engine.connect() as conn:
        rows = conn.execute(handed_over_statement(now)).all()
    return sorted(HandedOver(r.send_key, r.send_date, r.list_key, r.template_id, r.revision or 0, r.rows_in_list,
                             r.rows_accepted, r.rows_rejected)
                  for r in rows if r.state in HANDED_OVER and (day is None or r.send_date == day))


def check(engine: sa.Engine, now: dt.datetime, *, day: dt.date | None = None) -> Findings:
    """Find the recipients suppressed since their send was handed over, for every send handed over
    whose time is ahead (of ``day`` only, if given), and record them (stage ``found``); what is
    pending for those sends. Nothing is read or written beyond the ledger when none is ahead."""
    out = Findings()
    sends = handed_over_ahead(engine, now, day)
    if not sends:
        return out
    out.came, out.went = _sync(engine)
    c = suppression_check.c
    with engine.connect() as conn:
        known = {}
        for keys in _chunks([_COUNTER] + [s.send_key for s in sends]):
            known.update((k, (rev, gen)) for k, rev, gen in conn.execute(
                sa.select(c.send_key, c.revision, c.gen).where(c.send_key.in_(keys))))
        generation = known.pop(_COUNTER, (0, 0))[1]
        whole = [s for s in sends if known.get(s.send_key, (None,))[0] != s.revision]
        since = [s for s in sends if s not in whole and known[s.send_key][1] < generation]
        candidates = _whole(conn, whole)
        candidates.update(_since(conn, since, {s.send_key: known[s.send_key][1] for s in since}))
    out.checked, out.whole = len(sends), len(whole)
    out.found = _record_found(engine, {s.send_key: s for s in sends}, candidates, now)
    _checked_through(engine, whole + since, generation)
    if day is None:  # the sensor's check covers every send ahead: forget the others
        _forget(engine, {s.send_key for s in sends})
    days = {s.send_key: s.send_date.isoformat() for s in sends}
    material: dict[str, list] = {}
    for key, ident, found_at in _found_rows(engine, [(s.send_key, s.revision) for s in sends]):
        sends_of_day = out.pending.setdefault(days[key], {})
        sends_of_day[key] = sends_of_day.get(key, 0) + 1
        material.setdefault(days[key], []).append((key, ident, found_at.isoformat()))
    out.digest = {
        day: hashlib.sha1(repr(m).encode("utf-8", "surrogatepass")).hexdigest()[:16] for day, m in material.items()
    }
    return out


@contextmanager
def _write_lock(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A transaction that holds the lock on cheetah_suppression_seen (PostgreSQL: an advisory lock;
    SQLite: the database's write lock from its start)."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.rollback()
                raise
            conn.commit()
            return
        with conn.begin():
            if engine.dialect.name == "postgresql":
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(*[sa.literal(k, sa.Integer) for k in _PG_LOCK])))
            yield conn


def _sync(engine: sa.Engine) -> tuple[int, int]:
    """Bring cheetah_suppression_seen in line with the suppression table: (entries that came, went).
    A read-only look first; the lock, the normalisation and the next generation only for a change."""
    s, seen = suppression.c, suppression_seen.c
    came = sa.select(s.identifier).where(
        s.identifier.is_not(None), ~sa.select(seen.identifier).where(seen.identifier == s.identifier).exists())
    went = sa.select(seen.identifier).where(~sa.select(s.identifier).where(s.identifier == seen.identifier).exists())
    with engine.connect() as conn:
        changed = conn.execute(sa.select(came.exists(), went.exists())).one()
    if not any(changed):
        return 0, 0
    c = suppression_check.c
    with _write_lock(engine) as conn:
        generation = (conn.execute(sa.select(c.gen).where(c.send_key == _COUNTER)).scalar() or 0) + 1
        norm = norm_sql(s.identifier, engine.dialect.name)
        new = came.with_only_columns(s.identifier, norm, sa.literal(generation)).distinct()
        added = conn.execute(suppression_seen.insert().from_select(["identifier", "norm", "gen"], new)).rowcount
        gone = conn.execute(suppression_seen.delete().where(
            ~sa.select(s.identifier).where(s.identifier == seen.identifier).exists())).rowcount
        _upsert(conn, [{"send_key": _COUNTER, "revision": -1, "gen": generation}])
    return max(added or 0, 0), max(gone or 0, 0)


def _whole(conn: sa.Connection, sends: list[HandedOver]) -> dict[str, set[str]]:
    """For sends not checked yet: their recipients on the suppression list (each entry probed in the list's key)."""
    out: dict[str, set[str]] = {}
    seen, r = suppression_seen.c, recipient.c
    for list_key in sorted({s.list_key for s in sends}):
        mine = [s for s in sends if s.list_key == list_key]
        hits = conn.execute(
            sa.select(r.template_id, r.identifier)
            .select_from(suppression_seen.join(recipient, sa.and_(r.list_key == list_key, r.identifier == seen.norm)))
            .where(r.template_id.in_(sorted({s.template_id for s in mine})))
        ).all()
        for s in mine:
            out[s.send_key] = {i for t, i in hits if t == s.template_id}
    return out


def _since(conn: sa.Connection, sends: list[HandedOver], through: dict[str, int]) -> dict[str, set[str]]:
    """For sends checked before: their recipients among the entries of later generations."""
    if not sends:
        return {}
    seen, r = suppression_seen.c, recipient.c
    rows = conn.execute(
        sa.select(seen.norm, seen.gen).where(seen.gen > min(through.values()), seen.norm != "").order_by(seen.gen)
    ).all()
    newest = {norm: gen for norm, gen in rows}  # a person spelt twice: the newest spelling counts
    if not newest:
        return {}
    keys = sorted({s.list_key for s in sends})
    hits = []
    for chunk in _chunks(sorted(newest)):
        hits += conn.execute(
            sa.select(r.list_key, r.template_id, r.identifier).where(r.list_key.in_(keys), r.identifier.in_(chunk))
        ).all()
    out: dict[str, set[str]] = {}
    for s in sends:
        mine = {i for k, t, i in hits if k == s.list_key and t == s.template_id and newest[i] > through[s.send_key]}
        if mine:
            out[s.send_key] = mine
    return out


def _record_found(
    engine: sa.Engine, sends: dict[str, HandedOver], candidates: dict[str, set[str]], now: dt.datetime
) -> dict[str, int]:
    """Record as ``found`` the candidates not left out by the import, not rejected by Cheetah and
    not recorded already; how many per send."""
    candidates = {k: v for k, v in candidates.items() if v}
    if not candidates:
        return {}
    t, rj = send_suppression.c, import_rejection.c
    recorded: dict[tuple[str, int], dict[str, str]] = {}
    rejected: dict[str, set[str]] = {}
    with engine.connect() as conn:
        for keys in _chunks(sorted(candidates)):
            for key, revision, ident, stage in conn.execute(
                sa.select(t.send_key, t.revision, t.identifier, t.stage).where(t.send_key.in_(keys))
            ):
                recorded.setdefault((key, revision), {})[ident] = stage
            for key, ident in conn.execute(sa.select(rj.send_key, rj.identifier).where(rj.send_key.in_(keys))):
                rejected.setdefault(key, set()).add(normalise_identifier(ident))
    rows, found = [], {}
    for key, ids in sorted(candidates.items()):
        s = sends[key]
        known = recorded.get((key, s.revision), {})
        ids = ids - set(known) - rejected.get(key, set())
        if not ids:
            continue
        stage = FOUND
        left = _left_out_count(s)
        if left and LEFT_OUT not in known.values() and len(ids) <= left:
            stage = LEFT_OUT  # imported by an earlier version, which left out this many: taken to be them
        else:
            found[key] = len(ids)
        rows += [{"send_key": key, "revision": s.revision, "identifier": i, "stage": stage, "found_at": now,
                  "updated_at": now} for i in sorted(ids)]
    if rows:
        insert_new(engine, send_suppression, rows)
    return found


def _left_out_count(s: HandedOver) -> int:
    if s.rows_in_list is None or s.rows_accepted is None or s.rows_rejected is None:
        return 0
    return max(0, s.rows_in_list - s.rows_accepted - s.rows_rejected)


def _checked_through(engine: sa.Engine, sends: list[HandedOver], generation: int) -> None:
    if sends:
        with engine.begin() as conn:
            _upsert(conn, [{"send_key": s.send_key, "revision": s.revision, "gen": generation} for s in sends])


def _forget(engine: sa.Engine, keep: set[str]) -> None:
    """Drop the check rows of sends no longer handed over with their time ahead (only when some are)."""
    c = suppression_check.c
    with engine.connect() as conn:
        stale = [k for k in conn.execute(sa.select(c.send_key)).scalars() if k != _COUNTER and k not in keep]
    if stale:
        with engine.begin() as conn:
            for chunk in _chunks(stale):
                conn.execute(suppression_check.delete().where(c.send_key.in_(chunk)))


def _upsert(conn: sa.Connection, rows: list[dict]) -> None:
    """Insert or update rows of cheetah_suppression_check by send key."""
    dialect = conn.dialect.name
    if dialect in ("sqlite", "postgresql"):
        insert = (sqlite.insert if dialect == "sqlite" else postgresql.insert)(suppression_check)
        changes = {"revision": insert.excluded.revision, "gen": insert.excluded.gen}
        conn.execute(insert.on_conflict_do_update(index_elements=["send_key"], set_=changes), rows)
        return
    conn.execute(suppression_check.delete().where(suppression_check.c.send_key.in_([r["send_key"] for r in rows])))
    conn.execute(suppression_check.insert(), rows)


def _chunks(items: list, size: int = _CHUNK) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]
