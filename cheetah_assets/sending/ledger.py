"""The send ledger: what was prepared and sent, one row per (campaign, template, day).

The ledger is what makes sends exactly-once. Three rules, each enforced here:

1. **One name per send.** The Cheetah campaign name is derived from the send key
   (:func:`cheetah_name`), so every attempt (retry, re-execution, backfill, a concurrent run)
   asks Cheetah for the same name, and Cheetah's unique-name rule means a second campaign can
   never be created. A lost reply is recovered by looking the name up. Only a send whose
   campaign was deleted in Cheetah (confirmed) after its schedule changed gets a new name, as
   its next revision (``-r{N}``, :meth:`Ledger.recreate`, see ``changes.py``).
2. **One sender at a time.** A run must *claim* a row before calling Cheetah for it. The claim is
   a compare-and-set ``UPDATE`` (atomic on SQLite and PostgreSQL alike) with a lease; a claim
   whose run is no longer alive, or whose lease has run out, can be taken over.
   A step that works for long renews its lease (:meth:`Ledger.renew`); a run that finds its
   claim taken over stops that send (:class:`LostClaim`, a :class:`SendError`).
3. **Advance after the fact.** The state moves forward only after Cheetah reads back the state
   it stands for, and every step first re-reads Cheetah, so repeating a step is harmless.
4. **One account per send.** Each row records the endpoint and Cust_ID it went to when it first
   touches Cheetah. A row recorded against another account is never counted as done for the
   current one (:func:`done_for_account`), and never resumed with the other account's list or
   campaign ids. One that nothing there can send (before CREATED, or MISSED, EMPTY, CANCELLED)
   is re-based to PENDING (:meth:`Ledger.rebase`); one whose campaign exists there
   (:data:`MAY_GO_OUT`) is refused until the operator releases it (``elsewhere.py``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import re
import urllib.parse
from dataclasses import dataclass
from typing import Callable, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from ..cheetah import contract
from ..customers.schema import import_rejection, send_ledger
from ..timeutil import utc
from .errors import LostClaim

__all__ = ["LostClaim"]  # re-exported: callers catch ``L.LostClaim``

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
#: States in which the row's campaign exists in Cheetah and may go out there (or went out): the
#: ledger lags Cheetah by at most one step, so CREATED may be launched there already, LAUNCHED
#: approved, and APPROVED goes out at its start time. Before CREATED there is at most a DRAFT (a
#: create whose reply was lost), which Cheetah never sends without LAUNCH and APPROVE.
MAY_GO_OUT = frozenset({CREATED, LAUNCHED, APPROVED})

#: How long a claim holds without renewal: longer than any single Cheetah call (with its
#: transport retries). A step that works longer (an import being polled) renews it.
DEFAULT_LEASE = dt.timedelta(minutes=10)
#: How often a working step renews its claim (by the run's clock).
RENEW_EVERY = dt.timedelta(minutes=1)

_NAME_SAFE = re.compile(r"[^A-Za-z0-9_-]+")
_SAFE_CAMPAIGN_ID = re.compile(r"[A-Za-z0-9_-]+")
_SAFE_TEMPLATE_ID = re.compile(r"[A-Za-z0-9_]+")
#: The longest Cheetah name (the ledger's cheetah_name column holds 200 characters).
MAX_NAME_LENGTH = 160
_HASH_HEX = 16


def send_key(campaign_id: str, template_id: str, send_date: dt.date) -> str:
    return f"{campaign_id}/{template_id}/{send_date.isoformat()}"


def cheetah_name(campaign_id: str, template_id: str, send_date: dt.date, revision: int = 0) -> str:
    """The campaign's name in Cheetah Messaging: deterministic, readable, unique per send.

    It doubles as the import list name and as the dynamic partition key of the metric path,
    so it only holds ``[A-Za-z0-9_-]``, and it is at most :data:`MAX_NAME_LENGTH` long.

    Distinct sends always get distinct names. Ids that are already safe (the campaign id in
    ``[A-Za-z0-9_-]``, the template id in ``[A-Za-z0-9_]``, short enough) keep the readable
    ``OPT-{campaign}-{template}-{YYYYMMDD}``, which can be read back unambiguously. Any other pair
    (sanitising would change it, or it is too long) gets ``OPT-{sanitised, truncated}-{YYYYMMDD}-``
    followed by 16 hex digits of the SHA-256 of the raw ids; its last segment is 16 characters
    long where a readable name's is 8, so the two forms never meet.

    A send re-created after a change (``revision`` N > 0, see ``changes.py``) gets ``-r{N}``
    appended: the deleted campaign's name may stay taken in the folder. No name of revision 0
    ends in a segment starting with ``r`` (its last segment is 8 digits or 16 hex digits), so
    names stay distinct across revisions too.
    """
    if revision < 0:
        raise ValueError(f"revision must be 0 or more, not {revision}")
    suffix = f"-r{revision}" if revision else ""
    day = f"{send_date:%Y%m%d}"
    readable = f"OPT-{campaign_id}-{template_id}-{day}"
    if (
        _SAFE_CAMPAIGN_ID.fullmatch(campaign_id)
        and _SAFE_TEMPLATE_ID.fullmatch(template_id)
        and len(readable) + len(suffix) <= MAX_NAME_LENGTH
    ):
        return readable + suffix
    raw = f"{len(campaign_id)}:{campaign_id}/{template_id}"  # the length prefix keeps "/" in ids unambiguous
    digest = hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()[:_HASH_HEX]
    room = MAX_NAME_LENGTH - len(f"OPT--{day}-{digest}{suffix}")
    safe = _NAME_SAFE.sub("_", f"{campaign_id}-{template_id}")[:room]
    return f"OPT-{safe}-{day}-{digest}{suffix}"


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
    list_id: int | str | None
    rows_accepted: int | None
    rows_rejected: int | None
    camp_id: int | str | None
    claimed_by: str | None
    claim_expires_at: dt.datetime | None
    error: str | None
    endpoint: str | None = None
    cust_id: str | None = None
    history: str | None = None
    #: How many times the send was re-created after a change (its name ends in ``-r{revision}``).
    revision: int = 0
    #: What was handed over to Cheetah (``fingerprint.fingerprint``), set when the send leaves PENDING.
    fingerprint: str | None = None

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    @property
    def account(self) -> "Account | None":
        """The account the send went to; None until it first touched Cheetah."""
        return Account(self.endpoint, self.cust_id) if self.endpoint is not None else None


class Account(NamedTuple):
    """Where a send goes: the API endpoint and the Cust_ID (``str`` of the configured value)."""

    endpoint: str
    cust_id: str

    def describe(self) -> str:
        return f"Cust_ID {self.cust_id} at {self.endpoint}"

    def identity(self) -> tuple[str, str]:
        """What makes two accounts the same: the Cust_ID and the endpoint, where every loopback
        address and port is one (a simulator, or a local proxy, restarted on another free port is
        still the account it was: the demo's sends must not turn into "another account's", to be
        sent again, because ``./run dev`` found port 8765 busy)."""
        parsed = urllib.parse.urlsplit(self.endpoint.strip().lower())
        host = parsed.hostname or ""
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        where = f"{parsed.scheme}://loopback" if loopback else f"{parsed.scheme}://{parsed.netloc}"
        return where, str(self.cust_id).strip()

    def same_as(self, other: "Account") -> bool:
        return self.identity() == other.identity()


def account_of(settings) -> Account:
    """The account of a client's settings (``CheetahSettings``: ``endpoint`` and ``cust_id``)."""
    return Account(str(settings.endpoint), str(settings.cust_id))


def other_account(row: LedgerRow, account: Account | None) -> bool:
    """Whether the row was recorded against an account other than ``account``."""
    return account is not None and row.account is not None and not row.account.same_as(account)


def handed_over_elsewhere(row: LedgerRow, account: Account | None) -> bool:
    """Whether the row was handed over in another account than ``account`` and its campaign may
    go out there (:data:`MAY_GO_OUT`): sending it in ``account`` too could mail its people twice."""
    return other_account(row, account) and row.state in MAY_GO_OUT


def done_for_account(row: LedgerRow, account: Account | None) -> bool:
    """Whether nothing more is to be sent for the row in ``account``: it is terminal, and it
    either never touched Cheetah (no account recorded) or touched this very account."""
    return row.terminal and not other_account(row, account)


_ID_COLUMNS = ("list_id", "camp_id")


def _row(mapping) -> LedgerRow:
    fields = {k: mapping[k] for k in LedgerRow.__dataclass_fields__}
    fields["send_at"] = utc(fields["send_at"])
    fields["claim_expires_at"] = utc(fields["claim_expires_at"])
    fields["revision"] = fields["revision"] or 0
    for name in _ID_COLUMNS:
        if fields[name] is not None:
            fields[name] = contract.id_from_db(fields[name])
    return LedgerRow(**fields)


def _stored(values: dict) -> dict:
    """``values`` with Cheetah ids as the text the ledger stores them as."""
    return {k: (contract.id_to_db(v) if k in _ID_COLUMNS and v is not None else v) for k, v in values.items()}


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
                .values(state=state, updated_at=now, claim_expires_at=now + lease, **_stored(values))
            )
        if result.rowcount != 1:
            raise _lost(key)
        row = self.get(key)
        assert row is not None
        return row

    def renew(self, key: str, owner: str, lease: dt.timedelta = DEFAULT_LEASE) -> None:
        """Extend ``owner``'s claim by ``lease`` from now; :class:`LostClaim` if it no longer holds it."""
        now = self.now()
        with self.engine.begin() as conn:
            result = conn.execute(
                send_ledger.update()
                .where(send_ledger.c.send_key == key, send_ledger.c.claimed_by == owner)
                .values(claim_expires_at=now + lease)
            )
        if result.rowcount != 1:
            raise _lost(key)

    def rebase(self, key: str, owner: str, account: Account, *, released: str | None = None) -> LedgerRow:
        """Start the row afresh (PENDING) for ``account``: it was recorded against another one.

        The other account's facts (its state, list and campaign ids) are kept in ``history`` (and
        in ``error`` until the next step succeeds); its ids are cleared, so they are never used against ``account``.
        A row whose campaign may go out there (:data:`MAY_GO_OUT`) is re-based only with ``released``:
        who released it, kept in ``history`` too."""
        row = self.get(key)
        assert row is not None and row.account is not None
        if row.state in MAY_GO_OUT and not released:
            raise ValueError(f"Send {key} is {row.state} in another account; it is re-based only once released.")
        facts = (
            f"{self.now():%Y-%m-%d %H:%M} UTC: sent to another account before ({row.account.describe()}): "
            f"it reached {row.state}"
            f"{f' with list {row.list_id}' if row.list_id is not None else ''}"
            f"{f' and campaign {row.camp_id}' if row.camp_id is not None else ''}"
            f"{f' ({row.error})' if row.error else ''}; "
            f"{f'released by {released}; ' if released else ''}started afresh for {account.describe()}."
        )
        return self.advance(
            key, owner, PENDING, list_id=None, camp_id=None, rows_accepted=None, rows_rejected=None,
            endpoint=None, cust_id=None, error=facts, history="\n".join(filter(None, [row.history, facts])),
        )

    def recreate(self, key: str, owner: str, *, send_at: dt.datetime | None, note: str) -> LedgerRow:
        """Start the row afresh (PENDING) as revision N+1 under a new Cheetah name, after its
        campaign of revision N was deleted in Cheetah (confirmed) because the schedule changed.

        One compare-and-set while ``owner`` holds the claim: the old ids, account and fingerprint
        are cleared (so nothing of the deleted campaign is ever launched again), ``send_at`` is the
        new time, and ``note`` is appended to ``history`` (and kept in ``error`` until the next step)."""
        row = self.get(key)
        assert row is not None
        revision = row.revision + 1
        return self.advance(
            key, owner, PENDING, revision=revision,
            cheetah_name=cheetah_name(row.campaign_id, row.template_id, row.send_date, revision),
            send_at=send_at, fingerprint=None, list_id=None, camp_id=None, rows_in_list=None, rows_accepted=None,
            rows_rejected=None, endpoint=None, cust_id=None, error=note, history=_appended(row.history, self.now(), note),
        )

    def note_history(self, key: str, owner: str, note: str, *, state: str | None = None, **values) -> LedgerRow:
        """Record ``note`` (in ``history`` and ``error``) while ``owner`` holds the claim; move to
        ``state`` if given (else keep the state), and set ``values``."""
        row = self.get(key)
        assert row is not None
        return self.advance(
            key, owner, state or row.state, error=note, history=_appended(row.history, self.now(), note), **values
        )

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


def _appended(history: str | None, now: dt.datetime, note: str) -> str:
    return "\n".join(filter(None, [history, f"{now:%Y-%m-%d %H:%M} UTC: {note}"]))


def _lost(key: str) -> LostClaim:
    return LostClaim(
        f"The claim on send {key} was taken over by another run, so this run stopped working on it; "
        "nothing was sent twice. Re-execute once the other run has finished if the send is not done."
    )
