"""The send ledger: what was prepared and sent, one row per (campaign, template, day).

The ledger is what makes sends exactly-once. Three rules, each enforced here:

1. **One name per send.** The Cheetah campaign name is derived from the send key
   (:func:`cheetah_name`), so every attempt (retry, re-execution, backfill, a concurrent run)
   asks Cheetah for the same name, and Cheetah's unique-name rule means a second campaign can
   never be created. A lost reply is recovered by looking the name up.
2. **One sender at a time.** A run must *claim* a row before calling Cheetah for it. The claim is
   a compare-and-set ``UPDATE`` (atomic on SQLite and PostgreSQL alike) with a lease; a claim
   whose run is no longer alive, or whose lease has run out, can be taken over.
3. **Advance after the fact.** The state moves forward only after the Cheetah call it stands for
   has succeeded, and every step first re-reads Cheetah, so repeating a step is harmless.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from ..customers.schema import import_rejection, send_ledger

# States, in order along the happy path.
PENDING, IMPORTING, IMPORTED, CREATED, LAUNCHED, APPROVED = (
    "PENDING",
    "IMPORTING",
    "IMPORTED",
    "CREATED",
    "LAUNCHED",
    "APPROVED",
)
MISSED, EMPTY, CANCELLED = "MISSED", "EMPTY", "CANCELLED"
#: States in which nothing more will ever be sent for the row.
TERMINAL = frozenset({APPROVED, MISSED, EMPTY, CANCELLED})
#: States in which something may exist in Cheetah Messaging for the row.
TOUCHED_CHEETAH = frozenset({IMPORTING, IMPORTED, CREATED, LAUNCHED, APPROVED})

DEFAULT_LEASE = dt.timedelta(minutes=10)

_NAME_SAFE = re.compile(r"[^A-Za-z0-9_-]+")


def send_key(campaign_id: str, template_id: str, send_date: dt.date) -> str:
    return f"{campaign_id}/{template_id}/{send_date.isoformat()}"


def cheetah_name(campaign_id: str, template_id: str, send_date: dt.date) -> str:
    """The campaign's name in Cheetah Messaging: deterministic, readable, unique per send.

    It doubles as the import list name and as the dynamic partition key of the metric path,
    so it only holds ``[A-Za-z0-9_-]``.
    """
    safe = _NAME_SAFE.sub("_", f"{campaign_id}-{template_id}")
    return f"OPT-{safe}-{send_date:%Y%m%d}"


@dataclass(frozen=True)
class LedgerRow:
    send_key: str
    campaign_id: str
    template_id: str
    send_date: dt.date
    list_key: str
    cheetah_name: str
    state: str
    send_at: dt.datetime | None
    rows_in_list: int | None
    list_id: int | None
    rows_accepted: int | None
    rows_rejected: int | None
    camp_id: int | None
    claimed_by: str | None
    claim_expires_at: dt.datetime | None
    error: str | None

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    """SQLite hands back naive datetimes; everything in the ledger is UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value.astimezone(dt.timezone.utc)


def _row(mapping) -> LedgerRow:
    fields = {k: mapping[k] for k in LedgerRow.__dataclass_fields__}
    fields["send_at"] = _utc(fields["send_at"])
    fields["claim_expires_at"] = _utc(fields["claim_expires_at"])
    return LedgerRow(**fields)


class Ledger:
    """Reads and advances ledger rows. Every write is a single short transaction."""

    def __init__(self, engine: Engine, now: Callable[[], dt.datetime]):
        self.engine = engine
        self.now = now

    # --- reads ---------------------------------------------------------------------------------
    def get(self, key: str) -> LedgerRow | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(send_ledger).where(send_ledger.c.send_key == key)).mappings().first()
        return _row(row) if row else None

    def for_campaign(self, campaign_id: str) -> list[LedgerRow]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(send_ledger)
                .where(send_ledger.c.campaign_id == campaign_id)
                .order_by(send_ledger.c.send_key)
            ).mappings()
            return [_row(r) for r in rows]

    def for_day(self, send_date: dt.date) -> list[LedgerRow]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(send_ledger).where(send_ledger.c.send_date == send_date).order_by(send_ledger.c.send_key)
            ).mappings()
            return [_row(r) for r in rows]

    # --- writes --------------------------------------------------------------------------------
    def ensure(
        self,
        *,
        campaign_id: str,
        template_id: str,
        send_date: dt.date,
        list_key: str,
        send_at: dt.datetime | None,
        state: str = PENDING,
        error: str | None = None,
    ) -> LedgerRow:
        """Insert the row if it does not exist yet (a concurrent insert is fine); return it."""
        key = send_key(campaign_id, template_id, send_date)
        now = self.now()
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    send_ledger.insert().values(
                        send_key=key,
                        campaign_id=campaign_id,
                        template_id=template_id,
                        send_date=send_date,
                        list_key=list_key,
                        cheetah_name=cheetah_name(campaign_id, template_id, send_date),
                        state=state,
                        send_at=send_at,
                        error=error,
                        created_at=now,
                        updated_at=now,
                    )
                )
        except IntegrityError:
            pass  # another run inserted it first: the row is the same by construction
        row = self.get(key)
        assert row is not None
        return row

    def claim(
        self,
        key: str,
        owner: str,
        *,
        owner_alive: Callable[[str], bool] = lambda _owner: True,
        lease: dt.timedelta = DEFAULT_LEASE,
    ) -> LedgerRow | None:
        """Claim the row for ``owner``; ``None`` if another live owner holds it.

        A compare-and-set: the ``UPDATE`` only matches while the row is unclaimed, claimed by
        ``owner`` already, expired, or held by the claimant we just saw and judged dead. Two
        runs racing for the same row cannot both match.
        """
        now = self.now()
        current = self.get(key)
        if current is None:
            raise KeyError(key)
        t = send_ledger.c
        free = sa.or_(t.claimed_by.is_(None), t.claimed_by == owner, t.claim_expires_at < now)
        if current.claimed_by and current.claimed_by != owner and not owner_alive(current.claimed_by):
            free = sa.or_(free, t.claimed_by == current.claimed_by)
        with self.engine.begin() as conn:
            result = conn.execute(
                send_ledger.update()
                .where(t.send_key == key, free)
                .values(claimed_by=owner, claim_expires_at=now + lease, updated_at=now)
            )
        return self.get(key) if result.rowcount == 1 else None

    def release(self, key: str, owner: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                send_ledger.update()
                .where(send_ledger.c.send_key == key, send_ledger.c.claimed_by == owner)
                .values(claimed_by=None, claim_expires_at=None, updated_at=self.now())
            )

    def advance(self, key: str, owner: str, state: str, lease: dt.timedelta = DEFAULT_LEASE, **values) -> LedgerRow:
        """Move the row to ``state`` (and set ``values``) while ``owner`` holds its claim.

        Raises :class:`LostClaim` when the claim was taken over meanwhile: the caller must stop.
        """
        now = self.now()
        with self.engine.begin() as conn:
            result = conn.execute(
                send_ledger.update()
                .where(send_ledger.c.send_key == key, send_ledger.c.claimed_by == owner)
                .values(state=state, updated_at=now, claim_expires_at=now + lease, **values)
            )
        if result.rowcount != 1:
            raise LostClaim(f"The claim on send {key} was taken over by another run; this run stops touching it.")
        row = self.get(key)
        assert row is not None
        return row

    def note_error(self, key: str, owner: str, error: str | None) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                send_ledger.update()
                .where(send_ledger.c.send_key == key, send_ledger.c.claimed_by == owner)
                .values(error=error, updated_at=self.now())
            )

    def record_rejections(self, key: str, rejections: list[tuple[str, str]]) -> None:
        """Remember each rejected recipient with the API's reason (replacing earlier ones)."""
        with self.engine.begin() as conn:
            conn.execute(import_rejection.delete().where(import_rejection.c.send_key == key))
            if rejections:
                conn.execute(
                    import_rejection.insert(),
                    [{"send_key": key, "identifier": ident, "reason": reason} for ident, reason in rejections],
                )

    def rejections(self, key: str) -> list[tuple[str, str]]:
        with self.engine.connect() as conn:
            return [
                (r.identifier, r.reason)
                for r in conn.execute(
                    sa.select(import_rejection.c.identifier, import_rejection.c.reason)
                    .where(import_rejection.c.send_key == key)
                    .order_by(import_rejection.c.identifier)
                )
            ]


class LostClaim(RuntimeError):
    """Another run took over a send this run was working on."""
