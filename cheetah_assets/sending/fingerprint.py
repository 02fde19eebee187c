"""What a send handed over to Cheetah Messaging, and how the schedule differs from it now.

A send is *handed over* once it leaves PENDING (``ledger.TOUCHED_CHEETAH``). At that moment the
protocol records the campaign's fingerprint: its scheduled send time (UTC), its template ids in
order (the order decides which recipient gets which template) and its target group. If the
schedule says something else later, the campaign in Cheetah is stale (``changes.py`` deletes and
re-creates it, or refuses loudly). Pure functions: no database, no Cheetah, no Dagster.

The fingerprint is JSON text, so a change can be described from the stored value alone
("send time 08:00 -> 09:30 UTC").
"""

from __future__ import annotations

import datetime as dt
import json
from typing import NamedTuple, Sequence

from ..timeutil import utc


class Handover(NamedTuple):
    send_at: dt.datetime | None
    template_ids: tuple[str, ...]
    target_group: str


def fingerprint(send_at: dt.datetime | None, template_ids: Sequence[str], target_group: str) -> str:
    """The fingerprint of a campaign as scheduled: equal inputs (the same instant in any zone)
    give equal text, and distinct inputs give distinct text."""
    at = utc(send_at)
    return json.dumps(
        {
            "send_at": at.replace(microsecond=0).isoformat() if at is not None else None,
            "templates": [str(t) for t in template_ids],
            "target_group": str(target_group),
        },
        sort_keys=True,
        separators=(",", ":"),
    )


def parse(text: str) -> Handover:
    """The :class:`Handover` a fingerprint stands for (``ValueError`` if it is not one)."""
    try:
        data = json.loads(text)
        at = data["send_at"]
        return Handover(
            dt.datetime.fromisoformat(at) if at is not None else None,
            tuple(str(t) for t in data["templates"]),
            str(data["target_group"]),
        )
    except (TypeError, KeyError, json.JSONDecodeError) as exc:
        raise ValueError(f"not a send fingerprint: {text!r}") from exc


def _when(at: dt.datetime | None, other: dt.datetime | None) -> str:
    if at is None:
        return "no time"
    same_day = other is not None and other.date() == at.date()
    return f"{at:%H:%M}" if same_day else f"{at:%Y-%m-%d %H:%M}"


def differences(handed_over: str, current: str) -> list[str]:
    """What changed between a recorded fingerprint and the schedule's, one phrase each
    (empty when nothing did)."""
    if handed_over == current:
        return []
    old, new = parse(handed_over), parse(current)
    out = []
    if old.send_at != new.send_at:
        out.append(f"send time {_when(old.send_at, new.send_at)} -> {_when(new.send_at, old.send_at)} UTC")
    if old.template_ids != new.template_ids:
        out.append(f"templates {', '.join(old.template_ids) or 'none'} -> {', '.join(new.template_ids) or 'none'}")
    if old.target_group != new.target_group:
        out.append(f"target group {old.target_group} -> {new.target_group}")
    return out


def changed(handed_over: str | None, current: str) -> bool:
    """Whether a send handed over with ``handed_over`` no longer matches the schedule. A send
    with no recorded fingerprint (handed over by an older version) is never reported changed."""
    return handed_over is not None and parse(handed_over) != parse(current)


def handover_change(row, send_at: dt.datetime | None, template_ids: Sequence[str], target_group: str) -> str | None:
    """What changed since a handed-over send (a ``ledger.LedgerRow`` past PENDING with a recorded
    fingerprint) was handed over, as one phrase; None if nothing did or it was not handed over.
    The plan reports such a send as to be sent again, never as SENT."""
    handed = getattr(row, "fingerprint", None)
    if send_at is None or handed is None or row.state not in _HANDED_OVER:
        return None
    now = fingerprint(send_at, template_ids, target_group)
    return "; ".join(differences(handed, now)) if changed(handed, now) else None


#: ``ledger.TOUCHED_CHEETAH`` (the ledger imports this module's users, so it is spelled out here).
_HANDED_OVER = frozenset({"IMPORTING", "IMPORTED", "CREATED", "LAUNCHED", "APPROVED"})
