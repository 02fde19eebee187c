"""The simulated clock and the simulator's time format.

The clock is frozen unless moved (``POST /_sim/clock``); in live mode (the embedded demo) it also
runs with real time from the moment it was last set. It drives campaign sends and metrics; token
lifetimes and the rate limit use the wall clock (``time.monotonic``) instead.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Callable

from pydantic import Field, model_validator

from .bodies import Body, IsoInstant, bounded

UTC = dt.timezone.utc


def iso(when: dt.datetime | None) -> str | None:
    """``2026-11-23T15:00:00Z`` (UTC, second precision unless the time has microseconds)."""
    if when is None:
        return None
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


class SimClock:
    """The simulated now. Not locked itself: the world's lock is held around every use."""

    def __init__(self, monotonic: Callable[[], float], *, live: bool = False):
        self._monotonic = monotonic
        #: False: frozen unless set. True: also runs with real time from the last setting.
        self.live = live
        self._base = dt.datetime.now(UTC)
        self._base_monotonic = monotonic()

    def now(self) -> dt.datetime:
        """The simulated now (aware, UTC)."""
        if self.live:
            return self._base + dt.timedelta(seconds=self._monotonic() - self._base_monotonic)
        return self._base

    def setting(self) -> tuple[bool, dt.datetime]:
        """(live, the time last set): changes only when the clock is set (what a save compares)."""
        return self.live, self._base

    def set(self, when: dt.datetime) -> None:
        """Set the simulated now to ``when`` (in live mode it runs on from there)."""
        self._base = when
        self._base_monotonic = self._monotonic()


class ClockBody(Body):
    """``POST /_sim/clock``: ``{"now": ISO}`` or ``{"advanceSeconds": N}``."""

    now: IsoInstant | None = None
    advance_seconds: Annotated[
        float | None, bounded("'advanceSeconds' must be >= 0: the simulated clock only moves forward.", 0)
    ] = Field(None, alias="advanceSeconds")

    @model_validator(mode="before")
    @classmethod
    def _one_of_the_two(cls, data: Any) -> Any:
        if isinstance(data, dict) and "now" in data and "advanceSeconds" in data:
            raise ValueError("Give either 'now' or 'advanceSeconds', not both.")
        return data

    @model_validator(mode="after")
    def _one_given(self) -> "ClockBody":
        if self.now is None and self.advance_seconds is None:
            raise ValueError("'now' or 'advanceSeconds' is required.")
        return self

    def target(self, current: dt.datetime) -> dt.datetime:
        """The time this body sets the clock to, from the ``current`` simulated now."""
        if self.now is not None:
            return self.now
        return current + dt.timedelta(seconds=self.advance_seconds or 0.0)
