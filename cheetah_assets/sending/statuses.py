"""The closed vocabulary of ``campaign_schedule.status``: one parser for every reader.

A campaign's status is one of two meanings:

- ``SCHEDULED``: send it. Spelt ``SCHEDULED``.
- ``CANCELLED``: do not send it, and delete whatever was already prepared in Cheetah Messaging.
  Spelt ``CANCELLED`` or ``CANCELED``.

Spellings are compared without regard to case or surrounding whitespace (any Unicode
whitespace), so ``" canceled\\t"`` is CANCELLED. Anything else (``PAUSED``, ``ACTIVE``, an
empty or missing status, a typo, a non-ASCII look-alike) is not guessed at: the planner makes the
campaign INVALID and nothing is sent for it. ``ACTIVE`` and the like are deliberately not read as
SCHEDULED: a word that might mean "running", "paused" or "draft" elsewhere must not mail anyone.

The planner (:mod:`.plan`), the cancellation sensor (:func:`.cancel.pending_cancellations`) and
the send protocol's "cancelled on our side" check all use :func:`parse_status` /
:func:`is_cancelled`. Nothing here imports the rest of the package.
"""

from __future__ import annotations

SCHEDULED, CANCELLED = "SCHEDULED", "CANCELLED"
#: Every accepted spelling (upper case) and what it means.
SPELLINGS: dict[str, str] = {"SCHEDULED": SCHEDULED, "CANCELLED": CANCELLED, "CANCELED": CANCELLED}
#: The statuses our own code writes.
CANONICAL = (SCHEDULED, CANCELLED)


class StatusProblem(ValueError):
    """A campaign_schedule.status outside the vocabulary; the message is the plan's reason."""


def _key(raw: str | None) -> str | None:
    if raw is None:
        return None
    text = str(raw).strip()
    return text.upper() if text.isascii() else None


def parse_status(raw: str | None) -> str:
    """``SCHEDULED`` or ``CANCELLED`` for an accepted spelling; :class:`StatusProblem` otherwise."""
    meaning = SPELLINGS.get(_key(raw) or "")
    if meaning is None:
        shown = "" if raw is None else str(raw)
        raise StatusProblem(f"status {shown!r} is not one of {', '.join(CANONICAL)}; nothing was sent")
    return meaning


def is_cancelled(raw: str | None) -> bool:
    """Whether ``raw`` is a spelling of CANCELLED (an unknown status is not: it is INVALID)."""
    return SPELLINGS.get(_key(raw) or "") == CANCELLED
